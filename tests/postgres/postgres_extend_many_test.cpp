// SPDX-License-Identifier: MIT
// PostgresStore::extend_many: one statement (one transaction, one commit) per round of renewals,
// chunked for very large rounds, and a round against a stopped server ending within its timeouts.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/postgres.hpp"
#include "support/postgres_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

std::shared_ptr<LeaseStore> store(std::string_view extra = "") {
  return make_postgres_store(parse_postgres_url(
      PostgresServer::shared().url(std::string("schema=extend_many") + std::string(extra))));
}

// Returns the next transaction id the server will hand out. Only transactions that write get
// one, so the difference across a call counts its committed (or failed) write transactions.
long long next_xid() {
  std::unique_ptr<PGconn, void (*)(PGconn*)> c(PQconnectdb(PostgresServer::shared().url().c_str()),
                                               PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("test query: ") + PQerrorMessage(c.get()));
  }
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(
      PQexec(c.get(), "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"), PQclear);
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    throw std::runtime_error(std::string("test query: ") + PQerrorMessage(c.get()));
  }
  return std::stoll(PQgetvalue(r.get(), 0, 0));
}

std::string unique(std::string_view stem) {
  return "extend-many/" + std::string(stem) + "/" + make_token().substr(0, 8) + "/";
}

// 50 renewals are one write transaction, not 50.
TEST(PostgresExtendMany, FiftyRenewalsAreOneTransaction) {
  auto s = store();
  const std::string stem = unique("fifty");
  std::vector<std::string> keys, tokens;
  for (int i = 0; i < 50; ++i) {
    keys.push_back(stem + std::to_string(i));
    tokens.push_back(make_token());
    ASSERT_TRUE(s->acquire(keys.back(), tokens.back(), 5s));
  }
  std::vector<ExtendRequest> requests;
  for (int i = 0; i < 50; ++i) requests.push_back({keys[i], tokens[i], 30s});
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kFailed);
  const long long before = next_xid();
  s->extend_many(requests, out);
  const long long transactions = next_xid() - before;
  for (auto o : out) EXPECT_EQ(static_cast<int>(o), static_cast<int>(ExtendOutcome::kExtended));
  // Autovacuum may write in between: a little slack, far below one per renewal.
  EXPECT_LE(transactions, 3) << "the renewals did not go out as one statement";
  auto info = s->status(keys.front());
  ASSERT_TRUE(info);
  EXPECT_GT(info->remaining, 10s);
}

// 1,100 renewals are two statements (1,000 + 100), and each answer lands on its own request
// across the chunk boundary; keys with any bytes and tokens with quotes are passed intact.
TEST(PostgresExtendMany, ALargeRoundIsChunkedAndEachAnswerFindsItsRequest) {
  auto s = store();
  const std::string stem = unique("large");
  const std::string odd_key = stem + std::string("\0\xff,\"{}\\ ", 8);
  const std::string first = make_token(), last = make_token();
  ASSERT_TRUE(s->acquire(odd_key, first, 5s));
  const std::string last_key = stem + "last";
  ASSERT_TRUE(s->acquire(last_key, last, 5s));
  const std::string quoted = "a\"b\\c,{d}";  // a token nobody holds, with the array's specials
  std::vector<std::string> free_keys;
  for (int i = 0; i < 1098; ++i) free_keys.push_back(stem + "free/" + std::to_string(i));
  std::vector<ExtendRequest> requests;
  requests.push_back({odd_key, first, 30s});
  for (const auto& k : free_keys) requests.push_back({k, quoted, 30s});
  requests.push_back({last_key, last, 30s});
  ASSERT_EQ(requests.size(), 1100u);
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kFailed);
  const long long before = next_xid();
  s->extend_many(requests, out);
  const long long transactions = next_xid() - before;
  EXPECT_EQ(static_cast<int>(out.front()), static_cast<int>(ExtendOutcome::kExtended));
  EXPECT_EQ(static_cast<int>(out.back()), static_cast<int>(ExtendOutcome::kExtended));
  int not_ours = 0;
  for (std::size_t i = 1; i + 1 < out.size(); ++i) not_ours += out[i] == ExtendOutcome::kNotOurs;
  EXPECT_EQ(not_ours, 1098);
  EXPECT_GE(transactions, 2);
  EXPECT_LE(transactions, 4) << "not one statement per chunk of 1,000";
  auto info = s->status(odd_key);
  ASSERT_TRUE(info);
  EXPECT_GT(info->remaining, 10s);
}

// A stopped server (SIGSTOP): the round fails (throws, or kFailed for all) within the command
// timeout plus the cancel's grace; once it answers again, renewals go through.
TEST(PostgresExtendMany, StoppedServerFailsTheRoundWithinTheTimeout) {
  auto s = store("&connect_timeout=300ms&command_timeout=300ms");
  const std::string stem = unique("stopped");
  std::vector<std::string> keys, tokens;
  for (int i = 0; i < 20; ++i) {
    keys.push_back(stem + std::to_string(i));
    tokens.push_back(make_token());
    ASSERT_TRUE(s->acquire(keys.back(), tokens.back(), 10s));
  }
  std::vector<ExtendRequest> requests;
  for (int i = 0; i < 20; ++i) requests.push_back({keys[i], tokens[i], 10s});
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kExtended);
  auto& server = PostgresServer::shared();
  server.pause();
  const auto start = Steady::now();
  try {
    s->extend_many(requests, out);
    for (auto o : out) EXPECT_EQ(static_cast<int>(o), static_cast<int>(ExtendOutcome::kFailed));
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
  }
  const auto took = Steady::now() - start;
  server.resume();
  // command timeout + cancel grace (min(command timeout, 1 s)) + scheduling slack.
  EXPECT_LT(took, 300ms + 300ms + 700ms) << "blocked past the timeouts";
  bool renewed = false;
  for (int attempt = 0; attempt < 3 && !renewed; ++attempt) {  // the first may meet a dead conn
    std::fill(out.begin(), out.end(), ExtendOutcome::kFailed);
    try {
      s->extend_many(requests, out);
      renewed = true;
    } catch (const BackendError&) {
    }
  }
  ASSERT_TRUE(renewed);
  for (auto o : out) EXPECT_EQ(static_cast<int>(o), static_cast<int>(ExtendOutcome::kExtended));
}

}  // namespace
}  // namespace lockkit::testing
