// SPDX-License-Identifier: MIT
// `LockApi`: what code that takes locks uses, plus `with_lock` and argument checks.
#ifndef LOCKKIT_LOCK_API_HPP_
#define LOCKKIT_LOCK_API_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock.hpp"
#include "lockkit/observer.hpp"
#include "lockkit/retry.hpp"

namespace lockkit {

inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::chrono::milliseconds kMinTtl{1};
inline constexpr std::chrono::milliseconds kMaxTtl = std::chrono::hours(24 * 7);

// What `status` and `list` show about a held lease. Never the owner token.
struct LockInfo {
  std::string key;
  std::uint64_t fence = 0;
  std::chrono::milliseconds remaining{0};  // time left by the store's clock
};

// Hands out leased locks on keys. Backends: `memory:`, `noop:`, `sqlite://`, `redis://`,
// `postgres://`; get one with `lockkit::open(url)`, a backend's factory, or `make_lock_api`
// over your own `LeaseStore` (lockkit/backend.hpp).
//   auto api = lockkit::open("memory:");
//   if (auto lock = api->try_acquire("orders/42", std::chrono::seconds(30))) { ... }
// Thread safety: safe to share; calls may run concurrently.
class LOCKKIT_EXPORT LockApi {
 public:
  virtual ~LockApi() = default;
  LockApi(const LockApi&) = delete;
  LockApi& operator=(const LockApi&) = delete;

  // Tries once to take `key` for `ttl`. Returns an empty optional if someone else holds an
  // unexpired lock on it. Throws `std::invalid_argument` for a key outside 1..1024 bytes or a
  // ttl outside 1 ms..7 days, `BackendError` if the store fails (within its timeouts).
  [[nodiscard]] virtual std::optional<Lock> try_acquire(std::string_view key,
                                                        std::chrono::milliseconds ttl) = 0;

  // Retries `try_acquire` with exponential backoff and full jitter until it succeeds or
  // `policy.max_wait` has passed; never sleeps past that deadline. Returns an empty optional if
  // it ran out. Throws like `try_acquire`, and `std::invalid_argument` for a bad policy.
  [[nodiscard]] virtual std::optional<Lock> acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl,
                                                    const RetryPolicy& policy = {});

  // Returns the backend's name, e.g. "memory".
  virtual std::string_view backend() const noexcept = 0;

  // Releases the lease on `key` if `token` owns it (for tools that hold a token, not a `Lock`).
  // Returns false if it did not. Throws `BackendError` if the store fails or the backend cannot.
  virtual bool release(std::string_view key, std::string_view token);
  // Extends the lease on `key` to now + `ttl` if `token` owns it. Returns false if it did not.
  virtual bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds ttl);
  // Returns the current holder's fence and remaining time, or empty if `key` is free.
  virtual std::optional<LockInfo> status(std::string_view key);
  // Returns the held leases whose key starts with `prefix`, sorted by key.
  virtual std::vector<LockInfo> list(std::string_view prefix = {});

  // Sends every later operation of this `LockApi` and of its `Lock`s (also those taken before)
  // to `observer` (null detaches). Costs one pointer check per operation when none is
  // attached. A replaced observer is kept alive (once per distinct observer) until the `LockApi`
  // and every `Lock` it handed out are gone.
  // Every built-in backend and every `make_lock_api` store supports it; a `LockApi` of your
  // own that does not throws `BackendError` with `kUnsupported` (the default).
  virtual void set_observer(std::shared_ptr<LockObserver> observer);

 protected:
  LockApi() = default;
};

// Throws `std::invalid_argument` ("key: must be 1..1024 bytes, got 0") unless `key` is valid.
LOCKKIT_EXPORT void validate_key(std::string_view key);
// Throws `std::invalid_argument` ("ttl: must be 1ms..7d, got 0ms") unless `ttl` is valid.
LOCKKIT_EXPORT void validate_ttl(std::chrono::milliseconds ttl);
// Returns a fresh owner token: 32 lowercase hex characters, 128 bits from the kernel's CSPRNG.
LOCKKIT_EXPORT std::string make_token();

