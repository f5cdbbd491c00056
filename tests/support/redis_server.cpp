// SPDX-License-Identifier: MIT
// The redis-server fixture: drives scripts/redis-server.sh and redis-cli without a shell.
#include "support/redis_server.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "support/process.hpp"
#include "support/server_script.hpp"

namespace lockkit::testing {
namespace {

constexpr char kScript[] = "redis-server.sh";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

namespace {

// Owns the certificates' directory for the binary's lifetime.
struct PkiHolder {
  TestPki pki;
  ~PkiHolder() {
    std::error_code ec;
    std::filesystem::remove_all(pki.dir, ec);
  }
};

void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  run_command(argv);
}

// A new EC key and a certificate for `subject`, signed by `ca` (or self-signed when empty).
void make_cert(const std::string& dir, const std::string& name, const std::string& subject,
               const std::string& ca, const std::string& ca_key, const std::string& extensions) {
  const std::string key = dir + "/" + name + ".key";
  const std::string crt = dir + "/" + name + ".crt";
  if (ca.empty()) {
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", crt, "-days", "1", "-subj", subject});
    return;
  }
  const std::string csr = dir + "/" + name + ".csr";
  const std::string ext = dir + "/" + name + ".ext";
  std::ofstream(ext) << extensions << "\n";
  openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", key, "-out", csr, "-subj", subject});
  openssl({"x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
           "-out", crt, "-extfile", ext});
}

}  // namespace

const TestPki& TestPki::shared() {
  static PkiHolder holder{[] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lockkit-pki-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    }
    TestPki p;
    p.dir = tmpl;
    make_cert(p.dir, "ca", "/CN=lockkit test CA", "", "", "");
    make_cert(p.dir, "other-ca", "/CN=lockkit unrelated CA", "", "", "");
    p.ca = p.dir + "/ca.crt";
    p.other_ca = p.dir + "/other-ca.crt";
    make_cert(p.dir, "server", "/CN=localhost", p.ca, p.dir + "/ca.key",
              "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
    make_cert(p.dir, "client", "/CN=lockkit test client", p.ca, p.dir + "/ca.key",
              "extendedKeyUsage=clientAuth");
    make_cert(p.dir, "stranger", "/CN=lockkit stranger", p.other_ca, p.dir + "/other-ca.key",
              "extendedKeyUsage=clientAuth");
    p.server_cert = p.dir + "/server.crt";
    p.server_key = p.dir + "/server.key";
    p.client_cert = p.dir + "/client.crt";
    p.client_key = p.dir + "/client.key";
    p.stranger_cert = p.dir + "/stranger.crt";
    p.stranger_key = p.dir + "/stranger.key";
    return p;
  }()};
  return holder.pki;
}

RedisServer::RedisServer(std::vector<std::string> extra_args, RedisTls tls)
    : extra_args_(std::move(extra_args)), tls_(tls) {
  if (tls_ != RedisTls::kOff) {
    const TestPki& pki = TestPki::shared();
    extra_args_.insert(
        extra_args_.end(),
        {"--tls-cert-file", pki.server_cert, "--tls-key-file", pki.server_key, "--tls-ca-cert-file",
         pki.ca, "--tls-auth-clients", tls_ == RedisTls::kClientCertRequired ? "yes" : "no"});
  }
  start();
}

RedisServer::~RedisServer() {
  try {
    if (running_) server_command(kScript, "stop", dir_.string());
  } catch (...) {  // a destructor must not throw; the directory still goes
  }
}

void RedisServer::start() {
  std::vector<std::string> args;
  std::vector<std::string> extra = extra_args_;
  if (port_ != 0) {
    args = {"--port", std::to_string(port_)};
    if (tls_port_ != 0) extra.insert(extra.end(), {"--tls-port", std::to_string(tls_port_)});
  } else if (tls_ != RedisTls::kOff) {
    args.push_back("--with-tls-port");
  }
  if (!extra.empty()) {
    args.push_back("--");
    args.insert(args.end(), extra.begin(), extra.end());
  }
  ScriptServer started = start_server(kScript, dir_.string(), args);
  port_ = started.port;
  if (tls_ != RedisTls::kOff && tls_port_ == 0) tls_port_ = started.tls_port;
  running_ = true;
}

void RedisServer::stop() {
  server_command(kScript, "stop", dir_.string());
  running_ = false;
}

void RedisServer::kill() {
  server_command(kScript, "kill", dir_.string());
  running_ = false;
}

int RedisServer::pid() const {
  if (!running_) return 0;
  int pid = 0;
  std::ifstream(dir_.file("redis.pid")) >> pid;
  return pid;
}

std::string RedisServer::url(std::string_view tail) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + std::string(tail);
}

std::string RedisServer::tls_url(std::string_view tail) const {
  return "rediss://127.0.0.1:" + std::to_string(tls_port_) +
         "?tls_ca_file=" + TestPki::shared().ca + std::string(tail);
}

std::string RedisServer::cli(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(port_)};
  argv.insert(argv.end(), args.begin(), args.end());
  return trim(run_command(argv));
}

RedisServer& RedisServer::shared() {
  static RedisServer server;  // stopped by its destructor when the test binary exits
  return server;
}

RedisServer& RedisServer::shared_tls() {
  static RedisServer server({}, RedisTls::kOn);
  return server;
}

}  // namespace lockkit::testing
