// SPDX-License-Identifier: MIT
// AsyncLockApi's native postgres:// path: pipelined libpq connections on the executor, the same
// statements as the blocking store (the two contend correctly), and failures mid-flight.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "async/blocking_pool.hpp"
#include "lockkit/async.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "support/io_thread.hpp"
#include "support/postgres_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
using testing::PostgresServer;

PostgresServer& pg() {
  return PostgresServer::shared();
}

std::string Unique(std::string_view stem) {
  return std::string(stem) + make_token().substr(0, 8);
}

// A LockApi on its own schema (fresh table, fresh fences).
std::shared_ptr<LockApi> Open(const std::string& schema, std::string_view more = {}) {
  return lockkit::open(pg().url("schema=" + schema + std::string(more)));
}

// Restarts or resumes the shared server when a test leaves scope, also when it fails midway.
class ServerGuard {
 public:
  ~ServerGuard() {
    if (paused) pg().resume();
    if (stopped) pg().start();
  }
  bool paused = false;
  bool stopped = false;
};

// Holds a session advisory lock (the one the acquire statement takes for `key`) on a connection
// of its own, until destroyed: an acquire of `key` then waits on the server.
class FenceBlocker {
 public:
  explicit FenceBlocker(const std::string& key) : conn_(PQconnectdb(pg().url().c_str()), PQfinish) {
    if (PQstatus(conn_.get()) != CONNECTION_OK) throw std::runtime_error("blocker: no connection");
    const char* values[] = {key.data()};
    const int lengths[] = {static_cast<int>(key.size())};
    const int formats[] = {1};
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(
        PQexecParams(conn_.get(), "SELECT pg_advisory_lock(1819239276, hashtext(md5($1::bytea)))",
                     1, nullptr, values, lengths, formats, 0),
        PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      throw std::runtime_error(std::string("blocker: ") + PQerrorMessage(conn_.get()));
    }
  }

  // Returns how many other sessions wait for an advisory lock.
  int waiters() {
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(
        PQexec(conn_.get(),
               "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"),
        PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return -1;
    return std::atoi(PQgetvalue(r.get(), 0, 0));
  }

 private:
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_;
};

// Occupies every thread of the blocking pool until destroyed (or until a generous bound, so a
// failing test still ends).
class PoolBlocker {
 public:
  PoolBlocker() {
    std::shared_future<void> release = release_.get_future().share();
    for (std::size_t i = 0; i < detail::kBlockingThreads; ++i) {
      auto started = std::make_shared<std::promise<void>>();
      started_.push_back(started->get_future());
      asio::post(detail::blocking_pool(), [release, started] {
        started->set_value();
        release.wait_for(60s);
      });
    }
    for (auto& s : started_) s.wait();
  }
  ~PoolBlocker() { release_.set_value(); }

