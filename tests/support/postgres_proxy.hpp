// SPDX-License-Identifier: MIT
// Test helper: a loopback TCP forwarder that can swallow a server's answers (lost replies).
#ifndef LOCKKIT_TESTS_SUPPORT_POSTGRES_PROXY_HPP_
#define LOCKKIT_TESTS_SUPPORT_POSTGRES_PROXY_HPP_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace lockkit::testing {

// Forwards 127.0.0.1:<port()> to 127.0.0.1:<target>, both ways, on one thread. After
// `swallow_replies()`, what the server sends on the connections open at that moment is dropped
// while the clients' requests still pass: the server applies a statement, its answer is lost.
// Connections opened later are forwarded normally.
// Thread safety: safe to share.
class TcpProxy {
 public:
  explicit TcpProxy(std::uint16_t target);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  std::uint16_t port() const { return port_; }
  // Drops the server's answers on every connection open now.
  void swallow_replies();

 private:
  struct Pair {
    int client;
    int server;
    bool swallow;
  };
  void loop();

  std::uint16_t target_;
  std::uint16_t port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Pair> pairs_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_POSTGRES_PROXY_HPP_
