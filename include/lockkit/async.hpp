// SPDX-License-Identifier: MIT
// `AsyncLockApi`: the `LockApi` on asio, with futures, C++20 coroutines, callbacks and deferred
// operations from one set of initiating functions. Component `async` (`lockkit::async`).
#ifndef LOCKKIT_ASYNC_HPP_
#define LOCKKIT_ASYNC_HPP_

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "lockkit/export.hpp"
#include "lockkit/lock.hpp"
#include "lockkit/lock_api.hpp"
#include "lockkit/retry.hpp"

namespace lockkit {

namespace detail {

// Receives the outcome of one acquire, exactly once, on any thread. `keep` is released on the
// handler's executor after the handler ran: the operation's last reference, so that whatever it
// owns on the executor (a timer) is destroyed there and never on an internal thread.
class AsyncAcquireSink {
 public:
  virtual ~AsyncAcquireSink() = default;
  virtual void complete(std::exception_ptr error, std::optional<Lock> lock,
                        std::shared_ptr<void> keep) noexcept = 0;
};

// Receives the outcome of one release or extend, exactly once, on any thread.
class AsyncBoolSink {
 public:
  virtual ~AsyncBoolSink() = default;
  virtual void complete(std::exception_ptr error, bool ours) noexcept = 0;
};

class AsyncAcquireOperation;  // one pending acquire (src/async/async_engine.cpp)

// What an `AsyncLockApi` runs on: the executor, the `LockApi`, the blocking pool or the store's
// native async path. Shared by the operations, so it outlives the `AsyncLockApi` while they run.
class LOCKKIT_EXPORT AsyncEngine {
 public:
  AsyncEngine(asio::any_io_executor ex, std::shared_ptr<LockApi> api);
  ~AsyncEngine();
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  const asio::any_io_executor& executor() const noexcept { return ex_; }
  const std::shared_ptr<LockApi>& api() const noexcept { return api_; }

  // Returns an acquire that has not started yet (so that a cancellation slot can be attached
  // before anything can complete). `policy` empty: one attempt.
  static std::shared_ptr<AsyncAcquireOperation> make_acquire(
      const std::shared_ptr<AsyncEngine>& engine, std::string key, std::chrono::milliseconds ttl,
      std::optional<RetryPolicy> policy, std::unique_ptr<AsyncAcquireSink> sink);
  // Starts `op`, handing over the caller's reference: the caller keeps none.
  static void start(std::shared_ptr<AsyncAcquireOperation> op);
  static void cancel(const std::shared_ptr<AsyncAcquireOperation>& op) noexcept;

  static void start_release(const std::shared_ptr<AsyncEngine>& engine, Lock& lock,
                            std::unique_ptr<AsyncBoolSink> sink);
  static void start_extend(const std::shared_ptr<AsyncEngine>& engine, Lock& lock,
                           std::chrono::milliseconds ttl, std::unique_ptr<AsyncBoolSink> sink);
  static void keep_alive(const std::shared_ptr<AsyncEngine>& engine, Lock& lock,
                         KeepAliveOptions options);

  struct Gate;  // posts to the executor while the engine lives

  struct Native;  // the store's own async path, if it has one
  const std::shared_ptr<Native>& native() const noexcept { return native_; }

 private:
  asio::any_io_executor ex_;
  std::shared_ptr<LockApi> api_;
  std::shared_ptr<Native> native_;
  std::shared_ptr<Gate> gate_;
};

// Holds the handler and a work guard on its executor; completes by posting the handler there,
// so it never runs on the thread that finished the store call. The guard is held until the
// post has returned, so that the executor's context cannot run out of work (and be torn down)
// while this thread is still inside it.
template <class Handler, class... Args>
class HandlerSink {
 public:
  using Executor = asio::associated_executor_t<Handler, asio::any_io_executor>;

  HandlerSink(Handler handler, const asio::any_io_executor& fallback)
      : work_(asio::make_work_guard(asio::get_associated_executor(handler, fallback))),
        slot_(asio::get_associated_cancellation_slot(handler)),
        handler_(std::move(handler)) {}

  void finish(std::shared_ptr<void> keep, Args... args) noexcept {
    // Locals only from here: `keep` may own this sink, and the handler may have run (and
    // destroyed it) before post returns.
    asio::executor_work_guard<Executor> work(std::move(work_));
    Executor ex = work.get_executor();
    asio::post(std::move(ex), [handler = std::move(handler_), slot = slot_, work,
                               keep = std::move(keep), ... values = std::move(args)]() mutable {
      // The operation is over: its cancellation handler must not run any more.
      if (slot.is_connected()) slot.clear();
      std::move(handler)(std::move(values)...);
    });
  }

