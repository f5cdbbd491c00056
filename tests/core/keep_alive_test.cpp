// SPDX-License-Identifier: MIT
// Lock::keep_alive, Lock::stop_token and with_lock on memory: (a fake clock drives the schedule)
// and over a store that fails or hangs on demand.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/keeper.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/memory.hpp"
#include "support/keep_alive_cases.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// Real time a test waits for something the keeper does at once; generous for loaded machines.
constexpr auto kAwait = 10s;
// Real time a test gives the keeper to (wrongly) do something it must not.
constexpr auto kQuiet = 150ms;

using testing::keep_alive::threads_of_this_process;

template <class Pred>
bool await(Pred pred, Steady::duration limit = kAwait) {
  return testing::keep_alive::await(pred, limit);
}

// A memory: store whose extends can be made to fail or to hang, and which logs every call.
class ScriptedStore final : public LeaseStore {
 public:
  explicit ScriptedStore(std::shared_ptr<const Clock> clock = nullptr)
      : inner_(make_memory_store(MemoryOptions{.clock = std::move(clock)})) {}

  std::string_view backend() const noexcept override { return "scripted"; }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    return inner_->acquire(key, token, ttl);
  }
  bool release(std::string_view key, std::string_view token) override {
    log("release", key);
    return inner_->release(key, token);
  }
  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    log("extend", key);
    extends.fetch_add(1);
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return !hang_; });
    }
    if (fail.load()) throw BackendError("scripted", ErrorKind::kUnavailable, "store down");
    return inner_->extend(key, token, ttl);
  }
  std::optional<LockInfo> status(std::string_view key) override { return inner_->status(key); }
  std::vector<LockInfo> list(std::string_view prefix) override { return inner_->list(prefix); }
  Steady::time_point now() const noexcept override { return inner_->now(); }

  void hang(bool on) {
    {
      std::lock_guard<std::mutex> guard(mu_);
      hang_ = on;
    }
    cv_.notify_all();
  }
  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> guard(mu_);
    return calls_;
  }
  LeaseStore& inner() { return *inner_; }

  std::atomic<int> extends{0};
  std::atomic<bool> fail{false};

 private:
  void log(const char* op, std::string_view key) {
    std::lock_guard<std::mutex> guard(mu_);
    calls_.push_back(std::string(op) + " " + std::string(key));
  }

  std::shared_ptr<LeaseStore> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hang_ = false;
  std::vector<std::string> calls_;
};

// Records on_lost calls.
struct LossLog {
  std::atomic<int> calls{0};
  std::mutex mu;
  std::string reason;
  KeepAliveOptions options(std::chrono::milliseconds max_hold = 0ms) {
    return KeepAliveOptions{.on_lost =
                                [this](std::string_view why) {
                                  {
                                    std::lock_guard<std::mutex> guard(mu);
                                    reason = why;
                                  }
                                  calls.fetch_add(1);
                                },
                            .max_hold = max_hold};
  }
};

class KeepAliveFakeClock : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<ScriptedStore> store_ = std::make_shared<ScriptedStore>(clock_);
  std::shared_ptr<LockApi> api_ = make_lock_api(store_);
};

TEST(LossMargin, IsTwoPercentOfTheTtlButAtLeastTenMilliseconds) {
  EXPECT_EQ(loss_margin(100ms), 10ms);
  EXPECT_EQ(loss_margin(500ms), 10ms);
  EXPECT_EQ(loss_margin(3s), 60ms);
  EXPECT_EQ(loss_margin(30s), 600ms);
}

TEST_F(KeepAliveFakeClock, RenewsAtAThirdOfTheTtl) {
  auto t0 = clock_->now();
  auto lock = api_->try_acquire("k", 3s);
  ASSERT_TRUE(lock);
  lock->keep_alive();
  clock_->advance(999ms);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(store_->extends.load(), 0) << "renewed before ttl/3";
  clock_->advance(1ms);
  ASSERT_TRUE(await([&] { return lock->valid_until() == t0 + 1s + 3s; }));
  EXPECT_EQ(store_->extends.load(), 1);
  clock_->advance(1s);
  ASSERT_TRUE(await([&] { return lock->valid_until() == t0 + 2s + 3s; }));
  EXPECT_EQ(store_->inner().status("k")->remaining, 3s);
  EXPECT_TRUE(lock->held());
  EXPECT_FALSE(lock->stop_token().stop_requested());
}

