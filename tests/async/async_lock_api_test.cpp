// SPDX-License-Identifier: MIT
// AsyncLockApi on every built backend: futures, coroutines, callbacks and deferred operations,
// handlers on the right executor, store failures reaching the handler, and cancellation racing
// grants without leaving a lease.
#include "lockkit/async.hpp"

#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "support/sanitizers.hpp"
#include "support/temp_dir.hpp"
#ifdef LOCKKIT_ASYNC_TEST_REDIS
#include "support/redis_server.hpp"
#endif
#ifdef LOCKKIT_ASYNC_TEST_POSTGRES
#include "support/io_thread.hpp"
#include "support/postgres_server.hpp"
#endif

namespace lockkit {
namespace {

using namespace std::chrono_literals;

std::string Unique(std::string_view stem) {
  return "async/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

// One LockApi per backend, shared by the binary (servers start once).
std::shared_ptr<LockApi> OpenBackend(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<LockApi>> apis;
  std::lock_guard<std::mutex> guard(mu);
  auto& api = apis[name];
  if (api) return api;
  if (name == "memory") {
    api = lockkit::open("memory:");
  }
#ifdef LOCKKIT_ASYNC_TEST_SQLITE
  if (name == "sqlite") {
    static testing::TempDir dir("lockkit-async-");
    api = lockkit::open("sqlite://" + dir.file("locks.db"));
  }
#endif
#ifdef LOCKKIT_ASYNC_TEST_REDIS
  if (name == "redis") api = lockkit::open(testing::RedisServer::shared().url());
#endif
#ifdef LOCKKIT_ASYNC_TEST_POSTGRES
  if (name == "postgres") {
    api = lockkit::open(testing::PostgresServer::shared().url("schema=async_test"));
  }
#endif
  if (!api) throw std::runtime_error("unknown backend " + name);
  return api;
}

std::vector<std::string> Backends() {
  std::vector<std::string> out{"memory"};
#ifdef LOCKKIT_ASYNC_TEST_SQLITE
  out.push_back("sqlite");
#endif
#ifdef LOCKKIT_ASYNC_TEST_REDIS
  out.push_back("redis");
#endif
#ifdef LOCKKIT_ASYNC_TEST_POSTGRES
  out.push_back("postgres");
#endif
  return out;
}

using testing::IoThread;

bool IsAborted(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& error) {
    return error.code() == asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

class AsyncLockApiTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::shared_ptr<LockApi> api_ = OpenBackend(GetParam());
  IoThread io_;
  AsyncLockApi locks_{io_.io().get_executor(), api_};
};

TEST_P(AsyncLockApiTest, FutureTryAcquireHoldsUntilAsyncRelease) {
  auto key = Unique("future");
  std::future<std::optional<Lock>> first = locks_.async_try_acquire(key, 20s, asio::use_future);
  std::optional<Lock> lock = first.get();
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->key(), key);
  EXPECT_FALSE(locks_.async_try_acquire(key, 20s, asio::use_future).get());
  EXPECT_TRUE(api_->status(key));
  EXPECT_TRUE(locks_.async_extend(*lock, 30s, asio::use_future).get());
  EXPECT_TRUE(locks_.async_release(*lock, asio::use_future).get());
  EXPECT_FALSE(lock->held());
  EXPECT_FALSE(api_->status(key));
  EXPECT_FALSE(locks_.async_release(*lock, asio::use_future).get());  // idempotent
}

TEST_P(AsyncLockApiTest, CoroutineAcquireWaitsForTheHolderAndRunsOnTheExecutor) {
  auto key = Unique("coroutine");
  auto holder = api_->try_acquire(key, 20s);
  ASSERT_TRUE(holder);
  const std::uint64_t holder_fence = holder->fence();
  std::atomic<bool> released{false};
  std::promise<std::uint64_t> fence;
  asio::co_spawn(
      io_.io(),
      [&]() -> asio::awaitable<std::uint64_t> {
        std::optional<Lock> lock = co_await locks_.async_acquire(
            key, 20s, RetryPolicy{.max_wait = 20s, .initial_delay = 1ms, .max_delay = 20ms},
            asio::use_awaitable);
        EXPECT_EQ(std::this_thread::get_id(), io_.id());
        EXPECT_TRUE(released.load()) << "granted while the holder still held it";
        if (!lock) co_return 0;
        const std::uint64_t got = lock->fence();
        EXPECT_TRUE(co_await locks_.async_release(*lock, asio::use_awaitable));
        co_return got;
      },
      [&](std::exception_ptr e, std::uint64_t got) {
        if (e) {
          fence.set_exception(e);
        } else {
          fence.set_value(got);
        }
      });
  auto result = fence.get_future();
  // Contention on purpose: the coroutine's attempts meet a held key for a while.
  EXPECT_EQ(result.wait_for(100ms), std::future_status::timeout);
  released = true;
  ASSERT_TRUE(holder->release());
  EXPECT_GT(result.get(), holder_fence);
  EXPECT_FALSE(api_->status(key));
}

TEST_P(AsyncLockApiTest, CallbacksRunOnTheApiExecutorOrTheBoundOne) {
  auto key = Unique("callback");
  std::promise<std::thread::id> on;
  std::optional<Lock> kept;
  locks_.async_try_acquire(key, 20s, [&](std::exception_ptr e, std::optional<Lock> lock) {
    EXPECT_FALSE(e);
    kept = std::move(lock);
    on.set_value(std::this_thread::get_id());
  });
  EXPECT_EQ(on.get_future().get(), io_.id());
  ASSERT_TRUE(kept);

  IoThread other;
  std::promise<std::thread::id> on_other;
  locks_.async_release(*kept, asio::bind_executor(other.io(), [&](std::exception_ptr e, bool ours) {
    EXPECT_FALSE(e);
    EXPECT_TRUE(ours);
    on_other.set_value(std::this_thread::get_id());
  }));
  EXPECT_EQ(on_other.get_future().get(), other.id());
}

TEST_P(AsyncLockApiTest, DeferredOperationStartsOnlyWhenInvoked) {
  auto key = Unique("deferred");
  auto op = locks_.async_try_acquire(key, 20s, asio::experimental::deferred);
  EXPECT_FALSE(api_->status(key)) << "a deferred operation ran before it was invoked";
  std::promise<std::optional<Lock>> got;
  std::move(op)([&](std::exception_ptr e, std::optional<Lock> lock) {
    EXPECT_FALSE(e);
    got.set_value(std::move(lock));
  });
  auto lock = got.get_future().get();
  ASSERT_TRUE(lock);
  EXPECT_TRUE(api_->status(key));
  EXPECT_TRUE(lock->release());
}

TEST_P(AsyncLockApiTest, InvalidArgumentsReachTheHandler) {
  auto bad_key = locks_.async_try_acquire("", 20s, asio::use_future);
  EXPECT_THROW(bad_key.get(), std::invalid_argument);
  auto bad_ttl = locks_.async_acquire("k", 0ms, {}, asio::use_future);
  EXPECT_THROW(bad_ttl.get(), std::invalid_argument);
  auto bad_policy =
      locks_.async_acquire("k", 1s, RetryPolicy{.initial_delay = 0ms}, asio::use_future);
  EXPECT_THROW(bad_policy.get(), std::invalid_argument);
}

TEST_P(AsyncLockApiTest, AcquireRunsOutWhenTheKeyStaysBusy) {
  auto key = Unique("busy");
  auto holder = api_->try_acquire(key, 20s);
  ASSERT_TRUE(holder);
  const auto start = std::chrono::steady_clock::now();
  auto lock =
      locks_
          .async_acquire(key, 20s,
                         RetryPolicy{.max_wait = 150ms, .initial_delay = 5ms, .max_delay = 20ms},
                         asio::use_future)
          .get();
  EXPECT_FALSE(lock);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
}

// The grant may arrive before, during or after the cancellation: either the handler gets the
// lock, or it gets operation_aborted and the key is free at that moment.
TEST_P(AsyncLockApiTest, CancellationRacingAGrantNeverLeavesALease) {
  const int rounds = testing::kSanitizerBuild ? 20 : 40;
  int aborted = 0;
  int granted = 0;
  for (int i = 0; i < rounds; ++i) {
    auto key = Unique("cancel");
    auto holder = api_->try_acquire(key, 20s);
    ASSERT_TRUE(holder);
    asio::cancellation_signal signal;
    std::promise<std::pair<std::exception_ptr, std::optional<Lock>>> done;
    auto handler = [&](std::exception_ptr e, std::optional<Lock> lock) {
      done.set_value({e, std::move(lock)});
    };
    // Every fourth round cancels a wait on a key that stays held (surely aborted); the others
    // let the grant race the cancellation.
    const bool try_once = i % 4 == 3;
    const bool while_held = i % 4 == 1;
    if (try_once) {
      ASSERT_TRUE(holder->release());
      locks_.async_try_acquire(key, 20s, asio::bind_cancellation_slot(signal.slot(), handler));
    } else if (while_held) {
      locks_.async_acquire(key, 20s,
                           RetryPolicy{.max_wait = 10s, .initial_delay = 1ms, .max_delay = 2ms},
                           asio::bind_cancellation_slot(signal.slot(), handler));
    } else {
      locks_.async_acquire(key, 20s,
                           RetryPolicy{.max_wait = 10s, .initial_delay = 1ms, .max_delay = 2ms},
                           asio::bind_cancellation_slot(signal.slot(), handler));
      ASSERT_TRUE(holder->release());
    }
    // Cancel at a spread of moments around the grant; the signal belongs to the io thread.
    std::this_thread::sleep_for(std::chrono::microseconds(137 * (i % 8)));
    const auto type = i % 3 == 0   ? asio::cancellation_type::terminal
                      : i % 3 == 1 ? asio::cancellation_type::partial
                                   : asio::cancellation_type::total;
    std::promise<void> emitted;
    asio::post(io_.io(), [&signal, &emitted, type] {
      signal.emit(type);
      emitted.set_value();
    });
    auto [error, lock] = done.get_future().get();
    emitted.get_future().wait();  // the signal outlives its emit
    if (while_held) {
      EXPECT_TRUE(error) << "granted while held";
      ASSERT_TRUE(holder->release());
    }
    if (error) {
      ASSERT_TRUE(IsAborted(error));
      EXPECT_FALSE(lock);
      ++aborted;
      EXPECT_FALSE(api_->status(key)) << "a cancelled acquire left a lease";
      auto other = api_->try_acquire(key, 20s);
      ASSERT_TRUE(other);
      EXPECT_TRUE(other->release());
    } else {
      ASSERT_TRUE(lock);
      ++granted;
      EXPECT_TRUE(lock->release());
      EXPECT_FALSE(api_->status(key));
    }
  }
  EXPECT_GT(aborted, 0);
  RecordProperty("aborted", aborted);
  RecordProperty("granted", granted);
}

TEST_P(AsyncLockApiTest, OperationsFromManyThreadsNeverGrantTwice) {
  auto key = Unique("threads");
  constexpr int kThreads = 6;
  const int rounds = GetParam() == "memory" ? 50 : 10;
  std::atomic<int> holders{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> grants{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        auto lock =
            locks_
                .async_acquire(key, 20s,
                               RetryPolicy{.max_wait = 30s, .initial_delay = 1ms, .max_delay = 5ms},
                               asio::use_future)
                .get();
        if (!lock) continue;
        if (holders.fetch_add(1) != 0) ++overlaps;
        ++grants;
        holders.fetch_sub(1);
        EXPECT_TRUE(locks_.async_release(*lock, asio::use_future).get());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(grants.load(), kThreads * rounds);
}

INSTANTIATE_TEST_SUITE_P(Backends, AsyncLockApiTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

// A store that fails every call, as an unreachable one does.
class FailingStore final : public LeaseStore {
 public:
  std::string_view backend() const noexcept override { return "failing"; }
  std::optional<std::uint64_t> acquire(std::string_view, std::string_view,
                                       std::chrono::milliseconds) override {
    throw BackendError("failing", ErrorKind::kUnavailable, "down");
  }
  bool release(std::string_view, std::string_view) override {
    throw BackendError("failing", ErrorKind::kUnavailable, "down");
  }
  bool extend(std::string_view, std::string_view, std::chrono::milliseconds) override {
    throw BackendError("failing", ErrorKind::kUnavailable, "down");
  }
  std::optional<LockInfo> status(std::string_view) override { return std::nullopt; }
  std::vector<LockInfo> list(std::string_view) override { return {}; }
};

void ExpectBackendError(std::future<std::optional<Lock>> f, ErrorKind kind) {
  try {
    (void)f.get();
    ADD_FAILURE() << "no exception";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
  }
}

TEST(AsyncLockApiFailure, StoreFailureReachesTheHandler) {
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), make_lock_api(std::make_shared<FailingStore>()));
  ExpectBackendError(locks.async_try_acquire("k", 1s, asio::use_future), ErrorKind::kUnavailable);
  ExpectBackendError(locks.async_acquire("k", 1s, {}, asio::use_future), ErrorKind::kUnavailable);
  std::promise<bool> callback_saw_error;
  locks.async_try_acquire("k", 1s, [&](std::exception_ptr e, std::optional<Lock>) {
    callback_saw_error.set_value(e != nullptr);
  });
  EXPECT_TRUE(callback_saw_error.get_future().get());
}

#ifdef LOCKKIT_ASYNC_TEST_REDIS
TEST(AsyncLockApiFailure, UnreachableRedisReachesTheHandler) {
  IoThread io;
  // A port nobody listens on: a server started and stopped again.
  testing::RedisServer server;
  const std::string url = server.url("?connect_timeout=300ms&command_timeout=300ms");
  server.stop();
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(url));
  try {
    (void)locks.async_try_acquire("k", 1s, asio::use_future).get();
    ADD_FAILURE() << "no exception";
  } catch (const BackendError& e) {
    EXPECT_STREQ(e.backend(), "redis");
    EXPECT_TRUE(e.retryable()) << e.what();
  }
}
#endif

#ifdef LOCKKIT_ASYNC_TEST_POSTGRES
TEST(AsyncLockApiFailure, PostgresWrongPasswordReachesTheHandler) {
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(),
                     lockkit::open(testing::PostgresServer::shared().url_with_password("wrong") +
                                   "?schema=async_test"));
  ExpectBackendError(locks.async_try_acquire("k", 1s, asio::use_future), ErrorKind::kAuth);
}
#endif

TEST(AsyncLockApiConstruction, NullApiIsRefused) {
  asio::io_context io;
  EXPECT_THROW(AsyncLockApi(io.get_executor(), nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace lockkit
