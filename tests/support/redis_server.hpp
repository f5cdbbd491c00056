// SPDX-License-Identifier: MIT
// Test fixture: a throwaway redis-server started by scripts/redis-server.sh, and redis-cli.
#ifndef LOCKKIT_TESTS_SUPPORT_REDIS_SERVER_HPP_
#define LOCKKIT_TESTS_SUPPORT_REDIS_SERVER_HPP_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {

// Certificates made once per test binary by the `openssl` CLI (EC P-256, valid for a day) in a
// temporary directory: a CA, a server certificate for 127.0.0.1 and localhost and a client
// certificate both signed by it, and an unrelated CA that signed neither. Paths to PEM files.
struct TestPki {
  std::string dir;
  std::string ca;
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string other_ca;
  // A client certificate signed by `other_ca`, which the server does not trust.
  std::string stranger_cert, stranger_key;

  // Returns the binary's certificates, made on first use. Throws `std::runtime_error` if
  // `openssl` fails.
  static const TestPki& shared();
};

// Whether a server also listens for TLS (on `tls_port()`, with `TestPki::shared()`'s server
// certificate) and whether that port requires a client certificate signed by its CA.
enum class RedisTls { kOff, kOn, kClientCertRequired };

// One redis-server on a free loopback port in its own temporary directory, persistence off,
// started by `scripts/redis-server.sh` (whose watchdog also stops it if this process dies).
// Stopped (by pid) when destroyed. Thread safety: one thread at a time.
class RedisServer {
 public:
  // Starts the server with `extra_args` for redis-server (e.g. {"--requirepass", "pw"}), and a
  // TLS port too unless `tls` is kOff. Throws `std::runtime_error` with the script's reason if it
  // cannot start.
  explicit RedisServer(std::vector<std::string> extra_args = {}, RedisTls tls = RedisTls::kOff);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::uint16_t tls_port() const noexcept { return tls_port_; }
  // Returns "redis://127.0.0.1:<port>" followed by `tail` (e.g. "?prefix=x").
  std::string url(std::string_view tail = "") const;
  // Returns "rediss://127.0.0.1:<tls_port>?tls_ca_file=<the test CA>" followed by `tail`
  // (e.g. "&prefix=x").
  std::string tls_url(std::string_view tail = "") const;
  // Stops the server (SIGTERM) / kills it (SIGKILL); `start` brings it back on the same port.
  void stop();
  void kill();
  void start();
  // Returns the running server's pid (for SIGSTOP/SIGCONT in tests), 0 if it is not running.
  int pid() const;
  // Runs redis-cli against the server and returns its output without the trailing newline.
  std::string cli(const std::vector<std::string>& args) const;

  // Returns the server shared by the whole test binary, started on first use.
  static RedisServer& shared();
  // Returns a TLS server (kOn) shared by the whole test binary, started on first use.
  static RedisServer& shared_tls();

 private:
  TempDir dir_{"lockkit-redis-"};
  std::vector<std::string> extra_args_;
  RedisTls tls_ = RedisTls::kOff;
  std::uint16_t port_ = 0;
  std::uint16_t tls_port_ = 0;
  bool running_ = false;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_REDIS_SERVER_HPP_