 private:
  asio::executor_work_guard<Executor> work_;
  asio::cancellation_slot slot_;
  Handler handler_;
};

template <class Handler>
class AcquireHandlerSink final : public AsyncAcquireSink {
 public:
  AcquireHandlerSink(Handler handler, const asio::any_io_executor& fallback)
      : sink_(std::move(handler), fallback) {}
  void complete(std::exception_ptr error, std::optional<Lock> lock,
                std::shared_ptr<void> keep) noexcept override {
    sink_.finish(std::move(keep), std::move(error), std::move(lock));
  }

 private:
  HandlerSink<Handler, std::exception_ptr, std::optional<Lock>> sink_;
};

template <class Handler>
class BoolHandlerSink final : public AsyncBoolSink {
 public:
  BoolHandlerSink(Handler handler, const asio::any_io_executor& fallback)
      : sink_(std::move(handler), fallback) {}
  void complete(std::exception_ptr error, bool ours) noexcept override {
    sink_.finish(nullptr, std::move(error), ours);
  }

 private:
  HandlerSink<Handler, std::exception_ptr, bool> sink_;
};

// Installed in the handler's cancellation slot: cancels the acquire (any cancellation type).
class AcquireCanceller {
 public:
  explicit AcquireCanceller(std::weak_ptr<AsyncAcquireOperation> op) : op_(std::move(op)) {}
  void operator()(asio::cancellation_type type) const noexcept {
    if (type == asio::cancellation_type::none) return;
    if (auto op = op_.lock()) AsyncEngine::cancel(op);
  }

 private:
  std::weak_ptr<AsyncAcquireOperation> op_;
};

struct InitiateAcquire {
  std::shared_ptr<AsyncEngine> engine;

  template <class Handler>
  void operator()(Handler&& handler, std::string key, std::chrono::milliseconds ttl,
                  std::optional<RetryPolicy> policy) const {
    using H = std::decay_t<Handler>;
    asio::cancellation_slot slot = asio::get_associated_cancellation_slot(handler);
    auto op = AsyncEngine::make_acquire(engine, std::move(key), ttl, policy,
                                        std::make_unique<AcquireHandlerSink<H>>(
                                            std::forward<Handler>(handler), engine->executor()));
    if (slot.is_connected()) slot.template emplace<AcquireCanceller>(op);
    AsyncEngine::start(std::move(op));
  }
};

struct InitiateRelease {
  std::shared_ptr<AsyncEngine> engine;

  template <class Handler>
  void operator()(Handler&& handler, Lock* lock) const {
    using H = std::decay_t<Handler>;
    AsyncEngine::start_release(
        engine, *lock,
        std::make_unique<BoolHandlerSink<H>>(std::forward<Handler>(handler), engine->executor()));
  }
};

struct InitiateExtend {
  std::shared_ptr<AsyncEngine> engine;

  template <class Handler>
  void operator()(Handler&& handler, Lock* lock, std::chrono::milliseconds ttl) const {
    using H = std::decay_t<Handler>;
    AsyncEngine::start_extend(
        engine, *lock, ttl,
        std::make_unique<BoolHandlerSink<H>>(std::forward<Handler>(handler), engine->executor()));
  }
};

}  // namespace detail

// The `LockApi` on asio: every operation is an asio asynchronous operation, so the completion
// token picks how its result arrives.
//   asio::io_context io;
//   lockkit::AsyncLockApi locks(io.get_executor(), lockkit::open("redis://127.0.0.1:6379"));
//   std::future<std::optional<lockkit::Lock>> f =
//       locks.async_try_acquire("orders/42", 30s, asio::use_future);
//   // in a coroutine:
//   std::optional<lockkit::Lock> lock =
//       co_await locks.async_acquire("orders/42", 30s, {}, asio::use_awaitable);
// Tokens: `asio::use_future`, `asio::use_awaitable`, a plain callback, and deferred operations
// (`asio::experimental::deferred` in asio 1.22) all work. Argument errors
// (`std::invalid_argument`) and store failures (`BackendError`) reach the handler as its
// `std::exception_ptr`; the initiating functions do not throw them.
//
// Where the work runs: handlers always run on the handler's associated executor (by default
// this `AsyncLockApi`'s executor), never on an internal thread and never inside the initiating
// function. Backoff waits of `async_acquire` are `asio::steady_timer`s on the executor: a
// waiting acquire holds no thread. Store calls run on a pool of 4 threads shared by every
// `AsyncLockApi` of the process (see docs/async.md), which bounds how many store calls are in
// flight at once.
//
// Cancellation: `async_try_acquire` and `async_acquire` honour their handler's cancellation slot
// (`asio::bind_cancellation_slot`, or what `use_awaitable` and parallel groups attach), for
// terminal, partial and total cancellation alike. A cancelled acquire completes with a
// `std::system_error` holding `asio::error::operation_aborted` as its exception, and never leaves
// a lease behind: a grant that arrives after the cancellation is released first, and the
// handler runs only once that release is done (at most the attempt in flight and one release
// later). `async_release` and `async_extend` are not cancellable: they complete when the store
// has answered, within its command timeout.
//
// Lifetime: every operation keeps its handler's executor busy (outstanding work) until it has
// completed; let `run()` return by itself (rather than `stop()`) before destroying the
// io_context, and destroy the `AsyncLockApi` first: a native `redis://` connection keeps
// `run()` busy while the `AsyncLockApi` exists.
// Thread safety: safe to share; operations may be started from any thread. A `Lock` passed to
// `async_release` or `async_extend` must stay alive and untouched until the handler runs.
class LOCKKIT_EXPORT AsyncLockApi {
 public:
  using executor_type = asio::any_io_executor;

