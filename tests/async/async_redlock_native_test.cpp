// SPDX-License-Identifier: MIT
// AsyncLockApi's native redlock:// path: every attempt goes to all nodes at once on the
// executor, the quorum is decided as the blocking store decides it, and a minority of dead
// nodes costs nothing while a majority is reported quickly.
#include <gtest/gtest.h>
#include <signal.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "support/io_thread.hpp"
#include "support/redis_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
using testing::RedisServer;

// Generous: CI runs three configurations on two cores, sanitizers included.
constexpr auto kSchedulingSlack = 1500ms;

std::string Unique(std::string_view stem) {
  return "redlock-native/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

// Three fresh servers and the redlock:// URL over them.
struct Trio {
  RedisServer a, b, c;
  std::string url(std::string_view tail = "") const {
    return "redlock://127.0.0.1:" + std::to_string(a.port()) +
           ",127.0.0.1:" + std::to_string(b.port()) + ",127.0.0.1:" + std::to_string(c.port()) +
           std::string(tail);
  }
  std::vector<const RedisServer*> all() const { return {&a, &b, &c}; }
};

Trio& SharedTrio() {
  static Trio trio;  // stopped by its destructors when the test binary exits
  return trio;
}

int NativeConnections(const RedisServer& server) {
  const std::string list = server.cli({"CLIENT", "LIST"});
  int n = 0;
  for (std::size_t at = list.find("name=lockkit-async "); at != std::string::npos;
       at = list.find("name=lockkit-async ", at + 1)) {
    ++n;
  }
  return n;
}

// Stops `pid` and waits until it is really stopped (state T): kill() returns before that.
void StopProcess(int pid) {
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  for (int i = 0; i < 1000; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close != std::string::npos && line.size() > close + 2 && line[close + 2] == 'T') return;
    std::this_thread::sleep_for(1ms);
  }
  FAIL() << "redis-server did not stop";
}

TEST(AsyncRedlockNative, FuturesCoroutinesAndCallbacksOnThreeNodes) {
  const Trio& trio = SharedTrio();
  IoThread io;
  auto sync_api = lockkit::open(trio.url());
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));

  // Future.
  const std::string key = Unique("future");
  auto lock = locks.async_try_acquire(key, 20s, asio::use_future).get();
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), 0U);
  for (const RedisServer* server : trio.all()) {
    EXPECT_EQ(server->cli({"GET", key}), lock->token());  // every node holds the plain key
    EXPECT_EQ(NativeConnections(*server), 1);
  }
  EXPECT_FALSE(sync_api->try_acquire(key, 20s));
  auto status = sync_api->status(key);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->fence, lock->fence());
  EXPECT_FALSE(locks.async_try_acquire(key, 20s, asio::use_future).get());
  EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
  EXPECT_FALSE(lock->held());
  for (const RedisServer* server : trio.all()) EXPECT_EQ(server->cli({"EXISTS", key}), "0");

  // Coroutine: waits for a holder of the blocking API, on the executor.
  auto holder = sync_api->try_acquire(key, 20s);
  ASSERT_TRUE(holder);
  std::promise<std::uint64_t> fence;
  asio::co_spawn(
      io.io(),
      [&]() -> asio::awaitable<std::uint64_t> {
        std::optional<Lock> got = co_await locks.async_acquire(
            key, 20s, RetryPolicy{.max_wait = 20s, .initial_delay = 1ms, .max_delay = 20ms},
            asio::use_awaitable);
        EXPECT_EQ(std::this_thread::get_id(), io.id());
        if (!got) co_return 0;
        const std::uint64_t f = got->fence();
        EXPECT_TRUE(co_await locks.async_release(*got, asio::use_awaitable));
        co_return f;
      },
      [&](std::exception_ptr e, std::uint64_t f) {
        if (e) {
          fence.set_exception(e);
        } else {
          fence.set_value(f);
        }
      });
  auto waited = fence.get_future();
  EXPECT_EQ(waited.wait_for(50ms), std::future_status::timeout);
  ASSERT_TRUE(holder->release());
  EXPECT_GT(waited.get(), holder->fence());

  // Callback, on the executor.
  std::promise<std::thread::id> on;
  std::optional<Lock> kept;
  locks.async_try_acquire(key, 20s, [&](std::exception_ptr e, std::optional<Lock> l) {
    EXPECT_FALSE(e);
    kept = std::move(l);
    on.set_value(std::this_thread::get_id());
  });
  EXPECT_EQ(on.get_future().get(), io.id());
  ASSERT_TRUE(kept);
  // A native grant released through the blocking path works too.
  EXPECT_TRUE(kept->release());
  EXPECT_FALSE(sync_api->status(key));
}

