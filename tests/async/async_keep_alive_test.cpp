// SPDX-License-Identifier: MIT
// AsyncLockApi::keep_alive: the schedule on the executor (no keeper thread renews), renewals of
// native redis:// locks on the executor's connection and of other stores on the pool, batched,
// callbacks on the executor, the keeper's watch of each deadline, and what happens when the
// executor stops or the api goes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/clock.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/memory.hpp"
#include "lockkit/open.hpp"
#include "support/io_thread.hpp"
#include "support/redis_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
using testing::RedisServer;
using Steady = std::chrono::steady_clock;

// Real time a test waits for something that happens at once; generous for loaded machines.
constexpr auto kAwait = 10s;
// Lateness allowed to a timer where a case checks when it fired (a loaded machine running
// sanitizer builds side by side wakes a thread that much late now and then).
constexpr auto kTimerLateness = 100ms;

template <class Pred>
bool Await(Pred pred, Steady::duration limit = kAwait, Steady::duration poll = 2ms) {
  const auto deadline = Steady::now() + limit;
  while (!pred()) {
    if (Steady::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

// A memory: store that counts its renewal rounds (extend_many) and their sizes, can fail them,
// or can make every extend hang until `unhang()`.
class ProbeStore final : public LeaseStore {
 public:
  ProbeStore() : inner_(make_memory_store()) {}

  std::string_view backend() const noexcept override { return "probe"; }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    if (hang_acquires.load()) {
      acquiring.fetch_add(1);
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return !hang_; });
    }
    return inner_->acquire(key, token, ttl);
  }
  bool release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    entered.fetch_add(1);
    rounds.fetch_add(1);
    renewals.fetch_add(1);
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return !hang_; });
    }
    if (fail.load()) failing();
    return inner_->extend(key, token, ttl);
  }
  void extend_many(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out) override {
    rounds.fetch_add(1);
    renewals.fetch_add(requests.size());
    if (fail.load()) failing();
    inner_->extend_many(requests, out);
  }
  std::optional<LockInfo> status(std::string_view key) override { return inner_->status(key); }
  std::vector<LockInfo> list(std::string_view prefix) override { return inner_->list(prefix); }
  Steady::time_point now() const noexcept override { return inner_->now(); }

  void hang() {
    std::lock_guard<std::mutex> guard(mu_);
    hang_ = true;
  }
  void unhang() {
    {
      std::lock_guard<std::mutex> guard(mu_);
      hang_ = false;
    }
    cv_.notify_all();
  }

  std::atomic<bool> fail{false};
  std::atomic<bool> hang_acquires{false};  // acquires hang too, while hang() is on
  std::atomic<int> acquiring{0};           // acquires that hung
  std::function<void()> before_failing;    // set before `fail`; called on the failing thread
  std::atomic<int> entered{0};
  std::atomic<int> rounds{0};
  std::atomic<std::size_t> renewals{0};

 private:
  [[noreturn]] void failing() {
    if (before_failing) before_failing();
    throw BackendError("probe", ErrorKind::kUnavailable, "store down");
  }

  std::shared_ptr<LeaseStore> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hang_ = false;
};

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

// A 300 ms lease on a ProbeStore, taken through an AsyncLockApi on an io thread of its own, and
// what the hooks of `options()` report, in order, and on which thread: on_renewal_error's
// message, or "lost" for on_lost (whose first call also sets `lost`).
struct HookedLease {
  explicit HookedLease(std::string_view stem)
      : locks(io.io().get_executor(), make_lock_api(store)),
        lock(locks.async_try_acquire(Unique(stem), 300ms, asio::use_future).get()) {}
  KeepAliveOptions options() {
    return {.on_lost =
                [this](std::string_view) {
                  std::lock_guard<std::mutex> guard(mu);
                  events.emplace_back("lost", std::this_thread::get_id());
                  if (lost_calls.fetch_add(1) == 0) lost.set_value();
                },
            .on_renewal_error =
                [this](std::string_view error) {
                  std::lock_guard<std::mutex> guard(mu);
                  events.emplace_back(std::string(error), std::this_thread::get_id());
                }};
  }

  IoThread io;
  std::shared_ptr<ProbeStore> store = std::make_shared<ProbeStore>();
  AsyncLockApi locks;
  std::optional<Lock> lock;
  std::mutex mu;
  std::vector<std::pair<std::string, std::thread::id>> events;
  std::promise<void> lost;
  std::atomic<int> lost_calls{0};
};

