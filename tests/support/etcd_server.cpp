// SPDX-License-Identifier: MIT
// The etcd fixture: drives scripts/etcd-server.sh and etcdctl without a shell.
#include "support/etcd_server.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "support/redis_server.hpp"  // run_command, TestPki

namespace lockkit::testing {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

EtcdServer::EtcdServer(int members, std::vector<std::string> extra_args, EtcdTls tls) : tls_(tls) {
  // In memory when the machine has a tmpfs: etcd fsyncs every raft entry, and on a busy disk
  // that alone can outlast a test's command timeout. Durability is not under test here.
  std::error_code shm_error;
  const bool shm =
      std::filesystem::is_directory("/dev/shm", shm_error) && ::access("/dev/shm", W_OK) == 0;
  std::string tmpl =
      ((shm ? std::filesystem::path("/dev/shm") : std::filesystem::temp_directory_path()) /
       "lockkit-etcd-XXXXXX")
          .string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  }
  dir_ = tmpl;
  std::vector<std::string> args{"start",       dir_,
                                "--members",   std::to_string(members),
                                "--owner-pid", std::to_string(::getpid())};
  if (tls_ != EtcdTls::kOff) {
    const TestPki& pki = TestPki::shared();
    args.insert(args.end(), {"--tls", pki.server_cert, pki.server_key, pki.ca});
    if (tls_ == EtcdTls::kClientCertRequired) {
      args.insert(args.end(), {"--client-cert-auth", pki.client_cert, pki.client_key});
    }
  }
  if (!extra_args.empty()) {
    args.push_back("--");
    args.insert(args.end(), extra_args.begin(), extra_args.end());
  }
  try {
    endpoints_ = script(args);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    throw;
  }
}

EtcdServer::~EtcdServer() {
  try {
    script({"stop", dir_});
  } catch (...) {  // a destructor must not throw; the directory still goes
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string EtcdServer::script(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"bash",
                                std::string(LOCKKIT_SOURCE_DIR) + "/scripts/etcd-server.sh"};
  argv.insert(argv.end(), args.begin(), args.end());
  return trim(run_command(argv));
}

std::string EtcdServer::endpoint(int i) const {
  std::istringstream in(endpoints_);
  std::string one;
  for (int n = 0; std::getline(in, one, ','); ++n) {
    if (n == i) return one;
  }
  throw std::out_of_range("no member " + std::to_string(i));
}

std::string EtcdServer::url(std::string_view tail) const {
  return "etcd://" + endpoints_ + std::string(tail);
}

void EtcdServer::stop(int i) {
  if (i < 0) {
    script({"stop", dir_});
  } else {
    script({"stop", dir_, std::to_string(i)});
  }
}

void EtcdServer::kill(int i) {
  if (i < 0) {
    script({"kill", dir_});
  } else {
    script({"kill", dir_, std::to_string(i)});
  }
}

void EtcdServer::restart(int i) {
  script({"restart", dir_, std::to_string(i)});
}

void EtcdServer::pause(int i) {
  script({"pause", dir_, std::to_string(i)});
}

void EtcdServer::resume(int i) {
  script({"resume", dir_, std::to_string(i)});
}

int EtcdServer::leader() const {
  for (int i = 0;; ++i) {
    std::string endpoint;
    try {
      endpoint = this->endpoint(i);
    } catch (const std::out_of_range&) {
      return -1;
    }
    // "127.0.0.1:P, <id>, <version>, <db size>, <is leader>, <is learner>, ..."
    std::string out;
    try {
      out = trim(run_command({"env", "ETCDCTL_API=3", "etcdctl", "--endpoints=" + endpoint,
                              "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "status"}));
    } catch (const std::runtime_error&) {
      continue;  // down or paused
    }
    std::istringstream fields(out);
    std::string field;
    for (int n = 0; std::getline(fields, field, ','); ++n) {
      if (n == 4 && field == " true") return i;
    }
  }
}

std::vector<std::string> EtcdServer::etcdctl_tls() const {
  if (tls_ == EtcdTls::kOff) return {};
  const TestPki& pki = TestPki::shared();
  std::vector<std::string> out{"--cacert=" + pki.ca};
  if (tls_ == EtcdTls::kClientCertRequired) {
    out.push_back("--cert=" + pki.client_cert);
    out.push_back("--key=" + pki.client_key);
  }
  return out;
}

std::string EtcdServer::etcdctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"env",
                                "ETCDCTL_API=3",
                                "etcdctl",
                                "--endpoints=" + endpoints_,
                                "--dial-timeout=2s",
                                "--command-timeout=5s"};
  const auto tls = etcdctl_tls();
  argv.insert(argv.end(), tls.begin(), tls.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return trim(run_command(argv));
}

EtcdServer& EtcdServer::shared() {
  static EtcdServer server;  // stopped by its destructor when the test binary exits
  return server;
}

}  // namespace lockkit::testing
