// SPDX-License-Identifier: MIT
// Test fixture: a throwaway redis-server started by scripts/redis-server.sh, and redis-cli.
#ifndef LOCKKIT_TESTS_SUPPORT_REDIS_SERVER_HPP_
#define LOCKKIT_TESTS_SUPPORT_REDIS_SERVER_HPP_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/temp_dir.hpp"

namespace lockkit::testing {

// One redis-server on a free loopback port in its own temporary directory, persistence off,
// started by `scripts/redis-server.sh` (whose watchdog also stops it if this process dies).
// Stopped (by pid) when destroyed. Thread safety: one thread at a time.
class RedisServer {
 public:
  // Starts the server with `extra_args` for redis-server (e.g. {"--requirepass", "pw"}).
  // Throws `std::runtime_error` with the script's reason if it cannot start.
  explicit RedisServer(std::vector<std::string> extra_args = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  // Returns "redis://127.0.0.1:<port>" followed by `tail` (e.g. "?prefix=x").
  std::string url(std::string_view tail = "") const;
  // Stops the server (SIGTERM) / kills it (SIGKILL); `start` brings it back on the same port.
  void stop();
  void kill();
  void start();
  // Runs redis-cli against the server and returns its output without the trailing newline.
  std::string cli(const std::vector<std::string>& args) const;

  // Returns the server shared by the whole test binary, started on first use.
  static RedisServer& shared();

 private:
  TempDir dir_{"lockkit-redis-"};
  std::vector<std::string> extra_args_;
  std::uint16_t port_ = 0;
  bool running_ = false;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_REDIS_SERVER_HPP_