// Leases whose renewals fall due a few ms apart are renewed together from the second renewal on
// (their schedule snaps to a grid of a tenth of the period), so a store gets one round for many.
TEST(KeepAliveRounds, RenewalsDueWithinATenthOfAPeriodShareOneRound) {
  struct RoundCounter final : LeaseStore {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
    std::shared_ptr<LeaseStore> inner = make_memory_store(MemoryOptions{.clock = clock});
    std::atomic<int> rounds{0}, renewals{0};
    std::string_view backend() const noexcept override { return "counted"; }
    std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                         std::chrono::milliseconds ttl) override {
      return inner->acquire(key, token, ttl);
    }
    bool release(std::string_view key, std::string_view token) override {
      return inner->release(key, token);
    }
    bool extend(std::string_view key, std::string_view token,
                std::chrono::milliseconds ttl) override {  // a round of one
      rounds.fetch_add(1);
      renewals.fetch_add(1);
      return inner->extend(key, token, ttl);
    }
    void extend_many(std::span<const ExtendRequest> requests,
                     std::span<ExtendOutcome> out) override {
      rounds.fetch_add(1);
      renewals.fetch_add(static_cast<int>(requests.size()));
      inner->extend_many(requests, out);
    }
    std::optional<LockInfo> status(std::string_view key) override { return inner->status(key); }
    std::vector<LockInfo> list(std::string_view prefix) override { return inner->list(prefix); }
    Steady::time_point now() const noexcept override { return inner->now(); }
  };
  auto store = std::make_shared<RoundCounter>();
  auto api = make_lock_api(store);
  std::vector<Lock> locks;
  for (int i = 0; i < 10; ++i) {  // acquired 7 ms apart: first renewals 7 ms apart
    auto lock = api->try_acquire("k" + std::to_string(i), 3s);
    ASSERT_TRUE(lock);
    lock->keep_alive();
    locks.push_back(std::move(*lock));
    store->clock->advance(7ms);
  }
  // Walks the clock through both renewals of every lease in 7 ms steps, letting the keeper act
  // on each step. A keeper slower than that only merges more rounds.
  auto walk = [&](Steady::duration span, int renewals) {
    for (Steady::duration t{}; t < span; t += 7ms) {
      store->clock->advance(7ms);
      std::this_thread::sleep_for(3ms);
    }
    ASSERT_TRUE(await([&] { return store->renewals.load() >= renewals; }));
  };
  walk(1s, 10);  // the first renewals: one per lock, each at its own moment
  const int first_rounds = store->rounds.load();
  walk(1s, 20);  // the second ones, on the grid
  EXPECT_EQ(store->renewals.load(), 20);
  EXPECT_LE(store->rounds.load() - first_rounds, 2)
      << "renewals due within a tenth of a period went to the store one by one";
}

TEST_F(KeepAliveFakeClock, RetriesQuicklyAfterAFailedRenewal) {
  auto t0 = clock_->now();
  auto lock = api_->try_acquire("k", 3s);
  ASSERT_TRUE(lock);
  std::atomic<int> errors{0};
  lock->keep_alive({.on_renewal_error = [&](std::string_view e) {
    EXPECT_NE(e.find("store down"), std::string_view::npos);
    errors.fetch_add(1);
  }});
  store_->fail = true;
  clock_->advance(1s);
  ASSERT_TRUE(await([&] { return errors.load() == 1; }));
  // Retry after ttl/10 = 300 ms (the time left, 1.94 s, allows it), not after another ttl/3.
  clock_->advance(299ms);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(store_->extends.load(), 1);
  store_->fail = false;
  clock_->advance(1ms);
  ASSERT_TRUE(await([&] { return lock->valid_until() == t0 + 1300ms + 3s; }));
  EXPECT_EQ(store_->extends.load(), 2);
  EXPECT_TRUE(lock->held());
}