// The blocking pool's size (src/async/blocking_pool.hpp).
constexpr int kPoolThreads = 4;

// A store whose acquire blocks until `open()`: occupies the blocking pool's threads.
class GateStore final : public LeaseStore {
 public:
  std::string_view backend() const noexcept override { return "gate"; }
  std::optional<std::uint64_t> acquire(std::string_view, std::string_view,
                                       std::chrono::milliseconds) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    return std::nullopt;
  }
  bool release(std::string_view, std::string_view) override { return false; }
  bool extend(std::string_view, std::string_view, std::chrono::milliseconds) override {
    return false;
  }
  std::optional<LockInfo> status(std::string_view) override { return std::nullopt; }
  std::vector<LockInfo> list(std::string_view) override { return {}; }

  bool wait_for_waiters(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return waiting_ >= n; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

// The pool that runs blocking store calls is held up by another AsyncLockApi: the native path
// does not need it, so 256 attempts in flight on one io thread still complete.
TEST(AsyncRedlockNative, ManyInFlightCompleteWhileTheBlockingPoolIsBusy) {
  const Trio& trio = SharedTrio();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));
  // Connected first: the first connect checks each node once through the blocking store.
  ASSERT_TRUE(locks.async_try_acquire(Unique("warm"), 20s, asio::use_future).get());

  auto gate = std::make_shared<GateStore>();
  IoThread gate_io;
  AsyncLockApi gated(gate_io.io().get_executor(), make_lock_api(gate));
  std::vector<std::future<std::optional<Lock>>> blockers;
  for (int i = 0; i < 16; ++i) {
    blockers.push_back(gated.async_try_acquire("blocker", 1s, asio::use_future));
  }
  ASSERT_TRUE(gate->wait_for_waiters(kPoolThreads)) << "the pool is not held up";

  const std::string stem = Unique("inflight");
  std::vector<std::future<std::optional<Lock>>> acquires;
  for (int i = 0; i < 256; ++i) {
    acquires.push_back(
        locks.async_try_acquire(stem + "/" + std::to_string(i), 20s, asio::use_future));
  }
  std::vector<Lock> held;
  bool all_done = true;
  for (auto& f : acquires) {
    if (f.wait_for(10s) != std::future_status::ready) {
      all_done = false;
      break;
    }
    auto lock = f.get();
    EXPECT_TRUE(lock);
    if (lock) held.push_back(std::move(*lock));
  }
  EXPECT_TRUE(all_done) << "acquires waited for the blocking pool";
  std::vector<std::future<bool>> releases;
  for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
  for (auto& f : releases) {
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "releases waited for the pool";
    EXPECT_TRUE(f.get());
  }
  gate->open();
  for (auto& f : blockers) EXPECT_FALSE(f.get());
  for (auto& f : acquires) {
    if (f.valid()) (void)f.get();
  }
  for (const RedisServer* server : trio.all()) {
    EXPECT_EQ(NativeConnections(*server), 1);
    EXPECT_EQ(server->cli({"EXISTS", stem + "/0"}), "0");
  }
}

