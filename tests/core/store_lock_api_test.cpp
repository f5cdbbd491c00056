// SPDX-License-Identifier: MIT
// make_lock_api over a scripted LeaseStore: the protocol written once (validation, tokens,
// valid_until, in-doubt cleanup), register_backend for stores, and the observer hook.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/clock.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/memory.hpp"
#include "lockkit/observer.hpp"
#include "lockkit/open.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

// A map under a mutex that fails or stalls on demand, and counts what reached it.
class ScriptedStore final : public LeaseStore {
 public:
  std::string_view backend() const noexcept override { return "scripted"; }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds) override {
    ++acquires;
    if (acquire_delay.count() > 0) std::this_thread::sleep_for(acquire_delay);
    if (fail_acquire) throw BackendError("scripted", *fail_acquire, "scripted failure");
    std::lock_guard<std::mutex> guard(mu);
    auto [it, inserted] = held.try_emplace(std::string(key), std::string(token));
    if (!inserted) return std::nullopt;
    last_token = std::string(token);
    return ++fence;
  }
  bool release(std::string_view key, std::string_view token) override {
    ++releases;
    std::lock_guard<std::mutex> guard(mu);
    auto it = held.find(std::string(key));
    if (it == held.end() || it->second != token) return false;
    held.erase(it);
    return true;
  }
  bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> guard(mu);
    auto it = held.find(std::string(key));
    return it != held.end() && it->second == token;
  }
  std::optional<LockInfo> status(std::string_view key) override {
    std::lock_guard<std::mutex> guard(mu);
    if (!held.count(std::string(key))) return std::nullopt;
    return LockInfo{std::string(key), fence, 1s};
  }
  std::vector<LockInfo> list(std::string_view) override {
    std::lock_guard<std::mutex> guard(mu);
    std::vector<LockInfo> out;
    for (auto it = held.rbegin(); it != held.rend(); ++it) out.push_back({it->first, 1, 1s});
    return out;  // deliberately unsorted: the core sorts
  }
  std::chrono::milliseconds drift(std::chrono::milliseconds) const noexcept override {
    return drift_;
  }

  std::mutex mu;
  std::map<std::string, std::string> held;
  std::uint64_t fence = 0;
  std::string last_token;
  std::atomic<int> acquires{0};
  std::atomic<int> releases{0};
  std::optional<ErrorKind> fail_acquire;
  std::chrono::milliseconds acquire_delay{0};
  std::chrono::milliseconds drift_{0};
};

// Keeps every event it is given (key and backend copied).
class Recorder final : public LockObserver {
 public:
  struct Seen {
    LockEvent event;
    std::string key;
    std::string backend;
  };
  void on_event(const LockEvent& event) override {
    std::lock_guard<std::mutex> guard(mu);
    seen.push_back({event, std::string(event.key), std::string(event.backend)});
  }
  std::vector<Seen> take() {
    std::lock_guard<std::mutex> guard(mu);
    return std::exchange(seen, {});
  }
  std::mutex mu;
  std::vector<Seen> seen;
};

class Thrower final : public LockObserver {
 public:
  void on_event(const LockEvent&) override {
    ++calls;
    throw std::runtime_error("observer failed");
  }
  std::atomic<int> calls{0};
};

TEST(MakeLockApi, RejectsANullStore) {
  EXPECT_THROW((void)make_lock_api(nullptr), std::invalid_argument);
}

TEST(MakeLockApi, ValidatesBeforeTheStoreSeesAnything) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  EXPECT_THROW((void)api->try_acquire("", 1s), std::invalid_argument);
  EXPECT_THROW((void)api->try_acquire("k", 0ms), std::invalid_argument);
  EXPECT_THROW((void)api->release(std::string(kMaxKeyBytes + 1, 'k'), "t"), std::invalid_argument);
  EXPECT_THROW((void)api->extend("k", "t", kMaxTtl + 1ms), std::invalid_argument);
  EXPECT_EQ(store->acquires, 0);
  EXPECT_EQ(store->releases, 0);
}

TEST(MakeLockApi, MintsATokenAndPassesItToTheStore) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  EXPECT_EQ(api->backend(), "scripted");
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->token().size(), 32u);
  EXPECT_EQ(lock->token(), store->last_token);
  EXPECT_EQ(lock->fence(), 1u);
  EXPECT_FALSE(api->try_acquire("k", 10s));
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(store->held.empty());
}

TEST(MakeLockApi, ValidUntilSubtractsTheStoresDrift) {
  auto store = std::make_shared<ScriptedStore>();
  store->drift_ = 250ms;
  auto api = make_lock_api(store);
  auto before = std::chrono::steady_clock::now();
  auto lock = api->try_acquire("k", 10s);
  auto after = std::chrono::steady_clock::now();
  ASSERT_TRUE(lock);
  EXPECT_GE(lock->valid_until(), before + 10s - 250ms);
  EXPECT_LE(lock->valid_until(), after + 10s - 250ms);
}