TEST_F(KeepAliveFakeClock, StopIsRequestedAtTheMarginBeforeValidUntil) {
  auto lock = api_->try_acquire("k", 3s);
  ASSERT_TRUE(lock);
  LossLog lost;
  lock->keep_alive(lost.options());
  std::atomic<bool> stopped{false};
  std::stop_callback on_stop(lock->stop_token(), [&] { stopped = true; });
  store_->fail = true;
  const auto deadline = lock->valid_until() - loss_margin(3s);
  // Step up to the deadline so that every retry comes due and fails.
  while (clock_->now() + 100ms < deadline) {
    clock_->advance(100ms);
    std::this_thread::sleep_for(2ms);
  }
  clock_->advance(deadline - clock_->now() - 1ms);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_FALSE(stopped.load()) << "stopped before valid_until - margin";
  EXPECT_TRUE(lock->held());
  EXPECT_GT(store_->extends.load(), 3) << "retries should have come";
  clock_->advance(1ms);
  ASSERT_TRUE(await([&] { return stopped.load(); }));
  EXPECT_FALSE(lock->held());
  ASSERT_TRUE(await([&] { return lost.calls.load() == 1; }));
  {
    std::lock_guard<std::mutex> guard(lost.mu);
    EXPECT_NE(lost.reason.find("renewals failed"), std::string::npos) << lost.reason;
  }
  const int extends = store_->extends.load();
  store_->fail = false;
  clock_->advance(10s);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(store_->extends.load(), extends) << "renewed a lease already declared lost";
  EXPECT_EQ(lost.calls.load(), 1);
}

TEST_F(KeepAliveFakeClock, StopTokenWithoutKeepAliveComesAtTheMargin) {
  auto lock = api_->try_acquire("k", 1s);
  ASSERT_TRUE(lock);
  auto token = lock->stop_token();
  clock_->advance(1s - loss_margin(1s) - 1ms);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_FALSE(token.stop_requested());
  EXPECT_TRUE(lock->held());
  clock_->advance(1ms);
  EXPECT_FALSE(lock->held()) << "held() turns false with the stop, not later";
  ASSERT_TRUE(await([&] { return token.stop_requested(); }));
  EXPECT_EQ(store_->extends.load(), 0);
}

TEST_F(KeepAliveFakeClock, StoreSayingNotOursEndsItOnceAtTheNextRenewal) {
  auto lock = api_->try_acquire("k", 3s);
  ASSERT_TRUE(lock);
  LossLog lost;
  lock->keep_alive(lost.options());
  ASSERT_TRUE(store_->inner().release("k", lock->token()));  // behind the holder's back
  clock_->advance(1s);
  ASSERT_TRUE(await([&] { return lost.calls.load() == 1; }));
  EXPECT_TRUE(lock->stop_token().stop_requested());
  EXPECT_FALSE(lock->held());
  {
    std::lock_guard<std::mutex> guard(lost.mu);
    EXPECT_NE(lost.reason.find("no longer ours"), std::string::npos) << lost.reason;
  }
  clock_->advance(10s);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(lost.calls.load(), 1);
  EXPECT_EQ(store_->extends.load(), 1);
  EXPECT_FALSE(lock->release());
}

TEST_F(KeepAliveFakeClock, MaxHoldStopsRenewalAndTheLeaseRunsOut) {
  auto t0 = clock_->now();
  auto lock = api_->try_acquire("k", 3s);
  ASSERT_TRUE(lock);
  LossLog lost;
  lock->keep_alive(lost.options(2s));
  clock_->advance(1s);
  ASSERT_TRUE(await([&] { return lock->valid_until() == t0 + 4s; }));
  clock_->advance(1s);  // t0 + 2 s: the cap; no renewal from here on
  std::this_thread::sleep_for(kQuiet);
  clock_->advance(1s);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(store_->extends.load(), 1);
  EXPECT_EQ(lock->valid_until(), t0 + 4s);
  clock_->advance(1s - loss_margin(3s));
  ASSERT_TRUE(await([&] { return lost.calls.load() == 1; }));
  {
    std::lock_guard<std::mutex> guard(lost.mu);
    EXPECT_NE(lost.reason.find("max_hold"), std::string::npos) << lost.reason;
  }
  EXPECT_FALSE(api_->try_acquire("k", 1s)) << "lost locally before the store's expiry";
  clock_->advance(loss_margin(3s));
  EXPECT_TRUE(api_->try_acquire("k", 1s)) << "another client gets it once it ran out";
}