 private:
  std::promise<void> release_;
  std::vector<std::future<void>> started_;
};

bool IsAborted(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& error) {
    return error.code() == asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

TEST(AsyncPostgresNative, FuturesCoroutinesAndCallbacksGrantAndRelease) {
  auto api = Open(Unique("pgn_tokens_"));
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string key = std::string("k\0ey/", 5) + Unique("");  // bytes, NUL included

  // Futures.
  std::optional<Lock> lock = locks.async_try_acquire(key, 20s, asio::use_future).get();
  ASSERT_TRUE(lock);
  EXPECT_FALSE(locks.async_try_acquire(key, 20s, asio::use_future).get());
  EXPECT_FALSE(api->try_acquire(key, 20s));
  auto info = api->status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, lock->fence());
  EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
  EXPECT_FALSE(lock->held());
  EXPECT_FALSE(api->status(key));
  EXPECT_FALSE(locks.async_release(*lock, asio::use_future).get());  // idempotent

  // A coroutine waits for a sync holder, on the io thread.
  auto holder = api->try_acquire(key, 20s);
  ASSERT_TRUE(holder);
  std::promise<std::uint64_t> fence;
  asio::co_spawn(
      io.io(),
      [&]() -> asio::awaitable<void> {
        std::optional<Lock> got = co_await locks.async_acquire(
            key, 20s, RetryPolicy{.max_wait = 20s, .initial_delay = 1ms, .max_delay = 20ms},
            asio::use_awaitable);
        EXPECT_EQ(std::this_thread::get_id(), io.id());
        const std::uint64_t f = got ? got->fence() : 0;
        if (got) {
          EXPECT_TRUE(co_await locks.async_release(*got, asio::use_awaitable));
        }
        fence.set_value(f);
      },
      asio::detached);
  const std::uint64_t holder_fence = holder->fence();
  ASSERT_TRUE(holder->release());
  EXPECT_GT(fence.get_future().get(), holder_fence);

  // Callbacks, on the io thread.
  std::promise<std::pair<bool, std::thread::id>> called;
  locks.async_try_acquire(key, 20s, [&](std::exception_ptr e, std::optional<Lock> got) {
    EXPECT_FALSE(e);
    auto owned = std::make_shared<Lock>(std::move(*got));
    locks.async_release(*owned, [&, owned](std::exception_ptr e2, bool ours) {
      EXPECT_FALSE(e2);
      called.set_value({ours, std::this_thread::get_id()});
    });
  });
  auto [ours, thread] = called.get_future().get();
  EXPECT_TRUE(ours);
  EXPECT_EQ(thread, io.id());
  EXPECT_FALSE(api->status(key));
}

// prepare=false (for transaction-mode poolers): unnamed statements in the pipeline.
TEST(AsyncPostgresNative, UnpreparedStatementsRunNatively) {
  auto api = Open(Unique("pgn_unprepared_"), "&prepare=false");
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string stem = Unique("unprepared/");
  std::vector<std::future<std::optional<Lock>>> acquires;
  for (int i = 0; i < 16; ++i) {
    acquires.push_back(
        locks.async_try_acquire(stem + std::to_string(i % 8), 20s, asio::use_future));
  }
  std::vector<Lock> held;
  for (auto& f : acquires) {
    if (auto lock = f.get()) held.push_back(std::move(*lock));
  }
  EXPECT_EQ(held.size(), 8u);  // each key once
  for (auto& lock : held) EXPECT_TRUE(locks.async_release(lock, asio::use_future).get());
  EXPECT_TRUE(api->list(stem).empty());
}

// The pool-based path needs a pool thread per acquire in flight: with every pool thread
// blocked, nothing would complete. The native path needs none.
TEST(AsyncPostgresNative, ManyInFlightCompleteWhileEveryPoolThreadIsBlocked) {
  auto api = Open(Unique("pgn_pool_"));
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string stem = Unique("inflight/");
  constexpr int kInFlight = 256;
  auto round = [&](int base) {
    std::vector<std::future<std::optional<Lock>>> acquires;
    for (int i = 0; i < kInFlight; ++i) {
      acquires.push_back(
          locks.async_try_acquire(stem + std::to_string(base + i), 20s, asio::use_future));
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    std::vector<Lock> held;
    for (auto& f : acquires) {
      if (f.wait_until(deadline) != std::future_status::ready) {
        ADD_FAILURE() << "acquires did not complete";
        return held;
      }
      auto lock = f.get();
      if (!lock) {
        ADD_FAILURE() << "not granted";
        continue;
      }
      held.push_back(std::move(*lock));
    }
    return held;
  };
  std::vector<Lock> held;
  std::vector<std::future<bool>> releases;
  {
    PoolBlocker blocked;
    held = round(0);  // the connections are opened meanwhile too
    ASSERT_EQ(held.size(), static_cast<std::size_t>(kInFlight));
    for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (auto& f : releases) {
      ASSERT_EQ(f.wait_until(deadline), std::future_status::ready) << "releases did not complete";
      EXPECT_TRUE(f.get());
    }
  }
  for (auto& lock : held) EXPECT_FALSE(lock.held());
  EXPECT_TRUE(api->list(stem).empty());
}

// Sync and async holders on the same keys: never two at once, and fences strictly increase.
TEST(AsyncPostgresNative, ContendsWithTheSyncApiOnTheSameKeys) {
  const std::string schema = Unique("pgn_contend_");
  auto async_api = Open(schema);
  auto sync_api = Open(schema);
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), async_api);
  constexpr int kKeys = 4;
  const std::string stem = Unique("contend/");
  struct KeyState {
    std::mutex mu;
    bool held = false;
    std::uint64_t last_fence = 0;
  };
  std::vector<KeyState> keys(kKeys);
  std::atomic<int> overlaps{0}, backwards{0}, grants_sync{0}, grants_async{0};
  auto enter = [&](int k, std::uint64_t fence) {
    std::lock_guard<std::mutex> guard(keys[k].mu);
    if (keys[k].held) ++overlaps;
    if (fence <= keys[k].last_fence) ++backwards;
    keys[k].held = true;
    keys[k].last_fence = fence;
  };
  auto leave = [&](int k) {
    std::lock_guard<std::mutex> guard(keys[k].mu);
    keys[k].held = false;
  };
  const auto until = std::chrono::steady_clock::now() + (testing::kSanitizerBuild ? 2s : 1s);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; std::chrono::steady_clock::now() < until; ++i) {
        const int k = i % kKeys;
        auto lock = sync_api->try_acquire(stem + std::to_string(k), 20s);
        if (!lock) continue;
        enter(k, lock->fence());
        ++grants_sync;
        leave(k);
        EXPECT_TRUE(lock->release());
      }
    });
  }
  // Async workers: each a chain of acquire, check, release on the executor, 16 in flight.
  std::atomic<int> running{16};
  std::promise<void> all_done;
  std::function<void(int)> step = [&](int i) {
    if (std::chrono::steady_clock::now() >= until) {
      if (--running == 0) all_done.set_value();
      return;
    }
    const int k = i % kKeys;
    locks.async_try_acquire(
        stem + std::to_string(k), 20s, [&, i, k](std::exception_ptr e, std::optional<Lock> lock) {
          EXPECT_FALSE(e);
          if (!lock) {
            step(i + 1);
            return;
          }
          enter(k, lock->fence());
          ++grants_async;
          leave(k);
          auto owned = std::make_shared<Lock>(std::move(*lock));
          locks.async_release(*owned, [&, i, owned](std::exception_ptr e2, bool ours) {
            EXPECT_FALSE(e2);
            EXPECT_TRUE(ours);
            step(i + 1);
          });
        });
  };
  for (int w = 0; w < 16; ++w) asio::post(io.io(), [&, w] { step(w); });
  for (auto& t : threads) t.join();
  all_done.get_future().wait();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(backwards.load(), 0);
  EXPECT_GT(grants_sync.load(), 0);
  EXPECT_GT(grants_async.load(), 0);
  EXPECT_TRUE(sync_api->list(stem).empty());
}

