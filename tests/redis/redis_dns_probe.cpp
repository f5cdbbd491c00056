// SPDX-License-Identifier: MIT
// A separate process for the hung-resolver test: in private mount and network namespaces it
// points /etc/resolv.conf at a UDP socket on 127.0.0.1:53 that never answers, then times one
// redis:// call on a host name.
//   redis_dns_probe HOST TIMEOUT_MS
// Prints one line: "error <kind> <elapsed ms> <message>" or "ok <elapsed ms>" (exit 0), or
// "setup <reason>" (exit 2) when the namespaces or the black-hole resolver cannot be made.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"

namespace {

[[noreturn]] void setup_failed(const std::string& what) {
  std::printf("setup %s: %s\n", what.c_str(), std::strerror(errno));
  std::fflush(stdout);
  std::_Exit(2);
}

bool write_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// Enters new mount and network namespaces: directly as root, else inside a user namespace.
void enter_namespaces() {
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET) == 0) return;
  uid_t uid = ::getuid();
  gid_t gid = ::getgid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0) setup_failed("unshare");
  write_file("/proc/self/setgroups", "deny");
  if (!write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1\n") ||
      !write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1\n")) {
    setup_failed("uid_map");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: redis_dns_probe HOST TIMEOUT_MS\n");
    return 64;
  }
  const std::string host = argv[1];
  const std::string timeout = argv[2];

  enter_namespaces();
  // Our bind mount must not propagate to the host's mount namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) setup_failed("mount");
  char conf[] = "/tmp/lockkit-resolv-XXXXXX";
  int conf_fd = ::mkstemp(conf);
  if (conf_fd < 0) setup_failed("mkstemp");
  const std::string text = "nameserver 127.0.0.1\noptions timeout:30 attempts:3\n";
  if (::write(conf_fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    setup_failed("write resolv.conf");
  }
  ::close(conf_fd);
  if (::mount(conf, "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0) {
    ::unlink(conf);
    setup_failed("bind-mount /etc/resolv.conf");
  }
  ::unlink(conf);  // the mount keeps the file alive

  // A fresh network namespace has only a loopback, and it is down.
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) setup_failed("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) setup_failed("SIOCGIFFLAGS lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) setup_failed("SIOCSIFFLAGS lo");
  ::close(s);

  // The black hole: queries arrive (no ICMP "port unreachable") and are never answered.
  int dns = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (dns < 0) setup_failed("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(53);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(dns, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) setup_failed("bind :53");

  auto api = lockkit::open("redis://" + host + ":6379?connect_timeout=" + timeout +
                           "ms&command_timeout=" + timeout + "ms");
  auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start)
        .count();
  };
  try {
    (void)api->try_acquire("dns", std::chrono::seconds(5));
    std::printf("ok %lld\n", static_cast<long long>(elapsed()));
  } catch (const lockkit::BackendError& e) {
    long long ms = elapsed();
    std::printf("error %s %lld %s\n", lockkit::to_string(e.kind()), ms, e.what());
  } catch (const std::exception& e) {
    long long ms = elapsed();
    std::printf("error other %lld %s\n", ms, e.what());
  }
  std::fflush(stdout);
  std::_Exit(0);  // a resolver thread may still be waiting on the black hole
}