TEST_F(KeepAliveFakeClock, ExtendByTheHolderMovesTheSchedule) {
  auto t0 = clock_->now();
  auto lock = api_->try_acquire("k", 3s);
  ASSERT_TRUE(lock);
  lock->keep_alive();
  clock_->advance(500ms);
  ASSERT_TRUE(lock->extend(6s));
  EXPECT_EQ(lock->valid_until(), t0 + 500ms + 6s);
  clock_->advance(1s);  // t0 + 1.5 s: the old schedule's renewal is not due any more
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(store_->extends.load(), 1);
  clock_->advance(1s);  // t0 + 2.5 s = extend + 6 s / 3
  ASSERT_TRUE(await([&] { return lock->valid_until() == t0 + 2500ms + 6s; }));
}

TEST(KeepAlive, RejectsAnEmptyLockAndANegativeMaxHold) {
  auto api = make_memory_lock_api();
  auto lock = api->try_acquire("k", 1s);
  ASSERT_TRUE(lock);
  EXPECT_THROW(lock->keep_alive({.max_hold = -1ms}), std::invalid_argument);
  ASSERT_TRUE(lock->release());
  EXPECT_THROW(lock->keep_alive(), std::invalid_argument);
  EXPECT_TRUE(lock->stop_token().stop_requested());
}

// Both stores run on one fake clock that only the test moves: on a loaded machine the keeper's
// threads may be scheduled late (the loss margin of a short ttl is 10 ms), and what is tested is
// the keeper's decisions, not how fast the machine runs it.
TEST(KeepAlive, HangingRenewalDelaysNeitherItsDeadlineNorOtherStores) {
  auto clock = std::make_shared<ManualClock>();
  auto hanging = std::make_shared<ScriptedStore>(clock);
  auto healthy = std::make_shared<ScriptedStore>(clock);
  auto a = make_lock_api(hanging)->try_acquire("a", 300ms);
  auto b = make_lock_api(healthy)->try_acquire("b", 300ms);
  ASSERT_TRUE(a && b);
  hanging->hang(true);
  // A failed assertion below returns while a renewal hangs: the store must let it go first, or
  // the lock's destructor would wait for that renewal for ever.
  struct Unhang {
    ScriptedStore& store;
    ~Unhang() { store.hang(false); }
  } unhang{*hanging};
  LossLog lost;
  a->keep_alive(lost.options());
  b->keep_alive();
  std::atomic<Steady::rep> stopped_at{0};  // by the stores' clock
  std::stop_callback on_stop(a->stop_token(),
                             [&] { stopped_at = clock->now().time_since_epoch().count(); });
  // The first renewals come due at ttl/3: a's hangs in its store, b's goes through, and so does
  // b's next one while a's still hangs.
  for (int round = 1; round <= 2; ++round) {
    const auto b_until = b->valid_until();
    clock->advance(100ms);
    ASSERT_TRUE(await([&] { return b->valid_until() > b_until; })) << "round " << round;
  }
  EXPECT_EQ(hanging->extends.load(), 1);
  // Up to a's deadline (valid_until minus the margin): declared lost there, its renewal still
  // unanswered.
  const auto deadline = a->valid_until() - loss_margin(300ms);
  clock->advance(deadline - clock->now() - 1ms);
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(stopped_at.load(), 0) << "stopped before valid_until - margin";
  clock->advance(1ms);
  ASSERT_TRUE(await([&] { return stopped_at.load() != 0; }));
  EXPECT_LT(Steady::time_point(Steady::duration(stopped_at.load())), a->valid_until())
      << "the stop came after valid_until";
  ASSERT_TRUE(await([&] { return lost.calls.load() == 1; }));
  {
    std::lock_guard<std::mutex> guard(lost.mu);
    EXPECT_NE(lost.reason.find("unanswered"), std::string::npos) << lost.reason;
  }
  // The store comes back (before the lease's end by its clock) and confirms the renewal that was
  // under way: the lease, declared lost, is given back at once instead of lingering for a ttl.
  ASSERT_TRUE(hanging->inner().status("a").has_value());
  hanging->hang(false);
  ASSERT_TRUE(await([&] { return !hanging->inner().status("a").has_value(); }));
  EXPECT_EQ(hanging->extends.load(), 1);
  // Meanwhile the other store's lease is renewed as usual.
  const auto b_until = b->valid_until();
  clock->advance(100ms);
  ASSERT_TRUE(await([&] { return b->valid_until() > b_until; }));
  EXPECT_TRUE(b->held());
}