  // Runs operations of `api` on `ex`. Throws `std::invalid_argument` for a null `api`.
  AsyncLockApi(executor_type ex, std::shared_ptr<LockApi> api);

  executor_type get_executor() const noexcept { return engine_->executor(); }
  // Returns the `LockApi` this runs on (for `status`, `list` and the blocking calls).
  LockApi& api() const noexcept { return *engine_->api(); }

  // Tries once to take `key` for `ttl`, like `LockApi::try_acquire`.
  // Completion signature void(std::exception_ptr, std::optional<Lock>): an empty optional if
  // someone else holds the key.
  template <class Token>
  auto async_try_acquire(std::string_view key, std::chrono::milliseconds ttl, Token&& token) {
    return asio::async_initiate<Token, void(std::exception_ptr, std::optional<Lock>)>(
        detail::InitiateAcquire{engine_}, token, std::string(key), ttl,
        std::optional<RetryPolicy>{});
  }

  // Retries like `LockApi::acquire` (exponential backoff with full jitter until
  // `policy.max_wait`), waiting on timers of the executor between attempts.
  // Completion signature void(std::exception_ptr, std::optional<Lock>): an empty optional if
  // `max_wait` ran out.
  template <class Token>
  auto async_acquire(std::string_view key, std::chrono::milliseconds ttl, RetryPolicy policy,
                     Token&& token) {
    return asio::async_initiate<Token, void(std::exception_ptr, std::optional<Lock>)>(
        detail::InitiateAcquire{engine_}, token, std::string(key), ttl,
        std::optional<RetryPolicy>(policy));
  }

  // Releases `lock`, like `Lock::release`. Completion signature void(std::exception_ptr, bool):
  // true if it was still ours.
  template <class Token>
  auto async_release(Lock& lock, Token&& token) {
    return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
        detail::InitiateRelease{engine_}, token, &lock);
  }

  // Extends `lock` to now + `ttl`, like `Lock::extend`. Completion signature
  // void(std::exception_ptr, bool): false if the lease was lost.
  template <class Token>
  auto async_extend(Lock& lock, std::chrono::milliseconds ttl, Token&& token) {
    return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
        detail::InitiateExtend{engine_}, token, &lock, ttl);
  }

  // Renews `lock` in the background until it is released, destroyed or lost, like
  // `Lock::keep_alive(options)` (same schedule, same loss rules, `held()` and `stop_token()`
  // work the same), with all of it on this `AsyncLockApi`'s executor instead of lockkit's keeper
  // threads: a timer there times the renewals and checks the loss deadline, `should_renew` is
  // asked there, `on_lost` and `on_renewal_error` are posted there. Locks of the native
  // `redis://` path are renewed on the executor's connection (those due together pipelined in
  // one round); the others through the store on the blocking pool, due ones in one
  // `extend_many` round per store. Release them with `async_release`: a blocking `release()`
  // on the executor's own thread may wait for a renewal's reply that thread would read (see
  // docs/async.md). If the executor stops running, nothing renews the lock any more and the
  // lease lapses (nor is the loss signalled until it runs again). Once this `AsyncLockApi` is
  // destroyed, its locks are no longer renewed: they run out, their stop tokens are still
  // requested in time, the callbacks are no longer called. Throws `std::invalid_argument` like
  // `Lock::keep_alive`.
  void keep_alive(Lock& lock, KeepAliveOptions options = {}) {
    detail::AsyncEngine::keep_alive(engine_, lock, std::move(options));
  }

 private:
  std::shared_ptr<detail::AsyncEngine> engine_;
};

}  // namespace lockkit

#endif  // LOCKKIT_ASYNC_HPP_