// The script runs a node has served so far (EVALSHA and EVAL), from INFO commandstats.
long ScriptRuns(const RedisServer& server) {
  const std::string stats = server.cli({"INFO", "commandstats"});
  long runs = 0;
  for (std::string_view name : {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="}) {
    const auto at = stats.find(name);
    if (at != std::string::npos) runs += std::stol(stats.substr(at + name.size()));
  }
  return runs;
}

// Starts `n` acquires of `stem/i` from one handler on the io thread (so they leave together).
std::vector<std::future<std::optional<Lock>>> AcquireTogether(IoThread& io, AsyncLockApi& locks,
                                                              const std::string& stem, int n) {
  std::vector<std::future<std::optional<Lock>>> attempts;
  std::promise<void> issued;
  asio::post(io.io(), [&] {
    for (int i = 0; i < n; ++i) {
      attempts.push_back(
          locks.async_try_acquire(stem + "/" + std::to_string(i), 20s, asio::use_future));
    }
    issued.set_value();
  });
  issued.get_future().wait();
  return attempts;
}

// What one turn of the executor sends a node goes out as one script run, not one per
// operation: the server's cost of a call is paid once for the lot.
TEST(AsyncRedlockNative, OperationsOfOneTurnReachANodeAsOneScriptRun) {
  const Trio& trio = SharedTrio();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));
  ASSERT_TRUE(locks.async_try_acquire(Unique("warm"), 20s, asio::use_future).get());
  constexpr int kLocks = 32;
  std::vector<long> before;
  for (const RedisServer* server : trio.all()) before.push_back(ScriptRuns(*server));
  auto attempts = AcquireTogether(io, locks, Unique("batched"), kLocks);
  std::vector<Lock> held;
  for (auto& attempt : attempts) {
    auto lock = attempt.get();
    ASSERT_TRUE(lock);
    held.push_back(std::move(*lock));
  }
  std::vector<std::future<bool>> releases;
  std::promise<void> issued;
  asio::post(io.io(), [&] {
    for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
    issued.set_value();
  });
  issued.get_future().wait();
  for (auto& release : releases) EXPECT_TRUE(release.get());
  for (std::size_t i = 0; i < 3; ++i) {
    const long runs = ScriptRuns(*trio.all()[i]) - before[i];
    // One run for the acquires and one for the releases; a few more if a write was under way
    // when some of them were started. One run per operation would be 64.
    EXPECT_LE(runs, 8) << "node " << i;
    EXPECT_GE(runs, 2) << "node " << i;
  }
  for (const RedisServer* server : trio.all()) {
    EXPECT_EQ(server->cli({"EXISTS", held.front().key()}), "0");
  }
}

// Each operation of a run gets its own outcome: on nodes out of memory the acquires fail (as
// they would alone) while the releases sent with them still free their locks.
TEST(AsyncRedlockNative, AFailedOperationLeavesTheRestOfItsRunAlone) {
  const Trio& trio = SharedTrio();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));
  const std::string stem = Unique("oom");
  auto attempts = AcquireTogether(io, locks, stem + "/held", 8);
  std::vector<Lock> held;
  for (auto& attempt : attempts) {
    auto lock = attempt.get();
    ASSERT_TRUE(lock);
    held.push_back(std::move(*lock));
  }
  struct Restore {
    const Trio& trio;
    ~Restore() {
      for (const RedisServer* server : trio.all()) server->cli({"CONFIG", "SET", "maxmemory", "0"});
    }
  } restore{trio};
  for (const RedisServer* server : trio.all()) {
    ASSERT_EQ(server->cli({"CONFIG", "SET", "maxmemory", "1"}), "OK");
  }
  std::vector<std::future<bool>> releases;
  std::vector<std::future<std::optional<Lock>>> refused;
  std::promise<void> issued;
  asio::post(io.io(), [&] {
    // The acquires first: once a script run has written, Redis lets the rest of it write
    // even out of memory (a script is never stopped half done).
    for (int i = 0; i < 8; ++i) {
      refused.push_back(
          locks.async_try_acquire(stem + "/new/" + std::to_string(i), 20s, asio::use_future));
    }
    for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
    issued.set_value();
  });
  issued.get_future().wait();
  for (auto& release : releases) EXPECT_TRUE(release.get());
  for (auto& attempt : refused) {
    try {
      auto lock = attempt.get();
      ADD_FAILURE() << (lock ? "granted" : "busy") << " on nodes out of memory";
    } catch (const BackendError& e) {
      EXPECT_NE(std::string(e.what()).find("OOM"), std::string::npos) << e.what();
    }
  }
  for (const RedisServer* server : trio.all()) {
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(server->cli({"EXISTS", held[i].key()}), "0");
      EXPECT_EQ(server->cli({"EXISTS", stem + "/new/" + std::to_string(i)}), "0");
    }
  }
}