// Cancellations racing grants: a grant that comes after the cancellation is released.
TEST(AsyncPostgresNative, CancellationRacingGrantsLeavesNoLease) {
  auto api = Open(Unique("pgn_cancel_"));
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string stem = Unique("cancel/");
  constexpr int kOps = 64;
  std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
  std::vector<std::promise<std::pair<std::exception_ptr, std::optional<Lock>>>> done(kOps);
  for (int i = 0; i < kOps; ++i) signals.push_back(std::make_unique<asio::cancellation_signal>());
  // Warm: connections open, statements prepared.
  ASSERT_TRUE(locks.async_try_acquire(stem + "warm", 1s, asio::use_future).get());
  std::promise<void> started;
  asio::post(io.io(), [&] {
    for (int i = 0; i < kOps; ++i) {
      locks.async_acquire(
          stem + std::to_string(i), 20s,
          RetryPolicy{.max_wait = 5s, .initial_delay = 1ms, .max_delay = 2ms},
          asio::bind_cancellation_slot(signals[i]->slot(),
                                       [&, i](std::exception_ptr e, std::optional<Lock> lock) {
                                         done[i].set_value({e, std::move(lock)});
                                       }));
    }
    started.set_value();
  });
  started.get_future().wait();
  // Cancel each at a different moment: before it is sent, while in flight, after the grant.
  for (int i = 0; i < kOps; ++i) {
    std::promise<void> emitted;
    asio::post(io.io(), [&] {
      signals[i]->emit(asio::cancellation_type::terminal);
      emitted.set_value();
    });
    emitted.get_future().wait();
    if (i % 8 == 0) std::this_thread::sleep_for(1ms);  // spreads the moments; not a sync
  }
  int aborted = 0;
  std::vector<Lock> granted;
  for (auto& d : done) {
    auto [error, lock] = d.get_future().get();
    if (error) {
      EXPECT_TRUE(IsAborted(error));
      ++aborted;
    } else if (lock) {
      granted.push_back(std::move(*lock));
    }
  }
  for (auto& lock : granted) EXPECT_TRUE(lock.release());
  for (const auto& info : api->list(stem)) {
    EXPECT_EQ(info.key, stem + "warm") << "a cancelled acquire left a lease";
  }
  EXPECT_GT(aborted, 0);
}