TEST(MakeLockApi, InDoubtAcquireReleasesWithTheSameTokenAndRethrows) {
  auto store = std::make_shared<ScriptedStore>();
  store->fail_acquire = ErrorKind::kInDoubt;
  auto api = make_lock_api(store);
  try {
    (void)api->try_acquire("k", 10s);
    FAIL() << "no exception";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInDoubt);
  }
  EXPECT_EQ(store->releases, 1);
  store->fail_acquire = ErrorKind::kUnavailable;
  EXPECT_THROW((void)api->try_acquire("k", 10s), BackendError);
  EXPECT_EQ(store->releases, 1) << "released after an error that was not in doubt";
}

TEST(MakeLockApi, ListIsSortedByKey) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  auto b = api->try_acquire("b", 10s);
  auto a = api->try_acquire("a", 10s);
  auto listed = api->list("");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].key, "a");
  EXPECT_EQ(listed[1].key, "b");
}

TEST(MakeLockApi, RegisterBackendOpensAStoreByUrl) {
  std::shared_ptr<ScriptedStore> store = std::make_shared<ScriptedStore>();
  std::string seen_url;
  register_backend("scripted-store", [&](std::string_view url) -> std::shared_ptr<LeaseStore> {
    seen_url = std::string(url);
    return store;
  });
  auto api = open("scripted-store:x");
  EXPECT_EQ(seen_url, "scripted-store:x");
  EXPECT_EQ(api->backend(), "scripted");
  auto lock = api->try_acquire("k", 1s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(store->held.count("k"), 1u);
}

TEST(Observer, SeesGrantedBusyAndErrorAcquires) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_FALSE(api->try_acquire("k", 10s));
  store->fail_acquire = ErrorKind::kTimeout;
  EXPECT_THROW((void)api->try_acquire("other", 10s), BackendError);
  auto seen = recorder->take();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& s : seen) {
    EXPECT_EQ(s.event.operation, LockOperation::kTryAcquire);
    EXPECT_EQ(s.backend, "scripted");
  }
  EXPECT_EQ(seen[0].key, "k");
  EXPECT_EQ(seen[0].event.outcome, LockOutcome::kOk);
  EXPECT_EQ(seen[0].event.fence, lock->fence());
  EXPECT_EQ(seen[1].event.outcome, LockOutcome::kBusy);
  EXPECT_EQ(seen[2].key, "other");
  EXPECT_EQ(seen[2].event.outcome, LockOutcome::kError);
  EXPECT_EQ(seen[2].event.error, ErrorKind::kTimeout);
}

TEST(Observer, MeasuresTheStoreCallsLatency) {
  auto store = std::make_shared<ScriptedStore>();
  store->acquire_delay = 30ms;
  auto api = make_lock_api(store);
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);
  auto start = std::chrono::steady_clock::now();
  auto lock = api->try_acquire("k", 10s);
  auto elapsed = std::chrono::steady_clock::now() - start;
  auto seen = recorder->take();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_GE(seen[0].event.latency, 30ms);
  EXPECT_LE(seen[0].event.latency, elapsed);
}

TEST(Observer, SeesHeldDurationAndOwnershipOnRelease) {
  auto clock = std::make_shared<ManualClock>();
  auto api = make_lock_api(make_memory_store(MemoryOptions{.clock = clock}));
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  clock->advance(4s);
  EXPECT_TRUE(lock->release());
  auto expired = api->try_acquire("e", 1s);
  ASSERT_TRUE(expired);
  clock->advance(2s);
  EXPECT_FALSE(expired->release());
  auto seen = recorder->take();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].event.operation, LockOperation::kRelease);
  EXPECT_EQ(seen[1].event.outcome, LockOutcome::kOk);
  EXPECT_EQ(seen[1].event.held, 4s);
  EXPECT_EQ(seen[1].backend, "memory");
  EXPECT_EQ(seen[3].event.operation, LockOperation::kRelease);
  EXPECT_EQ(seen[3].event.outcome, LockOutcome::kNotOurs);
  EXPECT_EQ(seen[3].event.held, 2s);
}

TEST(Observer, SeesExtendsAndTokenCalls) {
  auto clock = std::make_shared<ManualClock>();
  auto api = make_lock_api(make_memory_store(MemoryOptions{.clock = clock}));
  auto recorder = std::make_shared<Recorder>();
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  api->set_observer(recorder);  // attached after the acquire: the lock reports to it too
  EXPECT_TRUE(lock->extend(10s));
  EXPECT_TRUE(api->extend("k", lock->token(), 10s));
  EXPECT_FALSE(api->release("k", "not-the-token"));
  EXPECT_TRUE(api->release("k", lock->token()));
  EXPECT_FALSE(lock->extend(10s));
  auto seen = recorder->take();
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].event.operation, LockOperation::kExtend);
  EXPECT_EQ(seen[0].event.outcome, LockOutcome::kOk);
  EXPECT_EQ(seen[1].event.operation, LockOperation::kExtend);
  EXPECT_EQ(seen[2].event.operation, LockOperation::kRelease);
  EXPECT_EQ(seen[2].event.outcome, LockOutcome::kNotOurs);
  EXPECT_EQ(seen[3].event.outcome, LockOutcome::kOk);
  EXPECT_EQ(seen[3].event.held, 0ns) << "a release by token knows no acquisition time";
  EXPECT_EQ(seen[4].event.operation, LockOperation::kExtend);
  EXPECT_EQ(seen[4].event.outcome, LockOutcome::kNotOurs);
}