// Six stores hang; their leases come due in the same instant, while a worker of the keeper is
// idle: each renewal gets a worker of its own (up to the keeper's six), none waits behind a hung
// one. Two rounds queued before the idle worker had woken used to wake that one worker and start
// none: the second waited for ever, its lease lost for want of a thread.
TEST(KeepAlive, RenewalsDueTogetherOnHangingStoresEachGetAWorker) {
  auto clock = std::make_shared<ManualClock>();
  std::vector<std::shared_ptr<ScriptedStore>> stores;
  struct Unhang {
    std::vector<std::shared_ptr<ScriptedStore>>& stores;
    ~Unhang() {
      for (auto& store : stores) store->hang(false);
    }
  };
  std::vector<Lock> locks;
  Unhang unhang{stores};  // after `locks`: destroyed first, so their releases do not wait
  // A renewal that goes through leaves a worker idle.
  auto healthy = std::make_shared<ScriptedStore>(clock);
  auto warm = make_lock_api(healthy)->try_acquire("warm", 300ms);
  ASSERT_TRUE(warm);
  warm->keep_alive();
  const auto warm_until = warm->valid_until();
  clock->advance(100ms);
  ASSERT_TRUE(await([&] { return warm->valid_until() > warm_until; }));
  ASSERT_TRUE(warm->release());
  for (int i = 0; i < 6; ++i) {
    stores.push_back(std::make_shared<ScriptedStore>(clock));
    stores.back()->hang(true);
    auto lock = make_lock_api(stores.back())->try_acquire("hung", 300ms);
    ASSERT_TRUE(lock);
    lock->keep_alive();
    locks.push_back(std::move(*lock));
  }
  clock->advance(100ms);  // all six due at once
  EXPECT_TRUE(await([&] {
    int entered = 0;
    for (const auto& store : stores) entered += store->extends.load() > 0 ? 1 : 0;
    return entered == 6;
  }));
}

TEST(KeepAlive, NoRenewalIsSentAfterReleaseReturns) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  for (int i = 0; i < 60; ++i) {
    std::string key = "k" + std::to_string(i);
    auto lock = api->try_acquire(key, 15ms);  // renewals every 5 ms: they race the release
    ASSERT_TRUE(lock);
    lock->keep_alive();
    std::this_thread::sleep_for(std::chrono::milliseconds(i % 12));
    (void)lock->release();
    auto calls = store->calls();
    std::this_thread::sleep_for(20ms);
    auto later = store->calls();
    for (std::size_t j = calls.size(); j < later.size(); ++j) {
      EXPECT_NE(later[j], "extend " + key) << "renewed after release() returned";
    }
  }
}