// After SCRIPT FLUSH on every node, the next runs are answered NOSCRIPT and sent again with
// the script's text: every operation still gets its own outcome.
TEST(AsyncRedlockNative, RunsGoOnAfterTheNodesFlushedTheirScripts) {
  const Trio& trio = SharedTrio();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));
  ASSERT_TRUE(locks.async_try_acquire(Unique("warm"), 20s, asio::use_future).get());
  for (const RedisServer* server : trio.all()) {
    ASSERT_EQ(server->cli({"SCRIPT", "FLUSH"}), "OK");
  }
  const std::string stem = Unique("flushed");
  auto attempts = AcquireTogether(io, locks, stem, 16);
  for (auto& attempt : attempts) {
    auto lock = attempt.get();
    ASSERT_TRUE(lock);
    EXPECT_GT(lock->fence(), 0U);
    EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
  }
}

// One node of three stops answering, then is killed: acquires and releases go on at the speed
// of the other two (the quorum is decided without it), and after its first failure it is
// skipped.
TEST(AsyncRedlockNative, OneStoppedOrKilledNodeCostsNoLatency) {
  Trio trio;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(),
                     lockkit::open(trio.url("?command_timeout=1s&connect_timeout=1s")));
  ASSERT_TRUE(locks.async_try_acquire(Unique("warm"), 20s, asio::use_future).get());
  std::uint64_t last = 0;
  // Runs pairs for `at_least` and 20 pairs at least; returns the slowest pair.
  auto pairs = [&](std::chrono::milliseconds at_least) {
    auto worst = std::chrono::steady_clock::duration::zero();
    const auto deadline = std::chrono::steady_clock::now() + at_least;
    for (int rounds = 0; std::chrono::steady_clock::now() < deadline || rounds < 20; ++rounds) {
      const auto start = std::chrono::steady_clock::now();
      auto lock = locks.async_try_acquire(Unique("one-down"), 20s, asio::use_future).get();
      EXPECT_TRUE(lock);
      if (!lock) break;
      EXPECT_GT(lock->fence(), last);
      last = lock->fence();
      EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
      worst = std::max(worst, std::chrono::steady_clock::now() - start);
    }
    return worst;
  };
  StopProcess(trio.c.pid());
  // Past the command timeout (1s), which fails the stopped node's connection. Below it, with
  // room for a loaded machine: waiting for the silent node would cost the whole timeout.
  EXPECT_LT(pairs(1200ms), 700ms) << "a pair waited for the stopped node";
  trio.c.kill();
  EXPECT_LT(pairs(0ms), 700ms) << "a pair waited for the killed node";
}