// A natively granted redis:// lease of `ttl` kept alive by `keep_alive(locks, lock, options)`
// outlives several ttls, and every renewal is sent and answered on the executor's connection.
template <class KeepAlive>
void ExpectNativeLeaseRenewedOnTheConnection(std::string_view stem, std::chrono::milliseconds ttl,
                                             KeepAlive keep_alive) {
  auto& server = RedisServer::shared();
  IoThread io;
  auto api = lockkit::open(server.url());
  auto observer = std::make_shared<ExtendThreads>();
  api->set_observer(observer);
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string key = Unique(stem);
  auto lock = locks.async_try_acquire(key, ttl, asio::use_future).get();
  ASSERT_TRUE(lock);
  LostReport lost;
  keep_alive(locks, *lock, lost.options());
  const auto stop = lock->stop_token();
  std::this_thread::sleep_for(ttl * 13 / 4);  // three ttls and more
  EXPECT_TRUE(lock->held());
  EXPECT_FALSE(stop.stop_requested());
  EXPECT_EQ(server.cli({"GET", key}), lock->token());
  EXPECT_GT(lock->valid_until(), std::chrono::steady_clock::now());
  {
    std::lock_guard<std::mutex> guard(observer->mu);
    EXPECT_GE(observer->ok, 3);
    // Every renewal was sent and answered on the executor's connection (not through the
    // blocking store).
    EXPECT_EQ(observer->threads, std::set<std::thread::id>{io.id()});
  }
  EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
  EXPECT_EQ(lost.calls.load(), 0);
}

TEST(AsyncKeepAlive, NativeRedisLeaseOutlivesSeveralTtlsRenewedOnTheExecutor) {
  ExpectNativeLeaseRenewedOnTheConnection(
      "native", 800ms, [](AsyncLockApi& locks, Lock& lock, KeepAliveOptions options) {
        locks.keep_alive(lock, std::move(options));
      });
}

