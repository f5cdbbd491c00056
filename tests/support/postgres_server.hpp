// SPDX-License-Identifier: MIT
// Test fixture: a throwaway PostgreSQL cluster from scripts/postgres-server.sh, once per binary.
#ifndef LOCKKIT_TESTS_SUPPORT_POSTGRES_SERVER_HPP_
#define LOCKKIT_TESTS_SUPPORT_POSTGRES_SERVER_HPP_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "support/temp_dir.hpp"

namespace lockkit::testing {

// A PostgreSQL cluster in a temp dir on a free loopback port, started by
// `scripts/postgres-server.sh` (initdb + pg_ctl, as the postgres OS user under root) and
// destroyed at exit (a watchdog in the script also stops it if this process dies).
//   auto& pg = PostgresServer::shared();
//   auto api = lockkit::open(pg.url("schema=t1"));
// Thread safety: `shared()` and the accessors are safe; stop/start/pause/resume from one thread.
class PostgresServer {
 public:
  // Returns the binary's server, starting it on first use. Throws `std::runtime_error` with the
  // script's reason if it cannot start (the test then fails; nothing is skipped).
  static PostgresServer& shared();

  ~PostgresServer();

  // Returns postgres://lockkit:<password>@127.0.0.1:<port>/lockkit, plus "?query" if given.
  std::string url(std::string_view query = {}) const;
  // Returns the same URL with `password` instead of the role's real one.
  std::string url_with_password(std::string_view password) const;
  std::uint16_t port() const { return port_; }
  const std::string& password() const { return password_; }

  // Stops the server (fast shutdown) and waits until it is gone.
  void stop();
  // Crashes the server: an immediate shutdown (SIGQUIT to the postmaster, as `pg_ctl stop -m
  // immediate`), which ends every process without flushing anything; waits until it is gone.
  // `start` then runs crash recovery.
  void crash();
  // Starts it again on the same data directory and port.
  void start();
  // Freezes the server and all its processes with SIGSTOP: it accepts TCP but never answers.
  void pause();
  // Undoes `pause`.
  void resume();

 private:
  PostgresServer();
  void run_start();

  TempDir dir_{"lockkit-pg-"};
  bool running_ = false;
  std::uint16_t port_ = 0;
  pid_t pid_ = 0;
  std::string password_;
  std::string url_;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_POSTGRES_SERVER_HPP_