TEST(AsyncRedlockNative, TwoDeadNodesOfThreeReportBackendErrorQuickly) {
  Trio trio;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(),
                     lockkit::open(trio.url("?command_timeout=2s&connect_timeout=2s")));
  ASSERT_TRUE(locks.async_try_acquire(Unique("warm"), 500ms, asio::use_future).get());
  trio.a.kill();
  trio.b.kill();
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    std::promise<std::exception_ptr> failed;
    locks.async_try_acquire(Unique("two-down"), 500ms,
                            [&](std::exception_ptr e, std::optional<Lock> lock) {
                              EXPECT_FALSE(lock);
                              failed.set_value(e);
                            });
    auto e = failed.get_future().get();
    EXPECT_LT(std::chrono::steady_clock::now() - start, kSchedulingSlack);
    ASSERT_TRUE(e);
    try {
      std::rethrow_exception(e);
    } catch (const BackendError& error) {
      EXPECT_STREQ(error.backend(), "redlock");
      EXPECT_TRUE(error.kind() == ErrorKind::kUnavailable || error.kind() == ErrorKind::kInDoubt)
          << error.what();
      EXPECT_NE(std::string(error.what()).find("no quorum"), std::string::npos) << error.what();
    } catch (...) {
      ADD_FAILURE() << "not a BackendError";
    }
  }
  // Back with a majority: granted again once the backoff lets the node be probed and its
  // lock-delay (the longest ttl recorded, 500ms: short ttls here) is over.
  trio.a.start();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::optional<Lock> lock;
  while (!lock && std::chrono::steady_clock::now() < deadline) {
    try {
      lock = locks.async_try_acquire(Unique("back"), 500ms, asio::use_future).get();
    } catch (const BackendError&) {  // still backing off
      std::this_thread::sleep_for(20ms);
    }
  }
  EXPECT_TRUE(lock);
}

// The native path and the blocking redlock:// API, several threads each, on 4 hot keys: never
// two holders at once, and each key's fences strictly increase in the order it was held.
// Many loops of try_acquire + release on a few hot keys, the AsyncLockApi destroyed by the last
// one to end: its nodes' connections close, and io_context::run() returns. Attempts refused by
// a quorum still have their third node's answer on the way then; failed by the shutdown, in
// doubt, they were taken back (undo) on nodes whose short backoff was already over, and that
// reopened a connection after the shutdown, which kept run() waiting for ever.
TEST(AsyncRedlockNative, DestroyedWithAnswersInFlightLetsTheExecutorRunOut) {
  const Trio& trio = SharedTrio();
  RedlockOptions options = parse_redlock_url(trio.url());
  options.backoff = 1ms;  // over before the shutdown's failed answers are handled
  options.max_backoff = 1ms;
  const std::string stem = Unique("shutdown");
  for (int round = 0; round < 6; ++round) {
    asio::io_context io;
    std::optional<AsyncLockApi> locks(std::in_place, io.get_executor(),
                                      make_redlock_lock_api(options));
    constexpr int kLoops = 48;
    constexpr int kHotKeys = 4;
    const auto deadline = std::chrono::steady_clock::now() + 150ms;
    int running = kLoops;
    std::vector<std::optional<Lock>> held(kLoops);
    std::vector<std::function<void(unsigned)>> loops(kLoops);
    for (int c = 0; c < kLoops; ++c) {
      loops[c] = [&, c](unsigned i) {
        if (std::chrono::steady_clock::now() >= deadline) {
          if (--running == 0) asio::post(io, [&] { locks.reset(); });
          return;
        }
        locks->async_try_acquire(stem + "/" + std::to_string(i % kHotKeys), 10s,
                                 [&, c, i](std::exception_ptr e, std::optional<Lock> got) {
                                   EXPECT_FALSE(e);
                                   if (e || !got) {
                                     loops[c](i + 1);
                                     return;
                                   }
                                   held[c] = std::move(got);
                                   locks->async_release(
                                       *held[c], [&, c, i](std::exception_ptr re, bool ours) {
                                         EXPECT_FALSE(re);
                                         EXPECT_TRUE(ours);
                                         held[c].reset();
                                         loops[c](i + 1);
                                       });
                                 });
      };
      loops[c](static_cast<unsigned>(c));
    }
    std::promise<void> ran_out;
    std::thread runner([&] {
      io.run();
      ran_out.set_value();
    });
    const bool ok = ran_out.get_future().wait_for(10s) == std::future_status::ready;
    if (!ok) io.stop();  // the connection reopened after the shutdown: run() never returns
    runner.join();
    ASSERT_TRUE(ok) << "io_context::run() still busy 10 s after the AsyncLockApi was destroyed "
                       "(round "
                    << round << ")";
  }
}

