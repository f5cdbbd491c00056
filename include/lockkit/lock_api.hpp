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
  // Supported by `memory:`, `noop:` and every `make_lock_api` store; the other backends throw
  // `BackendError` with `kUnsupported`.
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

namespace detail {
template <class R>
struct WithLockResult {
  using type = std::optional<R>;
};
template <>
struct WithLockResult<void> {
  using type = bool;
};
}  // namespace detail

// Runs `fn()` while holding `key` for `ttl` and releases the lock afterwards, also when `fn`
// throws (the exception propagates). Returns `fn`'s result in an optional (`true` for a void
// `fn`), or an empty optional (`false`) if the key was busy. Does not wait for a busy key.
template <class F>
auto with_lock(LockApi& api, std::string_view key, std::chrono::milliseconds ttl, F&& fn) ->
    typename detail::WithLockResult<std::invoke_result_t<F&>>::type {
  using R = std::invoke_result_t<F&>;
  auto lock = api.try_acquire(key, ttl);
  if (!lock) return {};
  if constexpr (std::is_void_v<R>) {
    fn();
    lock->release();
    return true;
  } else {
    std::optional<R> result(fn());
    lock->release();
    return result;
  }
}

}  // namespace lockkit

#endif  // LOCKKIT_LOCK_API_HPP_
