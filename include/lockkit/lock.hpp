// SPDX-License-Identifier: MIT
// `Lock`: the move-only RAII handle of one held lease, and `LeaseOps`, what it calls back into.
#ifndef LOCKKIT_LOCK_HPP_
#define LOCKKIT_LOCK_HPP_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lockkit/export.hpp"

namespace lockkit {

// What a `Lock` calls back into to release or extend its lease. Implemented by the core for
// every `LeaseStore` (lockkit/backend.hpp), which is what custom backends implement; the
// `sqlite://`, `redis://` and `postgres://` backends implement it themselves. A `Lock` keeps its
// `LeaseOps` alive through a `shared_ptr`, so a lock may outlive the `LockApi` that made it.
// Thread safety: implementations must be safe to call from any thread.
class LOCKKIT_EXPORT LeaseOps {
 public:
  virtual ~LeaseOps() = default;

  // Returns the backend's name, e.g. "redis"; used in messages.
  virtual std::string_view backend() const noexcept = 0;
  // Deletes the lease on `key` if its owner token is `token`. Returns false if it was no longer
  // ours (expired, released, taken over). Throws `BackendError` if the store fails.
  virtual bool release(std::string_view key, std::string_view token) = 0;
  // Moves the lease's expiry to now + `ttl` (store clock) if its owner token is `token`.
  // Returns false if it was no longer ours. Throws `BackendError` if the store fails.
  virtual bool extend(std::string_view key, std::string_view token,
                      std::chrono::milliseconds ttl) = 0;
  // Returns the local time that `valid_until()` is measured against (steady clock by default;
  // the injected clock for `memory:`).
  virtual std::chrono::steady_clock::time_point now() const noexcept {
    return std::chrono::steady_clock::now();
  }
  // Returns the safety margin subtracted from a lease of `ttl` for local validity: clock drift
  // between this host and the store (0 by default; 1% of ttl + 2 ms for network stores).
  virtual std::chrono::milliseconds drift(std::chrono::milliseconds /*ttl*/) const noexcept {
    return std::chrono::milliseconds(0);
  }
  // Releases like `release`; `acquired` is when the lease was taken, by `now()` (the core
  // reports the time held to observers). By default just `release(key, token)`.
  virtual bool release_held(std::string_view key, std::string_view token,
                            std::chrono::steady_clock::time_point /*acquired*/) {
    return release(key, token);
  }
};

namespace detail {
// Opens the core's own `Lock` constructor; only the core makes one.
struct CoreLockTag {
  explicit CoreLockTag() = default;
};
}  // namespace detail

// One held lease on a key: move-only, released by its destructor (best effort) if still held.
//   if (auto lock = api.try_acquire("orders/42", 30s)) {
//     write_with_fence(lock->fence());   // the resource rejects fences lower than it has seen
//   }                                     // released here
// Code must not act on the lock after `valid_until()`: the store may already have expired it.
// Thread safety: one thread at a time, like std::unique_lock; it may move between threads.
class [[nodiscard]] LOCKKIT_EXPORT Lock {
 public:
  // Made by backends after a successful acquisition. `valid_until` must be no later than the
  // store's expiry (request start + ttl - drift). `token` is at most 32 bytes (`make_token`).
  Lock(std::shared_ptr<LeaseOps> ops, std::string key, std::string token, std::uint64_t fence,
       std::chrono::steady_clock::time_point valid_until) noexcept;
  // The same, remembering when the lease was taken (by `ops->now()`, before the request).
  Lock(std::shared_ptr<LeaseOps> ops, std::string key, std::string token, std::uint64_t fence,
       std::chrono::steady_clock::time_point valid_until,
       std::chrono::steady_clock::time_point acquired) noexcept;
  // The core's: a lease of `ttl` taken at `acquired`; copies `key` and `token` (<= 32 bytes).
  Lock(detail::CoreLockTag, std::shared_ptr<LeaseOps> ops, std::string_view key,
       std::string_view token, std::uint64_t fence,
       std::chrono::steady_clock::time_point valid_until,
       std::chrono::steady_clock::time_point acquired, std::chrono::milliseconds ttl) noexcept;

  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  Lock(Lock&& other) noexcept;
  // Releases what this lock holds (best effort), then takes over `other`'s lease.
  Lock& operator=(Lock&& other) noexcept;
  // Releases the lease if still held: one token-checked release bounded by the backend's command
  // timeout; failures go to the error hook (see `set_error_hook`) and are otherwise swallowed.
  ~Lock() noexcept;

  // Returns the key as given to `try_acquire` (arbitrary bytes).
  const std::string& key() const noexcept { return key_; }
  // Returns the owner token: 32 lowercase hex characters (128 random bits). Held inline, so a
  // lock on a short key costs no allocation; empty after a move.
  std::string_view token() const noexcept { return {token_.data(), token_size_}; }
  // Returns the fencing token: strictly greater than every fence issued earlier for this key by
  // the same store, also across releases and expiries.
  std::uint64_t fence() const noexcept { return fence_; }
  // Returns the steady-clock deadline after which the lease may belong to someone else.
  std::chrono::steady_clock::time_point valid_until() const noexcept { return valid_until_; }
  // Returns true if not released (nor moved from, nor known lost) and before `valid_until()`.
  bool held() const noexcept;

  // Releases the lease. Returns true if it was still ours; false if it had expired or been taken
  // over, or was already released (idempotent). Throws `BackendError` if the store fails; the
  // lock then stays releasable (a later call or the destructor tries again).
  bool release();
  // Moves the lease's expiry to now + `ttl` if still ours and returns true; `valid_until()`
  // moves with it. Returns false (and the lock is no longer held) if the lease was lost.
  // Throws `std::invalid_argument` for a ttl outside 1 ms..7 days, `BackendError` if the store
  // fails.
  bool extend(std::chrono::milliseconds ttl);

 private:
  static constexpr std::size_t kMaxTokenBytes = 32;

  void set_token(std::string_view token) noexcept;
  void release_quietly() noexcept;

  std::shared_ptr<LeaseOps> ops_;  // null once released, lost or moved from
  std::string key_;
  std::array<char, kMaxTokenBytes> token_{};
  std::uint8_t token_size_ = 0;
  std::uint64_t fence_ = 0;
  std::chrono::steady_clock::time_point valid_until_;
  std::chrono::steady_clock::time_point acquired_;
};

// Called with the key and the error when a `Lock` destructor's release fails. Must not throw.
using ErrorHook = std::function<void(std::string_view key, const std::exception& error)>;

// Installs `hook` for failed destructor releases (process-wide; empty to remove). The library
// itself never prints.
LOCKKIT_EXPORT void set_error_hook(ErrorHook hook);

}  // namespace lockkit

#endif  // LOCKKIT_LOCK_HPP_
