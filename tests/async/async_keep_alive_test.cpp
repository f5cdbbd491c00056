// SPDX-License-Identifier: MIT
// AsyncLockApi::keep_alive: renewals of native redis:// locks on the executor's connection,
// on_lost on the executor, and an AsyncLockApi destroyed while its leases are kept alive.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/open.hpp"
#include "support/io_thread.hpp"
#include "support/redis_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
using testing::RedisServer;

std::string Unique(std::string_view stem) {
  return "keep-alive-async/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

// Records on which threads the extends were reported (the native path reports on the strand).
struct ExtendThreads : LockObserver {
  void on_event(const LockEvent& e) override {
    if (e.operation != LockOperation::kExtend) return;
    std::lock_guard<std::mutex> guard(mu);
    threads.insert(std::this_thread::get_id());
    if (e.outcome == LockOutcome::kOk) ++ok;
  }
  std::mutex mu;
  std::set<std::thread::id> threads;
  int ok = 0;
};

// Lost-lease reports: where and why, awaited as a future.
struct LostReport {
  std::promise<std::thread::id> where;
  std::atomic<int> calls{0};
  std::string first_reason;  // written by the first call only
  KeepAliveOptions options() {
    return {.on_lost = [this](std::string_view reason) {
      if (calls.fetch_add(1) == 0) {
        first_reason = reason;
        where.set_value(std::this_thread::get_id());
      }
    }};
  }
};

TEST(AsyncKeepAlive, NativeRedisLeaseOutlivesSeveralTtlsRenewedOnTheExecutor) {
  auto& server = RedisServer::shared();
  IoThread io;
  auto api = lockkit::open(server.url());
  auto observer = std::make_shared<ExtendThreads>();
  api->set_observer(observer);
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string key = Unique("native");
  auto lock = locks.async_try_acquire(key, 400ms, asio::use_future).get();
  ASSERT_TRUE(lock);
  LostReport lost;
  locks.keep_alive(*lock, lost.options());
  const auto stop = lock->stop_token();
  std::this_thread::sleep_for(1400ms);  // three ttls and more
  EXPECT_TRUE(lock->held());
  EXPECT_FALSE(stop.stop_requested());
  EXPECT_EQ(server.cli({"GET", key}), lock->token());
  EXPECT_GT(lock->valid_until(), std::chrono::steady_clock::now());
  {
    std::lock_guard<std::mutex> guard(observer->mu);
    EXPECT_GE(observer->ok, 3);
    // Every renewal was sent and answered on the executor's connection.
    EXPECT_EQ(observer->threads, std::set<std::thread::id>{io.id()});
  }
  EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
  EXPECT_EQ(lost.calls.load(), 0);
}

// The store loses the lease behind the holder: the next renewal hears "not ours", and on_lost
// runs on the executor, once; the stop token is requested.
TEST(AsyncKeepAlive, LeaseDeletedBehindTheHolderReportsLossOnTheExecutor) {
  auto& server = RedisServer::shared();
  IoThread io;
  for (const std::string& url : {server.url(), std::string("memory:")}) {
    SCOPED_TRACE(url);
    auto api = lockkit::open(url);
    AsyncLockApi locks(io.io().get_executor(), api);
    const std::string key = Unique("deleted");
    auto lock = locks.async_try_acquire(key, 400ms, asio::use_future).get();
    ASSERT_TRUE(lock);
    LostReport lost;
    locks.keep_alive(*lock, lost.options());
    ASSERT_TRUE(api->release(key, lock->token()));  // behind the holder's back
    auto where = lost.where.get_future();
    ASSERT_EQ(where.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(where.get(), io.id());
    EXPECT_TRUE(lock->stop_token().stop_requested());
    EXPECT_FALSE(lock->held());
    EXPECT_FALSE(locks.async_release(*lock, asio::use_future).get());
    EXPECT_EQ(lost.calls.load(), 1);
  }
}

// async_release of kept-alive native locks while their renewals are in flight on the same
// connection: each release completes promptly (its completion waits for a renewal under way,
// whose reply the same strand reads: none may come after the release), and nothing is lost.
TEST(AsyncKeepAlive, AsyncReleaseRacingRenewalsCompletesPromptly) {
  auto& server = RedisServer::shared();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  LostReport lost;
  for (int round = 0; round < 5; ++round) {
    std::vector<Lock> held;
    std::vector<std::future<std::optional<Lock>>> acquires;
    for (int i = 0; i < 40; ++i) {
      acquires.push_back(locks.async_try_acquire(Unique("race"), 300ms, asio::use_future));
    }
    for (auto& f : acquires) {
      auto lock = f.get();
      ASSERT_TRUE(lock);
      locks.keep_alive(*lock, lost.options());  // renewed every 100 ms
      held.push_back(std::move(*lock));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(90 + 5 * round));
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::future<bool>> releases;
    for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
    for (auto& f : releases) EXPECT_TRUE(f.get());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  }
  EXPECT_EQ(lost.calls.load(), 0) << lost.first_reason;
}

// The AsyncLockApi and then its io_context go away while their leases are kept alive: the
// renewals go on through the blocking store, no callback reaches the dead executor, and the
// locks release normally afterwards.
TEST(AsyncKeepAlive, ApiDestroyedWithLiveLeasesKeepsThemAliveThroughTheStore) {
  auto& server = RedisServer::shared();
  std::vector<Lock> held;
  LostReport lost;
  {
    IoThread io;
    AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
    std::vector<std::future<std::optional<Lock>>> acquires;
    for (int i = 0; i < 20; ++i) {
      acquires.push_back(locks.async_try_acquire(Unique("gone"), 400ms, asio::use_future));
    }
    for (auto& f : acquires) {
      auto lock = f.get();
      ASSERT_TRUE(lock);
      locks.keep_alive(*lock, lost.options());
      held.push_back(std::move(*lock));
    }
  }
  std::this_thread::sleep_for(1400ms);  // three ttls and more
  for (auto& lock : held) {
    EXPECT_TRUE(lock.held());
    EXPECT_EQ(server.cli({"GET", lock.key()}), lock.token());
  }
  for (auto& lock : held) EXPECT_TRUE(lock.release());
  EXPECT_EQ(lost.calls.load(), 0);
}

}  // namespace
}  // namespace lockkit
