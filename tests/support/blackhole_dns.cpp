// SPDX-License-Identifier: MIT
// A child process in its own namespaces whose resolver swallows every query.
#include "support/blackhole_dns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "support/process.hpp"

namespace lockkit::testing {
namespace {

// Sets up the namespaces; returns "" or what failed.
std::string make_blackhole() {
  auto failed = [](const std::string& what) {
    return what + ": " + std::strerror(errno) + " (needs root: unshare, mount)";
  };
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET) != 0)
    return failed("unshare(CLONE_NEWNS|CLONE_NEWNET)");
  // Our mounts must not propagate to the host's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return failed("mount --make-rprivate /");
  }
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return failed("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return failed("SIOCGIFFLAGS lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return failed("bring lo up");
  ::close(s);

  char path[] = "/tmp/lockkit-resolv.XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return failed("mkstemp");
  const std::string conf = "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n";
  bool written = ::write(fd, conf.data(), conf.size()) == static_cast<ssize_t>(conf.size());
  ::close(fd);
  if (!written) return failed("write resolv.conf");
  if (::mount(path, "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0) {
    ::unlink(path);
    return failed("bind-mount a private /etc/resolv.conf");
  }
  ::unlink(path);  // the bind mount keeps the file alive

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(53);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Bound and never read: queries are accepted by the kernel and never answered.
  int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (udp < 0 || ::bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return failed("bind UDP 127.0.0.1:53");
  }
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (tcp < 0 || ::bind(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(tcp, 64) != 0) {
    return failed("listen TCP 127.0.0.1:53");
  }
  return "";  // both sockets stay open until the child exits
}

}  // namespace

int run_with_blackhole_dns(const std::function<int()>& fn) {
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) throw std::runtime_error("blackhole dns: pipe failed");
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("blackhole dns: fork failed");
  if (pid == 0) {
    ::close(report[0]);
    std::string error = make_blackhole();
    std::string message = error.empty() ? "ok" : error;
    (void)!::write(report[1], message.data(), message.size());
    ::close(report[1]);
    if (!error.empty()) ::_exit(99);
    int rc = 1;
    try {
      rc = fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "blackhole dns child: %s\n", e.what());
      rc = 98;
    } catch (...) {
      rc = 98;
    }
    std::fflush(nullptr);
    ::_exit(rc & 0xff);
  }
  ::close(report[1]);
  std::string message;
  char buf[512];
  ssize_t n;
  while ((n = ::read(report[0], buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    message.append(buf, static_cast<std::size_t>(n));
  }
  ::close(report[0]);
  int status = wait_exit(pid);
  if (message != "ok") {
    throw std::runtime_error("blackhole dns: cannot make the namespaces: " +
                             (message.empty() ? std::string("the child died") : message));
  }
  return status;
}

}  // namespace lockkit::testing
