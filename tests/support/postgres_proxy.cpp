// SPDX-License-Identifier: MIT
// The loopback TCP forwarder used to lose a PostgreSQL server's answers on purpose.
#include "support/postgres_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace lockkit::testing {
namespace {

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Copies what `from` has to `to` (or drops it); returns false when `from` is closed or failed.
bool pump(int from, int to, bool drop) {
  char buf[16384];
  ssize_t n = ::recv(from, buf, sizeof buf, 0);
  if (n <= 0) return false;
  if (drop) return true;
  for (ssize_t off = 0; off < n;) {
    ssize_t w = ::send(to, buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
    if (w <= 0) return false;
    off += w;
  }
  return true;
}

}  // namespace

TcpProxy::TcpProxy(std::uint16_t target) : target_(target) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener_ < 0) throw std::runtime_error("proxy: socket failed");
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener_, 64) != 0 ||
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(listener_);
    throw std::runtime_error("proxy: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { loop(); });
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  thread_.join();
  ::close(listener_);
  for (const Pair& p : pairs_) {
    ::close(p.client);
    ::close(p.server);
  }
}

void TcpProxy::swallow_replies() {
  std::lock_guard<std::mutex> guard(mu_);
  for (Pair& p : pairs_) p.swallow = true;
}

void TcpProxy::loop() {
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back(pollfd{listener_, POLLIN, 0});
    {
      std::lock_guard<std::mutex> guard(mu_);
      for (const Pair& p : pairs_) {
        fds.push_back(pollfd{p.client, POLLIN, 0});
        fds.push_back(pollfd{p.server, POLLIN, 0});
      }
    }
    if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
    std::lock_guard<std::mutex> guard(mu_);
    if (fds[0].revents & POLLIN) {
      int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = loopback(target_);
        if (server >= 0 && ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
          pairs_.push_back(Pair{client, server, false});
        } else {
          if (server >= 0) ::close(server);
          ::close(client);
        }
      }
    }
    // fds[1 + 2i] and fds[2 + 2i] belong to pairs_[i] as it was before any accept above.
    std::vector<std::size_t> dead;
    for (std::size_t i = 0; 2 + 2 * i < fds.size(); ++i) {
      Pair& p = pairs_[i];
      bool ok = true;
      if (fds[1 + 2 * i].revents) ok = pump(p.client, p.server, false);
      if (ok && fds[2 + 2 * i].revents) ok = pump(p.server, p.client, p.swallow);
      if (!ok) dead.push_back(i);
    }
    for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
      ::close(pairs_[*it].client);
      ::close(pairs_[*it].server);
      pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(*it));
    }
  }
}

}  // namespace lockkit::testing