// A server that stops answering: every call in flight fails with BackendError within the
// command timeout (plus scheduling slack), none hangs; the api works again afterwards.
TEST(AsyncPostgresNative, SilentServerFailsCallsWithinTheCommandTimeout) {
  ServerGuard guard;
  auto api = Open(Unique("pgn_silent_"), "&command_timeout=500ms&connect_timeout=500ms");
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string stem = Unique("silent/");
  auto warm = locks.async_try_acquire(stem + "warm", 20s, asio::use_future).get();
  ASSERT_TRUE(warm);
  pg().pause();
  guard.paused = true;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::future<std::optional<Lock>>> acquires;
  for (int i = 0; i < 8; ++i) {
    acquires.push_back(locks.async_try_acquire(stem + std::to_string(i), 20s, asio::use_future));
  }
  auto release = locks.async_release(*warm, asio::use_future);
  for (auto& f : acquires) {
    try {
      (void)f.get();
      ADD_FAILURE() << "granted by a stopped server";
    } catch (const BackendError& e) {
      EXPECT_EQ(std::string(e.backend()), "postgres");
      EXPECT_TRUE(e.kind() == ErrorKind::kInDoubt || e.kind() == ErrorKind::kTimeout) << e.what();
      EXPECT_EQ(std::string(e.what()).find(pg().password()), std::string::npos);
    }
  }
  EXPECT_THROW((void)release.get(), BackendError);
  const auto took = std::chrono::steady_clock::now() - start;
  // The command timeout, the cancel's grace (no confirmation from a stopped server); then each
  // in-doubt acquire's cleanup release fails on the blocking pool within its own connect
  // timeout, before the handler runs (two rounds of the pool's four threads); plus slack.
  EXPECT_LT(took, 500ms + 500ms + 2 * 500ms + 3s) << "took too long";
  pg().resume();
  guard.paused = false;
  auto again = locks.async_try_acquire(stem + "again", 20s, asio::use_future).get();
  ASSERT_TRUE(again);
  EXPECT_TRUE(locks.async_release(*again, asio::use_future).get());
}

// An acquire that waits on the server past its deadline (behind a lock another session holds)
// is cancelled there, as the blocking store does it: it fails with kind timeout (not in doubt:
// the server confirmed it ran nothing), and no statement is left waiting to commit later.
TEST(AsyncPostgresNative, OverdueAcquireIsCancelledOnTheServer) {
  auto api = Open(Unique("pgn_overdue_"), "&command_timeout=300ms");
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string key = Unique("overdue/");
  auto warm = locks.async_try_acquire(key + "warm", 20s, asio::use_future).get();
  ASSERT_TRUE(warm);
  {
    FenceBlocker blocker(key);
    const auto start = std::chrono::steady_clock::now();
    auto pending = locks.async_try_acquire(key, 20s, asio::use_future);
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready) << "an overdue call hangs";
    try {
      (void)pending.get();
      ADD_FAILURE() << "granted behind a held lock";
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
    }
    // The command timeout, then at most the cancel's grace (300 ms here), plus slack.
    EXPECT_LT(std::chrono::steady_clock::now() - start, 300ms + 300ms + 1s);
    EXPECT_EQ(blocker.waiters(), 0) << "the statement still waits on the server";
  }
  EXPECT_FALSE(api->status(key));
  // The connection was replaced: the next call works.
  auto again = locks.async_try_acquire(key, 20s, asio::use_future).get();
  ASSERT_TRUE(again);
  EXPECT_TRUE(locks.async_release(*again, asio::use_future).get());
}