// How `with_lock` takes and holds its lock.
struct WithLockOptions {
  // Renews the lease while the function runs (`Lock::keep_alive`), capped at `max_hold`.
  bool keep_alive = false;
  std::chrono::milliseconds max_hold{0};  // 0 = no cap (see `KeepAliveOptions::max_hold`)
  // Waits for a busy key with this policy (`LockApi::acquire`); empty: tries once.
  std::optional<RetryPolicy> wait{};
};

namespace detail {
template <class R>
struct WithLockResult {
  using type = std::optional<R>;
};
template <>
struct WithLockResult<void> {
  using type = bool;
};

// `fn(lock)` if `fn` takes the lock, else `fn()`.
template <class F>
decltype(auto) call_with_lock(F& fn, const Lock& lock) {
  if constexpr (std::is_invocable_v<F&, const Lock&>) {
    return fn(lock);
  } else {
    return fn();
  }
}

template <class F>
using with_lock_result_t =
    typename std::conditional_t<std::is_invocable_v<F&, const Lock&>,
                                std::invoke_result<F&, const Lock&>, std::invoke_result<F&>>::type;

// Releases `lock` after the function returned; throws `LeaseLost` if the lease was lost before
// (no longer `held()`, or the release found it gone). A store failure of the release is
// rethrown only for a lease not already known lost (the loss is the news).
inline void finish_with_lock(Lock& lock) {
  const bool lost = !lock.held();
  bool ours = false;
  try {
    ours = lock.release();
  } catch (const BackendError&) {
    if (!lost) throw;
  }
  if (lost || !ours) {
    throw LeaseLost(
        "with_lock: the lease was lost before the function returned (it may have overlapped "
        "another holder)");
  }
}
}  // namespace detail

// Runs `fn` while holding `key` for `ttl` and releases the lock afterwards, also when `fn`
// throws (the exception propagates). `fn` takes no argument or `const Lock&` (for the fence and
// `stop_token()` inside the critical section). Returns `fn`'s result in an optional (`true` for
// a void `fn`), or an empty optional (`false`) if the key was busy (after waiting with
// `options.wait`, if given). Throws `LeaseLost` if the lease was lost before `fn` returned (it
// ran past `valid_until()` minus `loss_margin`, the keep-alive lost it, or the release found it
// gone): whatever `fn` did may have overlapped another holder. Throws like `try_acquire` /
// `acquire`. With `options.keep_alive`, the lease is renewed while `fn` runs.
//   lockkit::with_lock(*api, "reports/daily", 30s, {.keep_alive = true},
//                      [&](const lockkit::Lock& lock) { build_report(lock.stop_token()); });
template <class F>
auto with_lock(LockApi& api, std::string_view key, std::chrono::milliseconds ttl,
               const WithLockOptions& options, F&& fn) ->
    typename detail::WithLockResult<detail::with_lock_result_t<F>>::type {
  using R = detail::with_lock_result_t<F>;
  std::optional<Lock> lock =
      options.wait ? api.acquire(key, ttl, *options.wait) : api.try_acquire(key, ttl);
  if (!lock) return {};
  if (options.keep_alive) lock->keep_alive(KeepAliveOptions{.max_hold = options.max_hold});
  if constexpr (std::is_void_v<R>) {
    detail::call_with_lock(fn, *lock);
    detail::finish_with_lock(*lock);
    return true;
  } else {
    std::optional<R> result(detail::call_with_lock(fn, *lock));
    detail::finish_with_lock(*lock);
    return result;
  }
}

// The same with default options: tries once, no keep-alive.
template <class F>
auto with_lock(LockApi& api, std::string_view key, std::chrono::milliseconds ttl, F&& fn) ->
    typename detail::WithLockResult<detail::with_lock_result_t<F>>::type {
  return with_lock(api, key, ttl, WithLockOptions{}, std::forward<F>(fn));
}

}  // namespace lockkit

#endif  // LOCKKIT_LOCK_API_HPP_
