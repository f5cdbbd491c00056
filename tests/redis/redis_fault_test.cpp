// SPDX-License-Identifier: MIT
// redis:// when the server fails: down, silent, restarted, killed mid-stream, a reply lost.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "support/fault_proxy.hpp"
#include "support/redis_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::FaultProxy;
using testing::RedisServer;

constexpr auto kSchedulingSlack = 1500ms;  // generous: the CI box is small and shared

// Runs `fn`, expects a BackendError, and returns it with how long the call took.
template <class F>
std::pair<BackendError, Clock::duration> ExpectBackendError(F&& fn) {
  auto start = Clock::now();
  try {
    fn();
  } catch (const BackendError& e) {
    return {e, Clock::now() - start};
  }
  ADD_FAILURE() << "no BackendError";
  return {BackendError("redis", ErrorKind::kProtocol, "none"), Clock::now() - start};
}

TEST(RedisFaults, ServerDownIsUnavailableAtOnce) {
  std::uint16_t port = 0;
  {
    RedisServer gone;
    port = gone.port();
  }  // stopped: nothing listens on the port any more
  auto api = lockkit::open("redis://127.0.0.1:" + std::to_string(port) +
                           "?connect_timeout=500ms&command_timeout=500ms");
  auto [error, took] = ExpectBackendError([&] { (void)api->try_acquire("down", 5s); });
  EXPECT_EQ(error.kind(), ErrorKind::kUnavailable) << error.what();
  EXPECT_TRUE(error.retryable());
  EXPECT_NE(std::string(error.what()).find("try_acquire \"down\""), std::string::npos)
      << error.what();
  EXPECT_LT(took, 1s + kSchedulingSlack);
  EXPECT_THROW((void)api->status("down"), BackendError);
}

TEST(RedisFaults, SilentServerTimesOutWithinTheConnectTimeout) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.set_silent(true);
  auto api = lockkit::open("redis://127.0.0.1:" + std::to_string(proxy.port()) +
                           "?connect_timeout=300ms&command_timeout=300ms");
  auto [error, took] = ExpectBackendError([&] { (void)api->try_acquire("silent", 5s); });
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 300ms + kSchedulingSlack);
  proxy.set_silent(false);
  EXPECT_TRUE(api->try_acquire("silent", 5s)) << "did not recover once the server answered";
}

TEST(RedisFaults, SilenceAfterConnectTimesOutWithinTheCommandTimeout) {
  RedisServer server;
  FaultProxy proxy(server.port());
  auto api = lockkit::open("redis://127.0.0.1:" + std::to_string(proxy.port()) +
                           "?connect_timeout=300ms&command_timeout=300ms&connections=1");
  auto lock = api->try_acquire("quiet", 30s);
  ASSERT_TRUE(lock);
  proxy.set_silent(true);
  auto [error, took] = ExpectBackendError([&] { (void)lock->extend(30s); });
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_LT(took, 600ms + kSchedulingSlack);
  proxy.set_silent(false);
  EXPECT_TRUE(lock->release());
}

TEST(RedisFaults, LostReplyReleasesOurTokenAndReportsInDoubt) {
  RedisServer server;
  FaultProxy proxy(server.port());
  auto api = lockkit::open("redis://127.0.0.1:" + std::to_string(proxy.port()) +
                           "?connect_timeout=1s&command_timeout=300ms&connections=1");
  ASSERT_TRUE(api->try_acquire("warm-up", 5s));  // opens the connection whose replies we drop
  proxy.drop_replies_on_existing();
  auto [error, took] = ExpectBackendError([&] { (void)api->try_acquire("doubt", 30s); });
  EXPECT_EQ(error.kind(), ErrorKind::kInDoubt) << error.what();
  EXPECT_TRUE(error.retryable());
  EXPECT_NE(std::string(error.what()).find("in doubt"), std::string::npos) << error.what();
  EXPECT_LT(took, 1300ms + kSchedulingSlack);
  // The acquire did reach the server; the in-doubt path took it back with our token.
  EXPECT_EQ(server.cli({"EXISTS", "doubt"}), "0");
  auto lock = api->try_acquire("doubt", 30s);
  ASSERT_TRUE(lock) << "the next call did not work on a fresh connection";
  EXPECT_EQ(std::string(error.what()).find(lock->token()), std::string::npos);
}

TEST(RedisFaults, RestartWhileHoldingRecoversWithoutRebuilding) {
  RedisServer server;
  auto api = lockkit::open(server.url("?connect_timeout=500ms&command_timeout=500ms"));
  auto lock = api->try_acquire("held", 60s);
  ASSERT_TRUE(lock);
  const auto fence = lock->fence();
  server.stop();

  auto [down, took] = ExpectBackendError([&] { (void)api->try_acquire("other", 5s); });
  EXPECT_TRUE(down.kind() == ErrorKind::kUnavailable || down.kind() == ErrorKind::kTimeout)
      << down.what();
  EXPECT_LT(took, 1s + kSchedulingSlack);
  EXPECT_THROW((void)lock->release(), BackendError);
  EXPECT_TRUE(lock->held()) << "a failed release must leave the lock releasable";

  server.start();  // same port, empty data set (no persistence)
  auto next = api->try_acquire("held", 60s);
  ASSERT_TRUE(next) << "the restarted server lost the lock, so the key is free";
  EXPECT_GT(next->fence(), fence) << "fences went backwards after a restart";
  EXPECT_FALSE(lock->release()) << "the old lease is gone";
  EXPECT_TRUE(next->release());
}

TEST(RedisFaults, KillAndRestartMidStreamNeverHangs) {
  RedisServer server;
  auto api = lockkit::open(server.url("?connect_timeout=300ms&command_timeout=300ms"));
  constexpr int kThreads = 8;
  std::atomic<bool> restarted{false};
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<int> after_restart{0};
  std::vector<Clock::duration> longest(kThreads, Clock::duration::zero());
  std::vector<std::thread> threads;
  // Stops and joins the threads also when an assertion or the fixture throws.
  struct Joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      stop = true;
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{stop, threads};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = "stream/" + std::to_string(t);
      while (!stop.load()) {
        auto start = Clock::now();
        try {
          if (auto lock = api->try_acquire(key, 5s)) {
            (void)lock->release();
            if (restarted.load()) after_restart.fetch_add(1);
          }
        } catch (const BackendError& e) {
          EXPECT_TRUE(e.retryable()) << e.what();
          errors.fetch_add(1);
        }
        longest[t] = std::max(longest[t], Clock::now() - start);
      }
    });
  }
  std::this_thread::sleep_for(200ms);
  server.kill();
  std::this_thread::sleep_for(300ms);
  server.start();
  restarted = true;
  auto deadline = Clock::now() + 10s;
  while (after_restart.load() < 100 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(errors.load(), 0) << "the kill went unnoticed";
  EXPECT_GE(after_restart.load(), 100) << "calls did not recover after the restart";
  for (auto d : longest) {
    // One call may meet a dead connection, then a failed reconnect: connect + command timeout.
    EXPECT_LT(d, 600ms + kSchedulingSlack);
  }
}

}  // namespace
}  // namespace lockkit