TEST(KeepAlive, DestroyingAKeptAliveLockStopsRenewalBeforeReleasing) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  for (int i = 0; i < 40; ++i) {
    std::string key = "d" + std::to_string(i);
    {
      auto lock = api->try_acquire(key, 15ms);
      ASSERT_TRUE(lock);
      lock->keep_alive();
      std::this_thread::sleep_for(std::chrono::milliseconds(i % 10));
    }
    std::this_thread::sleep_for(15ms);
    auto calls = store->calls();
    std::size_t last_release = calls.size();
    for (std::size_t j = 0; j < calls.size(); ++j) {
      if (calls[j] == "release " + key) last_release = j;
    }
    ASSERT_LT(last_release, calls.size()) << "the destructor did not release";
    for (std::size_t j = last_release; j < calls.size(); ++j) {
      EXPECT_NE(calls[j], "extend " + key) << "renewed after the destructor released";
    }
  }
}

// A released lease leaves nothing of its store with the keeper (nor in the released handle): the
// store closes as soon as its owners let go, even while the keeper would not have looked at the
// lease again for a long time (no renewal due: the store's clock stands still).
TEST(KeepAlive, ReleaseDropsEveryReferenceToTheStore) {
  for (const bool destroy : {false, true}) {
    SCOPED_TRACE(destroy ? "destroyed" : "released");
    auto clock = std::make_shared<ManualClock>();
    auto store = std::make_shared<ScriptedStore>(clock);
    std::weak_ptr<ScriptedStore> weak = store;
    auto api = make_lock_api(store);
    store.reset();
    auto kept = api->try_acquire("kept", 30s);
    auto watched = api->try_acquire("watched", 30s);
    ASSERT_TRUE(kept && watched);
    kept->keep_alive();
    (void)watched->stop_token();  // the keeper watches its deadline
    if (destroy) {
      kept.reset();
      watched.reset();
    } else {
      EXPECT_TRUE(kept->release());
      EXPECT_TRUE(watched->release());
    }
    api.reset();
    EXPECT_TRUE(weak.expired()) << "the store outlived its last release";
    if (kept) {
      EXPECT_FALSE(kept->held());
      EXPECT_TRUE(kept->stop_token().stop_requested());
    }
  }
}

// The same while other leases of the store are still kept alive: the store stays, renewals go on.
TEST(KeepAlive, ReleaseOfOneLeavesTheStoresOtherLeasesKeptAlive) {
  auto clock = std::make_shared<ManualClock>();
  auto store = std::make_shared<ScriptedStore>(clock);
  std::weak_ptr<ScriptedStore> weak = store;
  auto api = make_lock_api(store);
  auto first = api->try_acquire("first", 3s);
  auto second = api->try_acquire("second", 3s);
  ASSERT_TRUE(first && second);
  first->keep_alive();
  second->keep_alive();
  EXPECT_TRUE(first->release());
  store.reset();
  api.reset();
  EXPECT_FALSE(weak.expired());
  const auto until = second->valid_until();
  clock->advance(1s);
  ASSERT_TRUE(await([&] { return second->valid_until() > until; }));
  EXPECT_EQ(weak.lock()->extends.load(), 1);
  EXPECT_TRUE(second->release());
  // The renewal round's worker lets go of the group once it has returned.
  EXPECT_TRUE(await([&] { return weak.expired(); }));
}

TEST(KeepAlive, MovedLockKeepsItsKeepAlive) {
  auto api = make_memory_lock_api();
  auto lock = api->try_acquire("k", 60ms);
  ASSERT_TRUE(lock);
  lock->keep_alive();
  Lock moved = std::move(*lock);
  lock.reset();
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(moved.held());
  EXPECT_FALSE(api->try_acquire("k", 60ms));
  EXPECT_TRUE(moved.release());
}

// with_lock

TEST(WithLock, LeaseLostWhenTheFunctionOutlivesTheLeaseWithoutKeepAlive) {
  auto clock = std::make_shared<ManualClock>();
  auto api = make_memory_lock_api({.clock = clock});
  bool ran = false;
  EXPECT_THROW(with_lock(*api, "k", 200ms,
                         [&] {
                           ran = true;
                           clock->advance(300ms);
                           (void)api->try_acquire("k", 1s);  // someone else takes it meanwhile
                           return 42;
                         }),
               LeaseLost);
  EXPECT_TRUE(ran);
  // Past valid_until minus the margin counts as lost even while the store still has it.
  EXPECT_THROW(with_lock(*api, "j", 1s, [&] { clock->advance(995ms); }), LeaseLost);
}

