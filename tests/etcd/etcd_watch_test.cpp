// SPDX-License-Identifier: MIT
// etcd:// `acquire` with a RetryPolicy wakes on a watch of the key, not at the end of its backoff;
// many waiters on one key each get it in turn, never two at once, without a retry storm.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/etcd.hpp"
#include "lockkit/lock_api.hpp"
#include "support/etcd_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;
using Steady = std::chrono::steady_clock;

// The etcd store, counting acquire attempts and the waits between them.
class CountingStore final : public LeaseStore {
 public:
  explicit CountingStore(std::shared_ptr<LeaseStore> inner) : inner_(std::move(inner)) {}

  std::string_view backend() const noexcept override { return inner_->backend(); }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    attempts.fetch_add(1);
    return inner_->acquire(key, token, ttl);
  }
  bool release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    return inner_->extend(key, token, ttl);
  }
  std::optional<LockInfo> status(std::string_view key) override { return inner_->status(key); }
  std::vector<LockInfo> list(std::string_view prefix) override { return inner_->list(prefix); }
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return inner_->drift(ttl);
  }
  void wait_for_release(std::string_view key, Steady::time_point until) override {
    {
      std::lock_guard<std::mutex> guard(mu_);
      ++waits_;
    }
    cv_.notify_all();
    inner_->wait_for_release(key, until);
  }

  // Waits until some thread has started waiting `n` times in all; false after 20 s.
  bool await_waits(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 20s, [&] { return waits_ >= n; });
  }

  std::atomic<int> attempts{0};

 private:
  const std::shared_ptr<LeaseStore> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int waits_ = 0;  // guarded by mu_
};

std::string UniqueKey(std::string_view what) {
  return "etcd-watch/" + std::string(what) + "/" + make_token().substr(0, 8);
}

EtcdOptions Options() {
  return parse_etcd_url(EtcdServer::shared().url("?command_timeout=10s"));
}

// A backoff far longer than the bound below: a waiter that slept it out would fail.
constexpr RetryPolicy kLongBackoff{.max_wait = 30s, .initial_delay = 10s, .max_delay = 10s};
// A watch delivers the deletion within a round trip; generous for a loaded sanitizer build.
constexpr auto kWakeBound = 1s;

TEST(EtcdWatch, WaiterWakesOnReleaseAndOnExpiryNotAtTheEndOfItsBackoff) {
  auto holder_store = make_etcd_store(Options());
  auto holder_api = make_lock_api(holder_store);
  auto counting = std::make_shared<CountingStore>(make_etcd_store(Options()));
  auto waiter_api = make_lock_api(counting);
  const auto key = UniqueKey("wake");
  int waits = 0;
  for (int round = 0; round < 3; ++round) {
    // Rounds 0 and 1: the holder releases; round 2: it vanishes and its lease expires.
    const bool expire = round == 2;
    const std::string token = make_token();
    std::optional<Lock> held;
    if (expire) {
      ASSERT_TRUE(holder_store->acquire(key, token, 1s));
    } else {
      held = holder_api->try_acquire(key, 30s);
      ASSERT_TRUE(held);
    }
    Steady::time_point got{};
    std::thread waiter([&] {
      auto lock = waiter_api->acquire(key, 30s, kLongBackoff);
      got = Steady::now();
      EXPECT_TRUE(lock) << "round " << round;
    });
    ASSERT_TRUE(counting->await_waits(++waits)) << "the waiter never waited";
    const auto freed = expire ? Steady::now() + 1s : Steady::now();
    if (!expire) {
      EXPECT_TRUE(held->release());
    }
    waiter.join();
    // Expiry: etcd checks leases every 500 ms and then revokes through raft.
    const auto bound = expire ? kWakeBound + 1500ms : kWakeBound;
    EXPECT_LT(got - freed, bound)
        << "round " << round << ": woke "
        << std::chrono::duration_cast<std::chrono::milliseconds>(got - freed).count()
        << " ms after the key was freed";
  }
}

TEST(EtcdWatch, ManyWaitersOnOneKeyTakeItInTurnWithoutARetryStorm) {
  auto counting = std::make_shared<CountingStore>(make_etcd_store(Options()));
  auto api = make_lock_api(counting);
  const auto key = UniqueKey("herd");
  // Fewer under sanitizers: every request there costs several times more CPU on the same cores.
  constexpr int kThreads = testing::kSanitizerBuild ? 8 : 32;
  auto first = api->try_acquire(key, 30s);
  ASSERT_TRUE(first);
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> acquired{0};
  std::vector<std::uint64_t> fences{first->fence()};  // written only inside the lock
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto lock = api->acquire(key, 30s,
                               RetryPolicy{.max_wait = 60s, .initial_delay = 2s, .max_delay = 2s});
      ASSERT_TRUE(lock);
      if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
      fences.push_back(lock->fence());
      inside.fetch_sub(1);
      acquired.fetch_add(1);
      EXPECT_TRUE(lock->release());
    });
  }
  // Every thread has been refused once and waits; then the first holder lets go.
  ASSERT_TRUE(counting->await_waits(kThreads));
  const int before = counting->attempts.load();
  const auto start = Steady::now();
  EXPECT_TRUE(first->release());
  for (auto& t : threads) t.join();
  const auto took = Steady::now() - start;
  EXPECT_EQ(acquired.load(), kThreads)
      << "after " << std::chrono::duration<double>(took).count() << " s";
  EXPECT_EQ(overlaps.load(), 0);
  ASSERT_EQ(fences.size(), static_cast<std::size_t>(kThreads + 1));
  for (std::size_t i = 1; i < fences.size(); ++i) EXPECT_GT(fences[i], fences[i - 1]);
  // Each release wakes two waiters of this process (plus retries at the end of a backoff): if
  // every release woke every waiter, the 32 hand-overs would cost about 32 * 31 / 2 attempts.
  const int after = counting->attempts.load() - before;
  const auto seconds = std::chrono::duration<double>(took).count();
  EXPECT_LT(after, 3 * kThreads + static_cast<int>(kThreads * (seconds + 1)))
      << after << " attempts in " << seconds << " s";
}

}  // namespace
}  // namespace lockkit
