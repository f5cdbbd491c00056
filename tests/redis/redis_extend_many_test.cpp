// SPDX-License-Identifier: MIT
// RedisStore::extend_many: one pipelined round trip for a batch of renewals, a failing request
// failing alone, and a round against a stopped server ending within the timeouts.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/redis.hpp"
#include "support/redis_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// Returns the number after "`field`:" in `info` (INFO's "name:value" lines), 0 if absent.
long long info_field(const std::string& info, const std::string& field) {
  auto at = info.find(field + ":");
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + field.size() + 1));
}

// Returns the calls of EVALSHA so far (INFO commandstats: "cmdstat_evalsha:calls=N,...").
long long evalsha_calls(RedisServer& server) {
  std::string info = server.cli({"INFO", "commandstats"});
  auto at = info.find("cmdstat_evalsha:calls=");
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + 22));
}

struct Held {
  std::string key;
  std::string token;
};

std::vector<Held> hold(LeaseStore& store, const std::string& stem, int n) {
  std::vector<Held> out;
  for (int i = 0; i < n; ++i) {
    Held h{stem + std::to_string(i), make_token()};
    EXPECT_TRUE(store.acquire(h.key, h.token, 5s));
    out.push_back(std::move(h));
  }
  return out;
}

std::vector<ExtendRequest> requests_of(const std::vector<Held>& held,
                                       std::chrono::milliseconds ttl) {
  std::vector<ExtendRequest> out;
  for (const auto& h : held) out.push_back({h.key, h.token, ttl});
  return out;
}

// 50 renewals cost the server one read (one round trip), not 50; each ran its script once.
TEST(RedisExtendMany, FiftyRenewalsAreOnePipelinedRoundTrip) {
  RedisServer server;  // its own: no other client's reads in the count
  auto store = make_redis_store(parse_redis_url(server.url("?connections=1")));
  auto held = hold(*store, "batch/", 50);
  const auto requests = requests_of(held, 30s);
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kFailed);
  const long long reads_before = info_field(server.cli({"INFO", "stats"}), "total_reads_processed");
  const long long calls_before = evalsha_calls(server);
  store->extend_many(requests, out);
  // Each INFO costs a read of its own: the second one's is in the difference.
  const long long reads =
      info_field(server.cli({"INFO", "stats"}), "total_reads_processed") - reads_before - 1;
  const long long calls = evalsha_calls(server) - calls_before;
  for (auto o : out) EXPECT_EQ(static_cast<int>(o), static_cast<int>(ExtendOutcome::kExtended));
  EXPECT_EQ(calls, 50) << "every renewal runs its script once";
  // One send of ~8 KB: one read, two if the kernel split it (plus the commandstats INFO).
  EXPECT_LE(reads, 4) << "the renewals did not go out as one pipelined round";
  auto info = store->status(held.front().key);
  ASSERT_TRUE(info);
  EXPECT_GT(info->remaining, 10s);
}

// A request whose script fails on the server (the lock key holds a hash) is kFailed; the ones
// before and after it in the same pipeline get their own answers.
TEST(RedisExtendMany, AnErrorReplyFailsItsOwnRequestOnly) {
  auto& server = RedisServer::shared();
  auto store = make_redis_store(parse_redis_url(server.url()));
  const std::string stem = "extend-many/error/" + make_token().substr(0, 8) + "/";
  auto held = hold(*store, stem, 2);
  const std::string wrong_type = stem + "hash";
  ASSERT_EQ(server.cli({"HSET", wrong_type, "field", "value"}), "1");
  const std::string stranger = make_token();
  const std::vector<ExtendRequest> requests = {{held[0].key, held[0].token, 30s},
                                               {wrong_type, stranger, 30s},
                                               {held[1].key, stranger, 30s},
                                               {held[1].key, held[1].token, 30s}};
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kExtended);
  store->extend_many(requests, out);
  EXPECT_EQ(static_cast<int>(out[0]), static_cast<int>(ExtendOutcome::kExtended));
  EXPECT_EQ(static_cast<int>(out[1]), static_cast<int>(ExtendOutcome::kFailed));
  EXPECT_EQ(static_cast<int>(out[2]), static_cast<int>(ExtendOutcome::kNotOurs));
  EXPECT_EQ(static_cast<int>(out[3]), static_cast<int>(ExtendOutcome::kExtended));
  // The connection is still good for the next call.
  EXPECT_TRUE(store->release(held[0].key, held[0].token));
}

// A server that stops answering (SIGSTOP) mid-hold: the round fails (throws, or kFailed for
// all) within the command timeout, and the next round after it resumes works again.
TEST(RedisExtendMany, StoppedServerFailsTheRoundWithinTheTimeout) {
  RedisServer server;
  auto store =
      make_redis_store(parse_redis_url(server.url("?connect_timeout=300ms&command_timeout=300ms")));
  auto held = hold(*store, "stopped/", 20);
  const auto requests = requests_of(held, 10s);
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kExtended);
  const int pid = server.pid();
  ASSERT_GT(pid, 0);
  ::kill(pid, SIGSTOP);
  const auto start = Steady::now();
  try {
    store->extend_many(requests, out);
    for (auto o : out) EXPECT_EQ(static_cast<int>(o), static_cast<int>(ExtendOutcome::kFailed));
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
  }
  const auto took = Steady::now() - start;
  ::kill(pid, SIGCONT);
  EXPECT_LT(took, 300ms + 300ms + 500ms) << "blocked past connect + command timeouts";
  std::fill(out.begin(), out.end(), ExtendOutcome::kFailed);
  store->extend_many(requests, out);
  for (auto o : out) EXPECT_EQ(static_cast<int>(o), static_cast<int>(ExtendOutcome::kExtended));
}

}  // namespace
}  // namespace lockkit::testing