// A natively granted lock kept alive by `Lock::keep_alive` (the keeper's threads, not the
// executor's schedule): its renewals still go out in batches on the executor's connection.
TEST(AsyncKeepAlive, NativeRedisLeaseKeptAliveByTheKeeperIsRenewedOnTheConnection) {
  ExpectNativeLeaseRenewedOnTheConnection("native-keeper", 500ms,
                                          [](AsyncLockApi&, Lock& lock, KeepAliveOptions options) {
                                            lock.keep_alive(std::move(options));
                                          });
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

// An injected clock drives the schedule on the executor as it does the keeper's: a renewal comes
// due when the clock has moved a third of the ttl, `should_renew` is asked on the executor, and
// when it says no, the lease is lost once the clock reaches its end, with no real time passing.
TEST(AsyncKeepAlive, InjectedClockDrivesTheScheduleOnTheExecutor) {
  IoThread io;
  auto clock = std::make_shared<ManualClock>();
  AsyncLockApi locks(io.io().get_executor(), make_memory_lock_api({.clock = clock}));
  auto lock = locks.async_try_acquire(Unique("clock"), 30s, asio::use_future).get();
  ASSERT_TRUE(lock);
  std::atomic<bool> renew{true};
  std::mutex mu;
  std::set<std::thread::id> asked_on;
  LostReport lost;
  KeepAliveOptions options = lost.options();
  options.should_renew = [&] {
    std::lock_guard<std::mutex> guard(mu);
    asked_on.insert(std::this_thread::get_id());
    return renew.load();
  };
  locks.keep_alive(*lock, options);
  const auto first = lock->valid_until();
  clock->advance(11s);
  ASSERT_TRUE(Await([&] { return lock->valid_until() >= first + 11s; }));
  renew = false;
  clock->advance(31s);  // past the renewed lease's end by the clock: lost, not renewed
  auto where = lost.where.get_future();
  ASSERT_EQ(where.wait_for(kAwait), std::future_status::ready);
  EXPECT_EQ(where.get(), io.id());
  EXPECT_FALSE(lock->held());
  EXPECT_TRUE(lock->stop_token().stop_requested());
  std::lock_guard<std::mutex> guard(mu);
  EXPECT_EQ(asked_on, std::set<std::thread::id>{io.id()});
}

// Every worker of lockkit's keeper is stuck in a renewal that hangs (six stores, one lease
// each, kept alive with Lock::keep_alive): locks kept alive through an AsyncLockApi are renewed
// all the same, natively (redis://) and on the pool (memory:), because their schedule and their
// renewals run on the executor, not on the keeper's threads.
TEST(AsyncKeepAlive, RenewsWhileEveryKeeperThreadIsStuck) {
  auto& server = RedisServer::shared();
  std::vector<std::shared_ptr<ProbeStore>> stuck;
  std::vector<Lock> stuck_locks;
  // Declared after the locks, so destroyed before them: a failed assertion must not leave their
  // releases waiting for renewals that hang forever.
  struct Unhang {
    std::vector<std::shared_ptr<ProbeStore>>& stores;
    ~Unhang() {
      for (auto& store : stores) store->unhang();
    }
  } unhang{stuck};
  for (int i = 0; i < 6; ++i) {
    auto store = std::make_shared<ProbeStore>();
    store->hang();
    auto api = make_lock_api(store);
    auto lock = api->try_acquire(Unique("stuck"), 300ms);
    ASSERT_TRUE(lock);
    lock->keep_alive();
    stuck.push_back(store);
    stuck_locks.push_back(std::move(*lock));
  }
  ASSERT_TRUE(Await([&] {
    int n = 0;
    for (const auto& store : stuck) n += store->entered.load() > 0;
    return n == 6;
  }));
  {
    IoThread io;
    auto redis_api = lockkit::open(server.url());
    auto observer = std::make_shared<ExtendThreads>();
    redis_api->set_observer(observer);
    auto probe = std::make_shared<ProbeStore>();
    AsyncLockApi native(io.io().get_executor(), redis_api);
    AsyncLockApi pooled(io.io().get_executor(), make_lock_api(probe));
    auto a = native.async_try_acquire(Unique("native"), 600ms, asio::use_future).get();
    auto b = pooled.async_try_acquire(Unique("pooled"), 600ms, asio::use_future).get();
    ASSERT_TRUE(a && b);
    LostReport lost;
    native.keep_alive(*a, lost.options());
    pooled.keep_alive(*b, lost.options());
    std::this_thread::sleep_for(2000ms);  // three ttls and more
    EXPECT_EQ(lost.calls.load(), 0) << lost.first_reason;
    EXPECT_TRUE(a->held());
    EXPECT_TRUE(b->held());
    EXPECT_EQ(server.cli({"GET", a->key()}), a->token());
    EXPECT_GE(probe->renewals.load(), 3u);
    {
      std::lock_guard<std::mutex> guard(observer->mu);
      EXPECT_GE(observer->ok, 3);
      EXPECT_EQ(observer->threads, std::set<std::thread::id>{io.id()});
    }
    EXPECT_TRUE(native.async_release(*a, asio::use_future).get());
    EXPECT_TRUE(pooled.async_release(*b, asio::use_future).get());
  }
}

// A failing store: each failed renewal reaches on_renewal_error, then the lease is lost before
// its end: on_lost runs once, after the errors, all on the executor; the stop token is requested.
TEST(AsyncKeepAlive, FailingStoreReportsErrorsThenLossOnTheExecutor) {
  HookedLease lease("failing");
  ASSERT_TRUE(lease.lock);
  lease.locks.keep_alive(*lease.lock, lease.options());
  const auto stop = lease.lock->stop_token();
  const auto valid_until = lease.lock->valid_until();
  lease.store->fail = true;
  ASSERT_EQ(lease.lost.get_future().wait_for(kAwait), std::future_status::ready);
  EXPECT_GE(lease.lock->valid_until(), valid_until);
  EXPECT_TRUE(stop.stop_requested());
  EXPECT_FALSE(lease.lock->held());
  std::this_thread::sleep_for(100ms);  // a second on_lost would come now
  EXPECT_EQ(lease.lost_calls.load(), 1);
  std::lock_guard<std::mutex> guard(lease.mu);
  const auto& events = lease.events;
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back().first, "lost");
  for (std::size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_NE(events[i].first.find("store down"), std::string::npos) << events[i].first;
  }
  for (const auto& [what, where] : events) EXPECT_EQ(where, lease.io.id()) << what;
}