// A child forked while the parent's native connections are open works on connections of its
// own (through an AsyncLockApi of its own: the parent's io thread is not in the child), and the
// parent's connections go on serving the parent.
TEST(AsyncPostgresNative, ForkedChildLeavesTheParentsConnectionsAlone) {
  if (!testing::kForkWithBusyThreads) {
    GTEST_SKIP() << "this sanitizer runtime cannot fork a multithreaded process safely (see "
                    "support/sanitizers.hpp); the release build runs this test";
  }
  auto api = Open(Unique("pgn_fork_"));
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string stem = Unique("fork/");
  auto held = locks.async_try_acquire(stem + "parent", 20s, asio::use_future).get();
  ASSERT_TRUE(held);
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int rc = 0;
    try {
      // Callbacks, not futures: use_future completes through asio's system context, whose
      // threads stayed in the parent.
      asio::io_context child_io;
      auto work = asio::make_work_guard(child_io);
      std::thread runner([&] { child_io.run(); });
      {
        AsyncLockApi child_locks(child_io.get_executor(), api);
        auto acquire = [&](const std::string& key) {
          std::promise<std::optional<Lock>> p;
          child_locks.async_try_acquire(key, 20s,
                                        [&](std::exception_ptr e, std::optional<Lock> lock) {
                                          if (e) {
                                            p.set_exception(e);
                                          } else {
                                            p.set_value(std::move(lock));
                                          }
                                        });
          return p.get_future().get();
        };
        auto busy = acquire(stem + "parent");
        auto mine = acquire(stem + "child");
        if (busy || !mine || mine->fence() <= held->fence()) rc = 1;
        if (mine) {
          std::promise<bool> released;
          child_locks.async_release(
              *mine, [&](std::exception_ptr e, bool ours) { released.set_value(!e && ours); });
          if (!released.get_future().get()) rc = 2;
        }
      }
      work.reset();
      runner.join();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      rc = 3;
    }
    std::fflush(nullptr);
    ::_exit(rc);  // no destructors: the parent's objects are the parent's
  }
  // Bounded: a child whose calls hang (e.g. waiting for the pool's threads, which fork() left
  // behind in the parent) is killed, and the test fails instead of hanging.
  int status = 0;
  pid_t waited = 0;
  for (auto until = std::chrono::steady_clock::now() + 20s;
       (waited = ::waitpid(child, &status, WNOHANG)) == 0 &&
       std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(10ms);
  }
  if (waited == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    FAIL() << "the child's calls hang";
  }
  ASSERT_EQ(waited, child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_TRUE(locks.async_release(*held, asio::use_future).get());
  auto again = locks.async_try_acquire(stem + "parent", 20s, asio::use_future).get();
  ASSERT_TRUE(again);
  EXPECT_TRUE(locks.async_release(*again, asio::use_future).get());
  EXPECT_TRUE(api->list(stem).empty());
}

// The server dies while acquires wait on it (behind a lock another session holds): every one
// fails with BackendError, quickly, none hangs; after a restart the api works again.
TEST(AsyncPostgresNative, ServerKilledMidCallFailsPendingCalls) {
  ServerGuard guard;
  auto api = Open(Unique("pgn_killed_"), "&command_timeout=5s&connect_timeout=1s");
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string key = Unique("killed/");
  ASSERT_TRUE(locks.async_try_acquire(key + "warm", 20s, asio::use_future).get());
  std::vector<std::future<std::optional<Lock>>> acquires;
  {
    FenceBlocker blocker(key);
    for (int i = 0; i < 8; ++i) {
      acquires.push_back(locks.async_try_acquire(key, 20s, asio::use_future));
    }
    // Wait until the server has them (waiting for the advisory lock), not a fixed time.
    const auto wait_until = std::chrono::steady_clock::now() + 5s;
    while (blocker.waiters() < 1 && std::chrono::steady_clock::now() < wait_until) {
      std::this_thread::sleep_for(5ms);
    }
    ASSERT_GE(blocker.waiters(), 1);
    const auto start = std::chrono::steady_clock::now();
    pg().crash();
    guard.stopped = true;
    for (auto& f : acquires) {
      ASSERT_EQ(f.wait_for(4s), std::future_status::ready) << "a call hangs on a dead server";
      try {
        (void)f.get();
        ADD_FAILURE() << "granted by a dead server";
      } catch (const BackendError& e) {
        EXPECT_EQ(std::string(e.backend()), "postgres");
        EXPECT_NE(e.kind(), ErrorKind::kTimeout) << "noticed only by the timeout: " << e.what();
      }
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  }
  pg().start();
  guard.stopped = false;
  std::optional<Lock> again;
  for (int i = 0; i < 50 && !again; ++i) {  // the first attempts may meet the dead connections
    try {
      again = locks.async_try_acquire(key + "again", 20s, asio::use_future).get();
    } catch (const BackendError&) {
    }
  }
  ASSERT_TRUE(again);
  EXPECT_TRUE(locks.async_release(*again, asio::use_future).get());
}

}  // namespace
}  // namespace lockkit
