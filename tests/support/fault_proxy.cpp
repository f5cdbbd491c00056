// SPDX-License-Identifier: MIT
// The fault-injecting loopback proxy used by the redis:// and postgres:// fault tests.
#include "support/fault_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace lockkit::testing {

struct FaultProxy::Link {
  int client = -1;
  int server = -1;
  std::atomic<bool> drop_replies{false};
  std::thread thread;
  ~Link() {
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }
};

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("fault proxy: " + what + ": " + std::strerror(errno));
}

}  // namespace

sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

bool send_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

FaultProxy::FaultProxy(std::uint16_t upstream) : upstream_(upstream) {
  if (::pipe2(wake_, O_CLOEXEC) != 0) fail("pipe");
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("socket");
  sockaddr_in addr = loopback_address(0);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
  if (::listen(listen_fd_, 64) != 0) fail("listen");
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FaultProxy::~FaultProxy() {
  char c = 'x';
  (void)!::write(wake_[1], &c, 1);  // never read: it stays readable for every thread
  acceptor_.join();
  std::vector<std::unique_ptr<Link>> links;
  {
    std::lock_guard<std::mutex> guard(mu_);
    links.swap(links_);
  }
  for (auto& link : links) link->thread.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void FaultProxy::drop_replies_on_existing() {
  std::lock_guard<std::mutex> guard(mu_);
  for (auto& link : links_) link->drop_replies.store(true);
}

void FaultProxy::accept_loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    auto link = std::make_unique<Link>();
    link->client = client;
    link->server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback_address(upstream_);
    if (link->server < 0 ||
        ::connect(link->server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      continue;  // the server is down: closing the client's side tells it so
    }
    Link* raw = link.get();
    std::lock_guard<std::mutex> guard(mu_);
    links_.push_back(std::move(link));
    raw->thread = std::thread([this, raw] { pump(*raw); });
  }
}

void FaultProxy::pump(Link& link) {
  char buf[16384];
  while (true) {
    pollfd fds[3] = {{link.client, POLLIN, 0}, {link.server, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) continue;
    if (fds[2].revents != 0) return;
    for (int side = 0; side < 2; ++side) {
      if (fds[side].revents == 0) continue;
      int from = side == 0 ? link.client : link.server;
      int to = side == 0 ? link.server : link.client;
      ssize_t n = ::recv(from, buf, sizeof buf, 0);
      if (n <= 0) {
        ::shutdown(link.client, SHUT_RDWR);
        ::shutdown(link.server, SHUT_RDWR);
        return;
      }
      bool drop = silent_.load() || (side == 1 && link.drop_replies.load());
      if (!drop && !send_all(to, buf, static_cast<std::size_t>(n))) {
        ::shutdown(link.client, SHUT_RDWR);
        ::shutdown(link.server, SHUT_RDWR);
        return;
      }
    }
  }
}

}  // namespace lockkit::testing
