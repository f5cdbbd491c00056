// SPDX-License-Identifier: MIT
// Lock::keep_alive on a real redis-server: long holds, DEL behind the holder's back, SIGSTOP,
// max_hold, and 10,000 kept-alive locks in one process.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "lockkit/open.hpp"
#include "support/keep_alive_cases.hpp"
#include "support/redis_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using namespace keep_alive;

std::string unique(std::string_view stem) {
  return "keep-alive/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

// Resumes a SIGSTOPped redis-server when the test ends, also when it fails midway.
class Paused {
 public:
  explicit Paused(RedisServer& server) {
    std::string info = server.cli({"INFO", "server"});
    auto at = info.find("process_id:");
    if (at == std::string::npos) throw std::runtime_error("no process_id in INFO");
    pid_ = static_cast<pid_t>(std::stol(info.substr(at + 11)));
  }
  ~Paused() { resume(); }
  void pause() {
    ::kill(pid_, SIGSTOP);
    paused_ = true;
  }
  void resume() {
    if (paused_) ::kill(pid_, SIGCONT);
    paused_ = false;
  }

 private:
  pid_t pid_ = 0;
  bool paused_ = false;
};

TEST(RedisKeepAlive, KeptAliveForFiveTtlsNobodyElseTakesIt) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  auto other = lockkit::open(server.url());
  KeptAliveForFiveTtls(*api, *other, unique("five"), 300ms);
}

TEST(RedisKeepAlive, DelBehindTheHoldersBackIsNoticedWithinARenewalPeriod) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  std::string key = unique("del");
  DeletedBehindTheBackIsNoticed(*api, key, 600ms, [&] {
    EXPECT_EQ(server.cli({"DEL", key}), "1");
  });
}

TEST(RedisKeepAlive, StoppedServerSignalsLossBeforeValidUntilAndNothingIsRenewedAfter) {
  RedisServer server;  // its own: SIGSTOP must not stall the other tests' server
  Paused paused(server);
  auto api = lockkit::open(server.url("?connect_timeout=300ms&command_timeout=300ms"));
  auto other = lockkit::open(server.url());
  PausedStoreSignalsBeforeTheDeadline(
      *api, *other, unique("stop"), 900ms, 2s + kSchedulingSlack, [&] { paused.pause(); },
      [&] { paused.resume(); });
}

TEST(RedisKeepAlive, MaxHoldStopsRenewalAndAnotherClientGetsTheKey) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  auto other = lockkit::open(server.url());
  MaxHoldRunsOut(*api, *other, unique("max-hold"), 600ms);
}

TEST(RedisKeepAlive, TenThousandLocksInOneProcess) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  // 10,000 renewals/s at a 3 s ttl; a sanitizer build renews half as often (6 s ttl), since it
  // runs the client several times slower than the server it renews on.
  ManyLocksFewThreads(*api, unique("many") + "/", 10000, kSanitizerBuild ? 6s : 3s, 3500ms);
}

}  // namespace
}  // namespace lockkit::testing