// A renewal fails while the executor is blocked until past the lease's deadline: the keeper's
// watch declares the lease lost meanwhile, and the round's error, handled on the executor only
// afterwards, is not reported after `on_lost` (it came first: lost, then "store down").
TEST(AsyncKeepAlive, NoRenewalErrorIsReportedAfterTheLoss) {
  HookedLease lease("late-error");
  ASSERT_TRUE(lease.lock);
  auto& io = lease.io.io();
  const std::stop_token stop = lease.lock->stop_token();
  std::atomic<bool> blocked{false};
  // The first failing renewal blocks the executor (ahead of the round's end, which the pool
  // posts after this) until the lease has been declared lost on the keeper's thread.
  lease.store->before_failing = [&] {
    if (blocked.exchange(true)) return;
    asio::post(io, [&] { Await([&] { return stop.stop_requested(); }, kAwait, 1ms); });
  };
  lease.store->fail = true;
  lease.locks.keep_alive(*lease.lock, lease.options());
  ASSERT_TRUE(Await([&] { return lease.lost_calls.load() == 1; }));
  // Everything the round's end posted has run once this does.
  asio::post(io, asio::use_future).get();
  asio::post(io, asio::use_future).get();
  EXPECT_TRUE(blocked.load());
  EXPECT_EQ(lease.lost_calls.load(), 1);
  std::lock_guard<std::mutex> guard(lease.mu);
  ASSERT_FALSE(lease.events.empty());
  EXPECT_EQ(lease.events.back().first, "lost");
}

// Every thread of the blocking pool runs a release of a kept-alive lease whose renewal round was
// queued on the pool behind them: each release takes its lease back from the round instead of
// waiting for it (that round needed one of those very threads: all of them waited for ever).
TEST(AsyncKeepAlive, ReleasesOnEveryPoolThreadDoNotWaitForARoundQueuedBehindThem) {
  IoThread io;
  auto store = std::make_shared<ProbeStore>();
  AsyncLockApi locks(io.io().get_executor(), make_lock_api(store));
  std::vector<Lock> held;
  for (int i = 0; i < 4; ++i) {
    auto lock = locks.async_try_acquire(Unique("queued"), 600ms, asio::use_future).get();
    ASSERT_TRUE(lock);
    held.push_back(std::move(*lock));
  }
  // Four acquires through another api hang in their store: the pool's four threads are taken.
  auto blocker = std::make_shared<ProbeStore>();
  blocker->hang_acquires = true;
  blocker->hang();
  struct Unhang {
    ProbeStore& store;
    ~Unhang() { store.unhang(); }
  } unhang{*blocker};
  AsyncLockApi blocked(io.io().get_executor(), make_lock_api(blocker));
  std::vector<std::future<std::optional<Lock>>> hung;
  for (int i = 0; i < 4; ++i) {
    hung.push_back(blocked.async_try_acquire(Unique("blocker"), 1s, asio::use_future));
  }
  ASSERT_TRUE(Await([&] { return blocker->acquiring.load() == 4; }));
  // The releases queue on the pool first; the renewal round comes due after them.
  std::atomic<int> asked{0};
  KeepAliveOptions options{.should_renew = [&] {
    asked.fetch_add(1);
    return true;
  }};
  for (auto& lock : held) locks.keep_alive(lock, options);
  std::vector<std::future<bool>> released;
  for (auto& lock : held) released.push_back(locks.async_release(lock, asio::use_future));
  ASSERT_TRUE(Await([&] { return asked.load() > 0; }));
  asio::post(io.io(), asio::use_future).get();  // the round that asked is queued on the pool now
  blocker->unhang();
  for (auto& f : released) {
    ASSERT_EQ(f.wait_for(kAwait), std::future_status::ready);
    EXPECT_TRUE(f.get());
  }
  for (auto& f : hung) {
    ASSERT_EQ(f.wait_for(kAwait), std::future_status::ready);
    EXPECT_TRUE(f.get().has_value());
  }
  for (auto& lock : held) EXPECT_FALSE(store->status(lock.key()).has_value()) << lock.key();
}

