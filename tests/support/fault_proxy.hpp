// SPDX-License-Identifier: MIT
// Test fault injector: a loopback TCP proxy in front of a real server (redis-server,
// PostgreSQL) that can lose replies or go silent. It changes only what reaches the client,
// never the server's behaviour.
#ifndef LOCKKIT_TESTS_SUPPORT_FAULT_PROXY_HPP_
#define LOCKKIT_TESTS_SUPPORT_FAULT_PROXY_HPP_

#include <netinet/in.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lockkit::testing {

// 127.0.0.1:`port` (0: any free port), for the tests' own sockets.
sockaddr_in loopback_address(std::uint16_t port);
// Sends all of `data` to `fd`, retrying short sends; false once the peer is gone.
bool send_all(int fd, const char* data, std::size_t size);

// Forwards 127.0.0.1:<port()> to 127.0.0.1:<upstream>, one thread per connection.
// Thread safety: the controls may be called from any thread.
class FaultProxy {
 public:
  // Listens on a free loopback port. Throws `std::runtime_error` if it cannot.
  explicit FaultProxy(std::uint16_t upstream);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  // From now on, the connections open right now swallow the server's replies (the requests
  // still reach the server); connections opened later work normally.
  void drop_replies_on_existing();
  // While true, every connection, old or new, forwards nothing in either direction.
  void set_silent(bool silent) { silent_.store(silent); }

 private:
  struct Link;
  void accept_loop();
  void pump(Link& link);

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe that tells every thread to stop
  std::uint16_t upstream_;
  std::uint16_t port_ = 0;
  std::atomic<bool> silent_{false};
  std::mutex mu_;
  std::vector<std::unique_ptr<Link>> links_;  // guarded by mu_
  std::thread acceptor_;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_FAULT_PROXY_HPP_
