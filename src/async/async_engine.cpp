// SPDX-License-Identifier: MIT
// AsyncLockApi's engine: acquires as state machines on the executor (timers between attempts),
// store calls on a small shared pool.
#include <pthread.h>

#include <asio/error.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "async/async_keeper.hpp"
#include "async/blocking_pool.hpp"
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
#include "async/redis_native_client.hpp"
#include "async/redlock_native_client.hpp"
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
#include "async/postgres_native_client.hpp"
#endif
#include "lockkit/async.hpp"

namespace lockkit {

namespace detail {

namespace {

// The blocking pool of one process. fork() copies the pool object into the child but none of its
// threads, so a child starts a pool of its own (a generation) on first use.
struct PoolGeneration {
  asio::thread_pool pool{kBlockingThreads};
  // The parent's generation, abandoned when this process was forked. Deliberately leaked, never
  // joined or destroyed: its threads do not exist here, so joining them would wait forever (or
  // crash), and its queued work belongs to the parent. Kept reachable, so leak checkers stay quiet.
  PoolGeneration* inherited = nullptr;
};

// Constant-initialised and trivially destructible: valid at any time, also during exit.
std::atomic<PoolGeneration*> g_pool{nullptr};
PoolGeneration* g_inherited = nullptr;  // written only by the child handler, single-threaded

// pthread_atfork child handler: the only thread of the new process runs it, before fork returns.
void abandon_inherited_pool() noexcept {
  if (PoolGeneration* parents = g_pool.exchange(nullptr)) g_inherited = parents;
}

// Made on the first use in a process: registers the handler (which the children inherit, so
// once) and, at exit, joins this process's own pool, as a plain static pool would be.
struct PoolReaper {
  PoolReaper() {
    // Its only failure is ENOMEM; the next call tries again.
    if (::pthread_atfork(nullptr, nullptr, &abandon_inherited_pool) != 0) throw std::bad_alloc();
  }
  ~PoolReaper() { delete g_pool.exchange(nullptr); }
  PoolReaper(const PoolReaper&) = delete;
  PoolReaper& operator=(const PoolReaper&) = delete;
};

}  // namespace

asio::thread_pool& blocking_pool() {
  static PoolReaper reaper;
  PoolGeneration* current = g_pool.load(std::memory_order_acquire);
  if (current == nullptr) {
    // No lock: a mutex held by a parent's thread at fork() would stay locked in the child.
    auto fresh = std::make_unique<PoolGeneration>();
    fresh->inherited = g_inherited;
    if (g_pool.compare_exchange_strong(current, fresh.get(), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      current = fresh.release();
    }
    // Else another thread was first: `fresh` joins its idle threads on the way out.
  }
  return current->pool;
}

struct AsyncEngine::Native {
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
  std::shared_ptr<RedisNativeClient> redis{};
  std::shared_ptr<RedlockNativeClient> redlock{};  // redlock:// (redis is null then)
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
  std::shared_ptr<PostgresNativeClient> postgres{};
#endif
};

// Posts keep-alive callbacks to the executor, from keeper threads, until the engine is
// destroyed: the executor's context may be destroyed right after that, so nothing may be
// posted to it any more. Posting under the mutex makes the close wait for a post under way.
struct AsyncEngine::Gate {
  explicit Gate(asio::any_io_executor executor) : ex(std::move(executor)) {}

  template <class F>
  void post(F f) noexcept {
    std::lock_guard<std::mutex> guard(mu);
    if (!open) return;
    try {
      asio::post(ex, std::move(f));
    } catch (...) {  // out of memory: the callback is lost, the stop token still works
    }
  }
  void close() noexcept {
    std::shared_ptr<AsyncKeeper> gone;
    {
      std::lock_guard<std::mutex> guard(mu);
      open = false;
      gone = std::move(keeper);
    }
    // Its leases are handed to the keeper's thread (watched, no longer renewed): no gate lock.
    if (gone) close_async_keeper(*gone);
  }

  // Returns the keeper that renews this engine's kept-alive locks on the executor (made on
  // first use); null once closed.
  std::shared_ptr<AsyncKeeper> keeper_of_executor() {
    std::lock_guard<std::mutex> guard(mu);
    if (open && !keeper) keeper = make_async_keeper(ex);
    return keeper;
  }

  std::mutex mu;
  const asio::any_io_executor ex;
  bool open = true;                     // guarded by mu
  std::shared_ptr<AsyncKeeper> keeper;  // guarded by mu
};

namespace {

using Steady = std::chrono::steady_clock;

std::exception_ptr aborted() {
  return std::make_exception_ptr(
      std::system_error(asio::error::make_error_code(asio::error::operation_aborted)));
}

}  // namespace

// One async_try_acquire or async_acquire: attempts on the pool, backoff waits on a timer of the
// executor. Every step runs under mu_, so a cancellation from any thread sees one state.
// Ownership: exactly one step holds the reference that keeps the operation alive (the queued
// attempt, the timer wait, and at the end the posted handler), so that the operation, and its
// timer, die on the handler's executor, never on a pool thread after the handler ran.
class AsyncAcquireOperation {
 public:
  using Ptr = std::shared_ptr<AsyncAcquireOperation>;

  AsyncAcquireOperation(std::shared_ptr<AsyncEngine> engine, std::string key,
                        std::chrono::milliseconds ttl, std::optional<RetryPolicy> policy,
                        std::unique_ptr<AsyncAcquireSink> sink)
      : io_work_(asio::make_work_guard(engine->executor())),
        engine_(std::move(engine)),
        key_(std::move(key)),
        ttl_(ttl),
        policy_(policy),
        sink_(std::move(sink)) {}

  static void start(Ptr self) noexcept {
    try {
      if (self->policy_) validate_retry_policy(*self->policy_);
      validate_key(self->key_);
      validate_ttl(self->ttl_);
    } catch (...) {
      finish(std::move(self), std::current_exception(), std::nullopt);
      return;
    }
    if (self->policy_) self->deadline_ = Steady::now() + self->policy_->max_wait;
    attempt(std::move(self));
  }

  void cancel() noexcept {
    std::lock_guard<std::mutex> guard(mu_);
    if (finished_ || cancelled_) return;
    cancelled_ = true;
    // A wait ends now (the timer's handler completes the operation); an attempt in flight
    // completes it when it returns, after releasing what it may have been granted.
    if (waiting_) timer_->cancel();
  }

 private:
  static void attempt(Ptr self) noexcept {
    {
      std::unique_lock<std::mutex> lock(self->mu_);
      if (self->cancelled_) {
        lock.unlock();
        finish(std::move(self), aborted(), std::nullopt);
        return;
      }
      ++self->attempts_;
    }
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
    if (const auto& native = self->engine_->native();
        native && (native->redis || native->redlock)) {
      auto& op = *self;
      if (native->redlock) {
        redlock_native_try_acquire(native->redlock, op.key_, op.ttl_, std::move(self), &on_attempt);
        return;
      }
      native_try_acquire(native->redis, op.key_, op.ttl_, std::move(self), &on_attempt);
      return;
    }
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
    if (const auto& native = self->engine_->native(); native && native->postgres) {
      auto& op = *self;
      if (native_try_acquire(native->postgres, op.key_, op.ttl_, self, &on_attempt)) return;
    }
#endif
    // Only out of memory makes post throw; noexcept then ends the program.
    asio::post(blocking_pool(),
               [self = std::move(self)]() mutable { attempt_blocking(std::move(self)); });
  }

  // On a pool thread.
  static void attempt_blocking(Ptr self) noexcept {
    {
      std::unique_lock<std::mutex> guard(self->mu_);
      if (self->cancelled_) {  // cancelled while queued: nothing was sent
        guard.unlock();
        finish(std::move(self), aborted(), std::nullopt);
        return;
      }
    }
    std::optional<Lock> lock;
    std::exception_ptr error;
    try {
      lock = self->engine_->api()->try_acquire(self->key_, self->ttl_);
    } catch (...) {
      error = std::current_exception();
    }
    on_attempt(std::move(self), std::move(error), std::move(lock));
  }

  static void on_attempt(Ptr self, std::exception_ptr error, std::optional<Lock> lock) noexcept {
    std::unique_lock<std::mutex> guard(self->mu_);
    if (self->cancelled_) {
      guard.unlock();
      // Granted after the cancellation: give it back before saying "aborted", so that the
      // caller never finds a lease of its own left on the store.
      if (lock) {
        give_back(std::move(self), std::move(*lock));
        return;
      }
      finish(std::move(self), aborted(), std::nullopt);
      return;
    }
    if (error || lock || !self->policy_) {
      guard.unlock();
      finish(std::move(self), std::move(error), std::move(lock));
      return;
    }
    const auto now = Steady::now();
    if (now >= self->deadline_) {
      guard.unlock();
      finish(std::move(self), nullptr, std::nullopt);
      return;
    }
    auto delay = std::chrono::duration_cast<Steady::duration>(
        backoff_delay(*self->policy_, self->attempts_ - 1));
    if (delay > self->deadline_ - now) delay = self->deadline_ - now;  // lands on the deadline
    // Made on the first wait: a single attempt (async_try_acquire) needs none.
    if (!self->timer_) self->timer_.emplace(self->engine_->executor());
    self->timer_->expires_after(delay);
    self->waiting_ = true;
    auto& timer = *self->timer_;
    timer.async_wait([self = std::move(self)](const std::error_code&) mutable {
      {
        std::lock_guard<std::mutex> guard(self->mu_);
        self->waiting_ = false;
      }
      attempt(std::move(self));  // sees a cancellation that came meanwhile
    });
  }

  // Completes the operation with "aborted" once the native release of its late grant is done.
  class GiveBackSink final : public AsyncBoolSink {
   public:
    GiveBackSink(Ptr op, std::shared_ptr<Lock> held) : op_(std::move(op)), held_(std::move(held)) {}
    void complete(std::exception_ptr, bool) noexcept override {
      finish(std::move(op_), aborted(), std::nullopt);
    }

   private:
    Ptr op_;
    std::shared_ptr<Lock> held_;  // the released lock, alive until the release is done
  };

  // Releases a grant that came after the cancellation, then completes with "aborted". Never
  // blocks the executor: natively, or on the pool.
  static void give_back(Ptr self, Lock lock) noexcept {
    auto held = std::make_shared<Lock>(std::move(lock));
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
    if (const auto& native = self->engine_->native();
        native && (native->redis || native->redlock)) {
      std::shared_ptr<AsyncBoolSink> sink = std::make_shared<GiveBackSink>(self, held);
      if (native->redlock ? redlock_native_release(native->redlock, *held, sink)
                          : native_release(native->redis, *held, sink)) {
        return;
      }
    }
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
    if (const auto& native = self->engine_->native(); native && native->postgres) {
      std::shared_ptr<AsyncBoolSink> sink = std::make_shared<GiveBackSink>(self, held);
      if (native_release(native->postgres, *held, sink)) return;
    }
#endif
    asio::post(blocking_pool(), [self = std::move(self), held]() mutable {
      try {
        (void)held->release();
      } catch (...) {  // the destructor tries once more; the lease then expires by its TTL
      }
      finish(std::move(self), aborted(), std::nullopt);
    });
  }

  static void finish(Ptr self, std::exception_ptr error, std::optional<Lock> lock) noexcept {
    std::unique_ptr<AsyncAcquireSink> sink;
    {
      std::lock_guard<std::mutex> guard(self->mu_);
      if (self->finished_) return;
      self->finished_ = true;
      sink = std::move(self->sink_);
    }
    AsyncAcquireSink& target = *sink;
    // The sink goes with the handler: nothing of the operation is left on this thread.
    std::shared_ptr<void> keep =
        std::make_shared<std::pair<Ptr, std::unique_ptr<AsyncAcquireSink>>>(std::move(self),
                                                                            std::move(sink));
    target.complete(std::move(error), std::move(lock), std::move(keep));
  }

  // Keeps the executor's context running until this operation, its timer and (through
  // engine_) a native connection are gone, wherever the last reference drops (a handler bound
  // to another executor, e.g. use_future's): destroyed last.
  asio::executor_work_guard<asio::any_io_executor> io_work_;
  const std::shared_ptr<AsyncEngine> engine_;
  const std::string key_;
  const std::chrono::milliseconds ttl_;
  const std::optional<RetryPolicy> policy_;
  Steady::time_point deadline_{};
  std::mutex mu_;
  std::unique_ptr<AsyncAcquireSink> sink_;   // guarded by mu_; null once finished
  std::optional<asio::steady_timer> timer_;  // guarded by mu_
  unsigned attempts_ = 0;                    // guarded by mu_
  bool waiting_ = false;                     // guarded by mu_
  bool cancelled_ = false;                   // guarded by mu_
  bool finished_ = false;                    // guarded by mu_
};

AsyncEngine::AsyncEngine(asio::any_io_executor ex, std::shared_ptr<LockApi> api)
    : ex_(std::move(ex)), api_(std::move(api)) {
  if (!api_) throw std::invalid_argument("api: must not be null");
  if (!ex_) throw std::invalid_argument("ex: must be a valid executor");
  gate_ = std::make_shared<Gate>(ex_);
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
  if (auto redis = make_redis_native(ex_, api_)) {
    native_ = std::make_shared<Native>();
    native_->redis = std::move(redis);
  } else if (auto redlock = make_redlock_native(ex_, api_)) {
    native_ = std::make_shared<Native>();
    native_->redlock = std::move(redlock);
  }
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
  if (!native_) {
    if (auto postgres = make_postgres_native(ex_, api_)) {
      native_ = std::make_shared<Native>();
      native_->postgres = std::move(postgres);
    }
  }
#endif
}

AsyncEngine::~AsyncEngine() {
  gate_->close();
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
  if (native_ && native_->redis) native_shutdown(native_->redis);
  if (native_ && native_->redlock) redlock_native_shutdown(native_->redlock);
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
  if (native_ && native_->postgres) native_shutdown(native_->postgres);
#endif
}

std::shared_ptr<AsyncAcquireOperation> AsyncEngine::make_acquire(
    const std::shared_ptr<AsyncEngine>& engine, std::string key, std::chrono::milliseconds ttl,
    std::optional<RetryPolicy> policy, std::unique_ptr<AsyncAcquireSink> sink) {
  return std::make_shared<AsyncAcquireOperation>(engine, std::move(key), ttl, policy,
                                                 std::move(sink));
}

void AsyncEngine::start(std::shared_ptr<AsyncAcquireOperation> op) {
  AsyncAcquireOperation::start(std::move(op));
}

void AsyncEngine::cancel(const std::shared_ptr<AsyncAcquireOperation>& op) noexcept {
  op->cancel();
}

namespace {

class ForwardBoolSink final : public AsyncBoolSink {
 public:
  explicit ForwardBoolSink(std::shared_ptr<AsyncBoolSink> to) : to_(std::move(to)) {}
  void complete(std::exception_ptr error, bool ours) noexcept override {
    to_->complete(std::move(error), ours);
  }

 private:
  std::shared_ptr<AsyncBoolSink> to_;
};

// Runs `call` (returning bool) on the pool and hands its outcome to `sink`.
template <class Call>
void run_bool(std::unique_ptr<AsyncBoolSink> sink, Call call) {
  std::shared_ptr<AsyncBoolSink> shared(std::move(sink));
  try {
    asio::post(blocking_pool(), [shared, call = std::move(call)]() mutable noexcept {
      bool ours = false;
      std::exception_ptr error;
      try {
        ours = call();
      } catch (...) {
        error = std::current_exception();
      }
      shared->complete(std::move(error), ours);
    });
  } catch (...) {
    shared->complete(std::current_exception(), false);
  }
}

}  // namespace

void AsyncEngine::start_release(const std::shared_ptr<AsyncEngine>& engine, Lock& lock,
                                std::unique_ptr<AsyncBoolSink> sink) {
#ifdef LOCKKIT_ASYNC_NATIVE_POSTGRES
  if (engine->native_ && engine->native_->postgres) {
    std::shared_ptr<AsyncBoolSink> shared(std::move(sink));
    if (native_release(engine->native_->postgres, lock, shared)) return;
    sink.reset(new ForwardBoolSink(std::move(shared)));
  }
#endif
#ifdef LOCKKIT_ASYNC_NATIVE_REDIS
  if (engine->native_ && (engine->native_->redis || engine->native_->redlock)) {
    std::shared_ptr<AsyncBoolSink> shared(std::move(sink));
    const auto& native = *engine->native_;
    if (native.redlock ? redlock_native_release(native.redlock, lock, shared)
                       : native_release(native.redis, lock, shared)) {
      return;
    }
    sink.reset(new ForwardBoolSink(std::move(shared)));
  }
#else
  (void)engine;
#endif
  run_bool(std::move(sink), [&lock] { return lock.release(); });
}

void AsyncEngine::start_extend(const std::shared_ptr<AsyncEngine>&, Lock& lock,
                               std::chrono::milliseconds ttl, std::unique_ptr<AsyncBoolSink> sink) {
  run_bool(std::move(sink), [&lock, ttl] { return lock.extend(ttl); });
}

void AsyncEngine::keep_alive(const std::shared_ptr<AsyncEngine>& engine, Lock& lock,
                             KeepAliveOptions options) {
  // The keeper calls these on its own threads; the user's run on the executor instead. An error
  // still queued there when the loss is posted is dropped: none is reported after `on_lost`.
  auto lost = std::make_shared<std::atomic<bool>>(false);
  if (options.on_lost) {
    options.on_lost = [gate = engine->gate_, lost,
                       f = std::move(options.on_lost)](std::string_view reason) {
      lost->store(true, std::memory_order_release);
      gate->post([f, reason = std::string(reason)] { f(reason); });
    };
  }
  if (options.on_renewal_error) {
    options.on_renewal_error = [gate = engine->gate_, lost,
                                f = std::move(options.on_renewal_error)](std::string_view error) {
      gate->post([f, lost, error = std::string(error)] {
        if (!lost->load(std::memory_order_acquire)) f(error);
      });
    };
  }
  // The schedule runs on the executor too (a timer there; renewals natively or on the pool).
  KeepAliveAccess::keep_alive_on(lock, as_scheduler(engine->gate_->keeper_of_executor()),
                                 std::move(options));
}

}  // namespace detail

AsyncLockApi::AsyncLockApi(executor_type ex, std::shared_ptr<LockApi> api)
    : engine_(std::make_shared<detail::AsyncEngine>(std::move(ex), std::move(api))) {}

}  // namespace lockkit
