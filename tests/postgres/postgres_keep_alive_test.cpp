// SPDX-License-Identifier: MIT
// Lock::keep_alive on a real PostgreSQL: long holds, DELETE behind the holder's back, a SIGSTOPped
// server, max_hold.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "lockkit/open.hpp"
#include "support/keep_alive_cases.hpp"
#include "support/postgres_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using namespace keep_alive;

constexpr const char* kSchema = "keep_alive";

std::string unique(std::string_view stem) {
  return "keep-alive/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

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

TEST(PostgresKeepAlive, KeptAliveForFiveTtlsNobodyElseTakesIt) {
  auto api = lockkit::open(url());
  auto other = lockkit::open(url());
  KeptAliveForFiveTtls(*api, *other, unique("five"), 1s);
}

TEST(PostgresKeepAlive, DeleteBehindTheHoldersBackIsNoticedWithinARenewalPeriod) {
  auto api = lockkit::open(url());
  std::string key = unique("delete");
  DeletedBehindTheBackIsNoticed(*api, key, 900ms, [&] {
    EXPECT_EQ(exec(std::string("DELETE FROM ") + kSchema + ".leases WHERE key = convert_to('" +
                   key + "', 'UTF8')"),
              "1");
  });
}

TEST(PostgresKeepAlive, StoppedServerSignalsLossBeforeValidUntilAndNothingIsRenewedAfter) {
  Paused paused;
  auto api = lockkit::open(url("&connect_timeout=300ms&command_timeout=300ms"));
  auto other = lockkit::open(url());
  auto key = unique("stop");
  (void)other->status(key);  // connected before the pause
  // A call may wait for a pool slot, connect, run its statement and confirm a cancel.
  PausedStoreSignalsBeforeTheDeadline(
      *api, *other, key, 1200ms, 3s + kSchedulingSlack, [&] { paused.pause(); },
      [&] { paused.resume(); });
}

TEST(PostgresKeepAlive, MaxHoldStopsRenewalAndAnotherClientGetsTheKey) {
  auto api = lockkit::open(url());
  auto other = lockkit::open(url());
  MaxHoldRunsOut(*api, *other, unique("max-hold"), 900ms);
}

}  // namespace
}  // namespace lockkit::testing