TEST(WithLock, KeepAliveCarriesTheFunctionPastItsTtl) {
  auto api = make_memory_lock_api();
  auto result = with_lock(*api, "k", 300ms, {.keep_alive = true}, [&](const Lock& lock) {
    std::this_thread::sleep_for(1s);  // the slow work itself
    EXPECT_TRUE(lock.held());
    EXPECT_FALSE(lock.stop_token().stop_requested());
    return lock.fence();
  });
  ASSERT_TRUE(result);
  EXPECT_GE(*result, 1u);
  EXPECT_TRUE(api->try_acquire("k", 1s)) << "released afterwards";
}

TEST(WithLock, ExceptionFromTheFunctionPropagatesAndReleases) {
  auto api = make_memory_lock_api();
  EXPECT_THROW(with_lock(*api, "k", 10s, {.keep_alive = true},
                         [](const Lock&) -> int { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_TRUE(api->try_acquire("k", 1s));
}

TEST(WithLock, WaitsWithARetryPolicy) {
  auto api = make_memory_lock_api();
  auto holder = api->try_acquire("k", 10s);
  ASSERT_TRUE(holder);
  EXPECT_FALSE(with_lock(*api, "k", 1s, [] {}));
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    (void)holder->release();
  });
  bool ok = with_lock(
      *api, "k", 1s, {.wait = RetryPolicy{.max_wait = 5s, .initial_delay = 5ms, .max_delay = 20ms}},
      [] {});
  releaser.join();
  EXPECT_TRUE(ok);
}

TEST(WithLock, MaxHoldEndsAFunctionThatRunsTooLong) {
  auto clock = std::make_shared<ManualClock>();
  auto api = make_memory_lock_api({.clock = clock});
  EXPECT_THROW(with_lock(*api, "k", 3s, {.keep_alive = true, .max_hold = 1s},
                         [&](const Lock& lock) {
                           for (int i = 0; i < 20 && !lock.stop_token().stop_requested(); ++i) {
                             clock->advance(500ms);
                             (void)await([&] { return lock.stop_token().stop_requested(); }, 50ms);
                           }
                           EXPECT_TRUE(lock.stop_token().stop_requested());
                         }),
               LeaseLost);
}

// Last: its 10,000 releases keep the keeper busy for a moment.
TEST(KeepAlive, TenThousandLocksShareOneSchedulerAndAFewThreads) {
  class Counter final : public LockObserver {
   public:
    void on_event(const LockEvent& e) noexcept override {
      if (e.operation == LockOperation::kExtend && e.outcome == LockOutcome::kOk) ++renewals;
    }
    std::atomic<long> renewals{0};
  };
  auto api = make_memory_lock_api();
  auto counter = std::make_shared<Counter>();
  api->set_observer(counter);
  const unsigned before = threads_of_this_process() - detail::keeper_threads();
  std::vector<Lock> locks;
  locks.reserve(10000);
  for (int i = 0; i < 10000; ++i) {
    auto lock = api->try_acquire("many/" + std::to_string(i), 3s);
    ASSERT_TRUE(lock);
    lock->keep_alive();
    locks.push_back(std::move(*lock));
  }
  const auto start = Steady::now();
  std::this_thread::sleep_for(3500ms);  // past the ttl: every lease renewed at least once
  const double seconds = std::chrono::duration<double>(Steady::now() - start).count();
  const unsigned during = threads_of_this_process();
  for (const auto& lock : locks) ASSERT_TRUE(lock.held()) << lock.key();
  EXPECT_LE(during - before, 7u) << "one scheduler and at most six renewal workers";
  EXPECT_GE(counter->renewals.load(), 10000);
  std::printf("[ info ] 10,000 kept-alive locks: %u keeper threads, %.0f renewals/s\n",
              during - before, static_cast<double>(counter->renewals.load()) / seconds);
  api->set_observer(nullptr);
}

}  // namespace
}  // namespace lockkit
