// SPDX-License-Identifier: MIT
// Lock::keep_alive on a real PostgreSQL: the kit's keep-alive cases, with an SQL DELETE behind the
// holder's back and a SIGSTOPped server.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "lockkit/open.hpp"
#include "lockkit/testing/conformance.hpp"
#include "support/postgres_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSchema = "keep_alive";

std::string url(std::string_view extra = "") {
  return PostgresServer::shared().url(std::string("schema=") + kSchema + std::string(extra));
}

// Runs `sql` on its own libpq connection; returns the number of rows it affected.
std::string exec(const std::string& sql) {
  std::unique_ptr<PGconn, void (*)(PGconn*)> c(PQconnectdb(PostgresServer::shared().url().c_str()),
                                               PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("test query: ") + PQerrorMessage(c.get()));
  }
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(c.get(), sql.c_str()), PQclear);
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    throw std::runtime_error("test query `" + sql + "`: " + PQerrorMessage(c.get()));
  }
  return PQcmdTuples(r.get());
}

// Resumes the shared server when the test ends, also when it fails midway.
class Paused {
 public:
  ~Paused() { resume(); }
  void pause() {
    PostgresServer::shared().pause();
    paused_ = true;
  }
  void resume() {
    if (paused_) PostgresServer::shared().resume();
    paused_ = false;
  }

 private:
  bool paused_ = false;
};

// The kit's keep-alive cases: SQL DELETE behind the holder's back, SIGSTOP of the server.
KeepAliveCase PostgresKeepAliveCase() {
  static std::optional<Paused> paused;
  return KeepAliveCase{
      .name = "RealServer",
      .make = [] { return lockkit::open(url()); },
      // Each renewal is a transaction that waits for its WAL flush; a sanitizer build is slower.
      .ttl = kSanitizerBuild ? 1000ms : 600ms,
      .slack = 0ms,
      .remove =
          [](const std::string& key) {
            EXPECT_EQ(exec(std::string("DELETE FROM ") + kSchema +
                           ".leases WHERE key = convert_to('" + key + "', 'UTF8')"),
                      "1");
          },
      .pause =
          [] {
            paused.emplace();
            paused->pause();
          },
      .resume = [] { paused.reset(); },
      .make_impatient =
          [] { return lockkit::open(url("&connect_timeout=300ms&command_timeout=300ms")); },
      // A call may wait for a pool slot, connect, run its statement and confirm a cancel.
      .call_limit = 3s,
  };
}

INSTANTIATE_TEST_SUITE_P(Postgres, KeepAliveConformance, ::testing::Values(PostgresKeepAliveCase()),
                         KeepAliveCaseName);

}  // namespace
}  // namespace lockkit::testing