// Many kept-alive locks on one io thread: renewed in rounds (one extend_many for many leases),
// natively pipelined for redis:// and on the pool for the others; none is lost.
TEST(AsyncKeepAlive, ThousandLocksOnOneIoThreadAreRenewedInBatches) {
  auto& server = RedisServer::shared();
  const int n = testing::kSanitizerBuild ? 300 : 1000;
  IoThread io;
  auto probe = std::make_shared<ProbeStore>();
  AsyncLockApi pooled(io.io().get_executor(), make_lock_api(probe));
  AsyncLockApi native(io.io().get_executor(), lockkit::open(server.url()));
  LostReport lost;
  std::vector<Lock> held;
  for (AsyncLockApi* locks : {&pooled, &native}) {
    std::vector<std::future<std::optional<Lock>>> acquires;
    for (int i = 0; i < n; ++i) {
      acquires.push_back(locks->async_try_acquire(Unique("many"), 900ms, asio::use_future));
    }
    for (auto& f : acquires) {
      auto lock = f.get();
      ASSERT_TRUE(lock);
      locks->keep_alive(*lock, lost.options());
      held.push_back(std::move(*lock));
    }
  }
  std::this_thread::sleep_for(1500ms);  // a ttl and more: every lease renewed several times
  EXPECT_EQ(lost.calls.load(), 0) << lost.first_reason;
  for (const auto& lock : held) ASSERT_TRUE(lock.held()) << lock.key();
  for (std::size_t i = n; i < held.size(); i += 97) {
    EXPECT_EQ(server.cli({"GET", held[i].key()}), held[i].token());
  }
  // Every lease renewed at least twice, in rounds of many leases each.
  EXPECT_GE(probe->renewals.load(), 2u * n);
  EXPECT_LE(probe->rounds.load() * 5, static_cast<int>(probe->renewals.load()));
  std::vector<std::future<bool>> releases;
  for (int i = 0; i < n; ++i) releases.push_back(pooled.async_release(held[i], asio::use_future));
  for (std::size_t i = n; i < held.size(); ++i) {
    releases.push_back(native.async_release(held[i], asio::use_future));
  }
  for (auto& f : releases) EXPECT_TRUE(f.get());
}

// Records when a lock's stop token was requested, and its valid_until() then.
struct StopTime {
  explicit StopTime(const Lock& lock)
      : callback(lock.stop_token(), std::function<void()>([this, &lock] {
                   std::lock_guard<std::mutex> guard(mu);
                   at = Steady::now();
                   end = lock.valid_until();
                   done = true;
                 })) {}
  bool requested() {
    std::lock_guard<std::mutex> guard(mu);
    return done;
  }
  // Expects the stop at the lease's deadline (valid_until() minus the margin), give or take a
  // late timer, never before it.
  void expect_at_deadline(std::chrono::milliseconds ttl) {
    std::lock_guard<std::mutex> guard(mu);
    ASSERT_TRUE(done);
    EXPECT_GE(at, end - loss_margin(ttl));
    EXPECT_LT(at, end - loss_margin(ttl) + kTimerLateness)
        << std::chrono::duration_cast<std::chrono::milliseconds>(at - end).count()
        << " ms after valid_until";
  }

  std::mutex mu;
  Steady::time_point at{};   // guarded by mu
  Steady::time_point end{};  // guarded by mu
  bool done = false;         // guarded by mu
  std::stop_callback<std::function<void()>> callback;
};

// The io_context stops running while the AsyncLockApi lives: nothing renews the leases any more
// (the executor does), so they lapse: the key is free once the ttl has run out. lockkit's keeper
// still watches the deadline: the stop token is requested then and `held()` is false; on_lost,
// posted to the executor, does not run while it is stopped. Destroying the AsyncLockApi and then
// the io_context afterwards is clean.
TEST(AsyncKeepAlive, StoppedExecutorLetsTheLeasesLapse) {
  auto api = lockkit::open("memory:");
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  {
    AsyncLockApi locks(io.get_executor(), api);
    const std::string key = Unique("stopped");
    auto lock = locks.async_try_acquire(key, 300ms, asio::use_future).get();
    ASSERT_TRUE(lock);
    LostReport lost;
    locks.keep_alive(*lock, lost.options());
    const auto first = lock->valid_until();
    ASSERT_TRUE(Await([&] { return lock->valid_until() > first; }));  // renewed once at least
    StopTime stop(*lock);
    io.stop();
    runner.join();
    // Stopped at the deadline of its last renewal (one under way may still land once).
    ASSERT_TRUE(Await([&] { return stop.requested(); }, 3s));
    stop.expect_at_deadline(300ms);
    EXPECT_FALSE(lock->held());
    const auto last = lock->valid_until();
    // Free once its last renewal has run out.
    ASSERT_TRUE(Await([&] { return api->try_acquire(key, 1s).has_value(); }, 3s));
    EXPECT_GE(Steady::now(), last);
    EXPECT_EQ(lost.calls.load(), 0);  // the executor runs no callback any more
  }
  work.reset();
}