// Attempts on one free key issued together through one AsyncLockApi reach every node in the same
// order (one connection per node), so the nodes never split their grants among them: each wave
// has exactly one winner, and nobody holds the key while the winner does.
TEST(AsyncRedlockNative, ContendersOnOneHotKeyAlwaysLeaveOneWinner) {
  const Trio& trio = SharedTrio();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));
  const std::string key = Unique("hot");
  constexpr int kWaves = 20;
  constexpr int kContenders = 16;
  for (int wave = 0; wave < kWaves; ++wave) {
    std::vector<std::future<std::optional<Lock>>> attempts;
    // Issued from the io thread in one handler, so they leave in this order on every node.
    std::promise<void> issued;
    asio::post(io.io(), [&] {
      for (int c = 0; c < kContenders; ++c) {
        attempts.push_back(locks.async_try_acquire(key, 10s, asio::use_future));
      }
      issued.set_value();
    });
    issued.get_future().wait();
    std::optional<Lock> winner;
    int granted = 0;
    for (auto& attempt : attempts) {
      auto got = attempt.get();
      if (!got) continue;
      ++granted;
      winner = std::move(got);
    }
    ASSERT_EQ(granted, 1) << "wave " << wave;
    EXPECT_TRUE(locks.async_release(*winner, asio::use_future).get());
  }
}

TEST(AsyncRedlockNative, ContendsWithTheSyncApiWithoutOverlap) {
  const Trio& trio = SharedTrio();
  IoThread io;
  auto sync_api = lockkit::open(trio.url());
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(trio.url()));
  const std::string stem = Unique("contend");
  constexpr int kKeys = 4;
  constexpr int kRounds = 15;
  std::mutex mu;
  std::map<int, std::uint64_t> last_fence;  // guarded by mu
  std::map<int, int> holders;               // guarded by mu
  std::atomic<int> overlaps{0}, out_of_order{0}, done{0};
  auto enter = [&](int k, std::uint64_t fence) {
    std::lock_guard<std::mutex> guard(mu);
    if (holders[k]++ != 0) ++overlaps;
    if (fence <= last_fence[k]) ++out_of_order;
    last_fence[k] = fence;
  };
  auto leave = [&](int k) {
    std::lock_guard<std::mutex> guard(mu);
    --holders[k];
  };
  const RetryPolicy policy{.max_wait = 20s, .initial_delay = 1ms, .max_delay = 5ms};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const int k = (t + r) % kKeys;
        auto lock = sync_api->acquire(stem + std::to_string(k), 10s, policy);
        if (!lock) continue;
        enter(k, lock->fence());
        std::this_thread::yield();
        leave(k);
        EXPECT_TRUE(lock->release());
      }
    });
  }
  constexpr int kCoroutines = 8;
  std::promise<void> all_done;
  for (int c = 0; c < kCoroutines; ++c) {
    asio::co_spawn(
        io.io(),
        [&, c]() -> asio::awaitable<void> {
          for (int r = 0; r < kRounds; ++r) {
            const int k = (c + r) % kKeys;
            auto lock = co_await locks.async_acquire(stem + std::to_string(k), 10s, policy,
                                                     asio::use_awaitable);
            if (!lock) continue;
            enter(k, lock->fence());
            leave(k);
            EXPECT_TRUE(co_await locks.async_release(*lock, asio::use_awaitable));
          }
        },
        [&](std::exception_ptr e) {
          EXPECT_FALSE(e);
          if (++done == kCoroutines) all_done.set_value();
        });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(all_done.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
  std::lock_guard<std::mutex> guard(mu);
  EXPECT_EQ(last_fence.size(), static_cast<std::size_t>(kKeys));
}

}  // namespace
}  // namespace lockkit