TEST(Observer, SeesAttemptsAndTotalWaitOfAcquire) {
  auto api = make_lock_api(make_memory_store());
  auto holder = api->try_acquire("k", 30s);
  ASSERT_TRUE(holder);
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);
  RetryPolicy policy{.max_wait = 100ms, .initial_delay = 5ms, .max_delay = 20ms};
  EXPECT_FALSE(api->acquire("k", 30s, policy));
  auto seen = recorder->take();
  ASSERT_GE(seen.size(), 3u);  // at least two attempts and the summary
  const auto& summary = seen.back().event;
  EXPECT_EQ(summary.operation, LockOperation::kAcquire);
  EXPECT_EQ(summary.outcome, LockOutcome::kBusy);
  EXPECT_EQ(summary.attempts, seen.size() - 1);
  EXPECT_GE(summary.latency, 100ms);
  for (std::size_t i = 0; i + 1 < seen.size(); ++i) {
    EXPECT_EQ(seen[i].event.operation, LockOperation::kTryAcquire);
  }
  ASSERT_TRUE(holder->release());
  (void)recorder->take();
  auto lock = api->acquire("k", 30s, policy);
  ASSERT_TRUE(lock);
  seen = recorder->take();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].event.operation, LockOperation::kAcquire);
  EXPECT_EQ(seen[1].event.outcome, LockOutcome::kOk);
  EXPECT_EQ(seen[1].event.attempts, 1u);
  EXPECT_EQ(seen[1].event.fence, lock->fence());
}

TEST(Observer, AThrowingObserverNeverBreaksALockOperation) {
  auto store = std::make_shared<ScriptedStore>();
  auto api = make_lock_api(store);
  auto thrower = std::make_shared<Thrower>();
  api->set_observer(thrower);
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_FALSE(api->try_acquire("k", 10s));
  EXPECT_FALSE(api->acquire("k", 10s, RetryPolicy{.max_wait = 10ms}));
  EXPECT_TRUE(lock->extend(10s));
  EXPECT_TRUE(lock->release());
  store->fail_acquire = ErrorKind::kAuth;
  try {
    (void)api->try_acquire("k", 10s);
    FAIL() << "no exception";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kAuth) << "the observer's exception replaced the store's";
  }
  store->fail_acquire.reset();
  { auto dropped = api->try_acquire("d", 10s); }  // the destructor's release reports too
  EXPECT_TRUE(store->held.empty());
  EXPECT_GE(thrower->calls, 8);
}

TEST(Observer, DetachedObserverSeesNothing) {
  auto api = make_lock_api(make_memory_store());
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);
  api->set_observer(nullptr);
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(recorder->take().empty());
}

TEST(Observer, MemoryAndNoopForwardTheirObserver) {
  auto recorder = std::make_shared<Recorder>();
  auto memory = make_memory_lock_api();
  memory->set_observer(recorder);
  (void)memory->try_acquire("k", 1s);
  auto seen = recorder->take();
  ASSERT_EQ(seen.size(), 2u);  // acquire, then the dropped lock's release
  EXPECT_EQ(seen[0].backend, "memory");
  EXPECT_EQ(seen[1].event.operation, LockOperation::kRelease);
}

TEST(Observer, CanBeSwappedWhileThreadsTakeLocks) {
  auto api = make_lock_api(make_memory_store());
  auto counter = std::make_shared<Recorder>();
  std::atomic<bool> stop{false};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        auto lock = api->try_acquire("k" + std::to_string(t) + "/" + std::to_string(i % 8), 10s);
        if (lock && lock->release()) ++granted;
      }
    });
  }
  std::thread swapper([&] {
    while (!stop) {
      api->set_observer(counter);
      api->set_observer(nullptr);
    }
  });
  for (auto& t : threads) t.join();
  stop = true;
  swapper.join();
  EXPECT_EQ(granted, 4 * 2000);
  for (const auto& s : counter->take()) EXPECT_EQ(s.backend, "memory");
}

TEST(Observer, NamesAreStableLabels) {
  EXPECT_STREQ(to_string(LockOperation::kTryAcquire), "try_acquire");
  EXPECT_STREQ(to_string(LockOperation::kAcquire), "acquire");
  EXPECT_STREQ(to_string(LockOutcome::kNotOurs), "not_ours");
  EXPECT_STREQ(to_string(LockOutcome::kBusy), "busy");
}

}  // namespace
}  // namespace lockkit