// The executor's only thread is blocked: its timer cannot run, yet lockkit's keeper requests the
// stop token at the lease's deadline; on_lost, posted to the executor, runs there once the
// thread is free again, once.
TEST(AsyncKeepAlive, BlockedExecutorStillStopsTheLeaseAtItsDeadline) {
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open("memory:"));
  auto lock = locks.async_try_acquire(Unique("blocked"), 300ms, asio::use_future).get();
  ASSERT_TRUE(lock);
  LostReport lost;
  locks.keep_alive(*lock, lost.options());
  const auto first = lock->valid_until();
  ASSERT_TRUE(Await([&] { return lock->valid_until() > first; }));  // renewed once at least
  StopTime stop(*lock);
  std::promise<void> blocked;
  std::promise<void> unblock;
  asio::post(io.io(), [&, free = unblock.get_future()] {
    blocked.set_value();
    free.wait();
  });
  blocked.get_future().wait();
  ASSERT_TRUE(Await([&] { return stop.requested(); }, 3s));
  stop.expect_at_deadline(300ms);
  EXPECT_FALSE(lock->held());
  EXPECT_EQ(lost.calls.load(), 0);  // its executor is still blocked
  unblock.set_value();
  auto where = lost.where.get_future();
  ASSERT_EQ(where.wait_for(kAwait), std::future_status::ready);
  EXPECT_EQ(where.get(), io.id());
  (void)locks.async_release(*lock, asio::use_future).get();  // its lease may not have run out yet
  EXPECT_EQ(lost.calls.load(), 1) << lost.first_reason;
}

// Leases renewed on a running executor for several ttls: the keeper's watch of their deadlines
// moves on with every renewal and never declares one lost.
TEST(AsyncKeepAlive, WatchNeverStopsALeaseRenewedInTime) {
  auto& server = RedisServer::shared();
  IoThread io;
  AsyncLockApi pooled(io.io().get_executor(), lockkit::open("memory:"));
  AsyncLockApi native(io.io().get_executor(), lockkit::open(server.url()));
  LostReport lost;
  std::vector<Lock> held;
  for (AsyncLockApi* locks : {&pooled, &native}) {
    for (int i = 0; i < 20; ++i) {
      auto lock = locks->async_try_acquire(Unique("watched"), 300ms, asio::use_future).get();
      ASSERT_TRUE(lock);
      locks->keep_alive(*lock, lost.options());
      held.push_back(std::move(*lock));
    }
  }
  std::vector<std::stop_token> stops;
  for (const auto& lock : held) stops.push_back(lock.stop_token());
  std::this_thread::sleep_for(1200ms);  // four ttls
  EXPECT_EQ(lost.calls.load(), 0) << lost.first_reason;
  for (std::size_t i = 0; i < held.size(); ++i) {
    EXPECT_FALSE(stops[i].stop_requested()) << held[i].key();
    EXPECT_TRUE(held[i].held()) << held[i].key();
  }
  for (std::size_t i = 0; i < held.size(); ++i) {
    AsyncLockApi& locks = i < 20 ? pooled : native;
    EXPECT_TRUE(locks.async_release(held[i], asio::use_future).get());
  }
}

// Once its kept-alive locks are released, the keep-alive leaves the executor no work: run()
// returns by itself while the AsyncLockApi (over a store without a connection of its own) lives.
TEST(AsyncKeepAlive, ReleasedLocksLeaveTheExecutorNoWork) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::promise<void> ran_out;
  std::thread runner([&] {
    io.run();
    ran_out.set_value();
  });
  AsyncLockApi locks(io.get_executor(), lockkit::open("memory:"));
  std::vector<Lock> held;
  for (int i = 0; i < 3; ++i) {
    auto lock = locks.async_try_acquire(Unique("idle"), 30s, asio::use_future).get();
    ASSERT_TRUE(lock);
    locks.keep_alive(*lock);  // the next renewal is 10 s away
    held.push_back(std::move(*lock));
  }
  for (auto& lock : held) EXPECT_TRUE(locks.async_release(lock, asio::use_future).get());
  work.reset();
  EXPECT_EQ(ran_out.get_future().wait_for(kAwait / 2), std::future_status::ready);
  io.stop();  // in case it did not return: the test fails rather than hangs
  runner.join();
}

// The AsyncLockApi and its io_context go away while their leases are kept alive: renewals stop
// with them, and the leases run out on the server; each stop token is still requested before its
// lease's end (lockkit's keeper watches them then), no callback reaches the dead executor, and the
// locks are destroyed cleanly afterwards.
TEST(AsyncKeepAlive, ApiDestroyedStopsRenewalsAndTheLeasesRunOut) {
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
    const auto first = held.back().valid_until();
    ASSERT_TRUE(Await([&] { return held.back().valid_until() > first; }));  // renewed
  }
  std::mutex mu;
  std::vector<std::pair<Steady::time_point, Steady::time_point>> stops;  // (stopped, valid_until)
  std::vector<std::unique_ptr<std::stop_callback<std::function<void()>>>> callbacks;
  for (auto& lock : held) {
    callbacks.push_back(std::make_unique<std::stop_callback<std::function<void()>>>(
        lock.stop_token(), std::function<void()>([&mu, &stops, &lock] {
          std::lock_guard<std::mutex> guard(mu);
          stops.emplace_back(Steady::now(), lock.valid_until());
        })));
  }
  ASSERT_TRUE(Await([&] {
    std::lock_guard<std::mutex> guard(mu);
    return stops.size() == held.size();
  }));
  {
    std::lock_guard<std::mutex> guard(mu);
    // At each one's deadline, before its end, give or take a late timer.
    for (const auto& [stopped, end] : stops) {
      EXPECT_LT(stopped, end - loss_margin(400ms) + kTimerLateness)
          << std::chrono::duration_cast<std::chrono::milliseconds>(stopped - end).count()
          << " ms after valid_until";
    }
  }
  // Not renewed any more: the server lets each one expire.
  std::vector<std::string> exists{"EXISTS"};
  for (auto& lock : held) {
    EXPECT_FALSE(lock.held());
    exists.push_back(lock.key());
  }
  EXPECT_TRUE(Await([&] { return server.cli(exists) == "0"; }, 3s, 50ms));
  callbacks.clear();
  for (auto& lock : held) EXPECT_FALSE(lock.release());
  EXPECT_EQ(lost.calls.load(), 0);
}

// fork() while a lock is kept alive through an AsyncLockApi: the lease stays the parent's. The
// child's copy is not renewed (the child runs none of the parent's threads, and its own keeper
// only watches the copy): its stop token is requested, the child neither renews nor releases it,
// and the parent goes on renewing it for three ttls and more.
TEST(AsyncKeepAlive, ForkedChildNeitherRenewsNorReleasesTheParentsLease) {
  if (!testing::kForkWithBusyThreads) {
    GTEST_SKIP() << "the sanitizer runtimes cannot fork with an io thread and a pool running";
  }
  auto& server = RedisServer::shared();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  constexpr auto kTtl = 300ms;
  auto lock = locks.async_try_acquire(Unique("fork"), kTtl, asio::use_future).get();
  ASSERT_TRUE(lock);
  LostReport lost;
  locks.keep_alive(*lock, lost.options());
  const auto first = lock->valid_until();
  ASSERT_TRUE(Await([&] { return lock->valid_until() > first; }));  // renewed once
  const auto forked = Steady::now();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: no GoogleTest here, the exit status says what went wrong.
    int status = 0;
    const auto stop = lock->stop_token();
    const auto end = lock->valid_until();
    while (!stop.stop_requested() && Steady::now() < end + 500ms) {
      std::this_thread::sleep_for(1ms);
    }
    if (!stop.stop_requested()) status |= 1;  // never told that its copy is not kept
    if (lock->held()) status |= 2;
    if (lock->valid_until() != end) status |= 8;  // renewed in the child
    if (lost.calls.load() != 0) status |= 16;     // the parent's on_lost ran here
    if (lock->release()) status |= 32;            // released the parent's lease
    lock.reset();
    ::_exit(status);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of a signal";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "child: 1 no stop, 2 still held, 8 renewed, 16 on_lost ran, 32 released the lease";
  while (Steady::now() < forked + 3 * kTtl) {
    ASSERT_EQ(server.cli({"GET", lock->key()}), lock->token()) << "lost after the fork";
    std::this_thread::sleep_for(kTtl / 4);
  }
  EXPECT_TRUE(lock->held());
  EXPECT_EQ(lost.calls.load(), 0) << lost.first_reason;
  EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
}

}  // namespace
}  // namespace lockkit
