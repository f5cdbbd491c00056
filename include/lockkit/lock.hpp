// SPDX-License-Identifier: MIT
// `Lock`: the move-only RAII handle of one held lease, and its keep-alive and loss signal.
#ifndef LOCKKIT_LOCK_HPP_
#define LOCKKIT_LOCK_HPP_

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>

#include "lockkit/export.hpp"

namespace lockkit {

namespace detail {
// Opens the core's own `Lock` constructor; only the core makes one.
struct CoreLockTag {
  explicit CoreLockTag() = default;
};
struct LeaseState;       // the keep-alive and stop state of a lease (src/core/keeper.hpp)
class LeaseOps;          // what a Lock calls back into: the core's, over a LeaseStore
class LockCount;         // keeps a LockApi's LeaseOps alive for one thread's Locks
class LeaseScheduler;    // where renewals run instead of the keeper's threads (AsyncLockApi)
struct KeepAliveAccess;  // opens `keep_alive_on` to the AsyncLockApi
}  // namespace detail

// Thrown by `with_lock` when the lease was lost before the function returned: another holder may
// have taken the key meanwhile, so what the function did must not count as done under the lock.
// Not a `BackendError`: the store may be perfectly healthy.
class LOCKKIT_EXPORT LeaseLost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// How long before `valid_until()` a lease whose renewal is not confirmed counts as lost: its
// stop token is requested and `held()` turns false then. max(10 ms, 2 % of ttl): room for a
// timer that fires late on a loaded machine, so that the holder hears of it before the deadline.
constexpr std::chrono::milliseconds loss_margin(std::chrono::milliseconds ttl) noexcept {
  return ttl / 50 > std::chrono::milliseconds(10) ? ttl / 50 : std::chrono::milliseconds(10);
}

// What `Lock::keep_alive` does besides renewing.
struct KeepAliveOptions {
  // Called once when the lease is lost, with why (never the token). Runs on lockkit's keeper
  // thread (or on the thread whose `extend` found the lease gone; on the executor for
  // `AsyncLockApi::keep_alive`): keep it short, never block.
  std::function<void(std::string_view reason)> on_lost{};
  // 0 = no cap; no renewal is sent after acquisition + max_hold; the lease then runs out (a loss
  // like any other). Caps a holder that is stuck or forgot to release.
  std::chrono::milliseconds max_hold{0};
  // Asked on a keeper thread (the executor for `AsyncLockApi::keep_alive`) before each renewal;
  // false skips it (asked again shortly), so the lease runs towards its end: e.g. "is my worker
  // still making progress?". Empty: always renew.
  std::function<bool()> should_renew{};
  // Called on a keeper thread (the executor for `AsyncLockApi::keep_alive`) after a renewal
  // failed (store error or timeout; the lease is not lost yet, and retries follow), with the
  // error's message. Never called after `on_lost`: an error that would arrive once the lease has
  // been declared lost is dropped.
  std::function<void(std::string_view error)> on_renewal_error{};
};

// One held lease on a key: move-only, released by its destructor (best effort) if still held.
//   if (auto lock = api.try_acquire("orders/42", 30s)) {
//     write_with_fence(lock->fence());   // the resource rejects fences lower than it has seen
//   }                                     // released here
// Code must not act on the lock after `valid_until()`: the store may already have expired it.
// Long critical sections: `keep_alive()` renews the lease in the background, `stop_token()`
// says when it is lost (before `valid_until()`), and the resource should still check the fence.
// Thread safety: one thread at a time, like std::unique_lock; it may move between threads. The
// keep-alive runs on lockkit's own threads (or an AsyncLockApi's executor) and never touches the
// handle, only shared state.
class [[nodiscard]] LOCKKIT_EXPORT Lock {
 public:
  // Locks are made by a `LockApi` (the core, over a backend's `LeaseStore`), never directly.
  // The core's: a lease of `ttl` taken at `acquired`; copies `key` and `token` (<= 32 bytes).
  // Not exported from the shared library: only the core, inside it, calls it.
  LOCKKIT_NO_EXPORT Lock(detail::CoreLockTag, std::shared_ptr<detail::LeaseOps> ops,
                         std::string_view key, std::string_view token, std::uint64_t fence,
                         std::chrono::steady_clock::time_point valid_until,
                         std::chrono::steady_clock::time_point acquired,
                         std::chrono::milliseconds ttl) noexcept;
  // The same, counted in `count` (the core's per thread and `LockApi`) instead of holding a
  // reference of its own, which `count` keeps alive.
  LOCKKIT_NO_EXPORT Lock(detail::CoreLockTag, detail::LockCount& count, std::string_view key,
                         std::string_view token, std::uint64_t fence,
                         std::chrono::steady_clock::time_point valid_until,
                         std::chrono::steady_clock::time_point acquired,
                         std::chrono::milliseconds ttl) noexcept;

  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  Lock(Lock&& other) noexcept;
  // Releases what this lock holds (best effort), then takes over `other`'s lease.
  Lock& operator=(Lock&& other) noexcept;
  // Releases the lease if still held: one token-checked release bounded by the backend's command
  // timeout; failures go to the error hook (see `set_error_hook`) and are otherwise swallowed.
  ~Lock() noexcept;

  // Returns the key as given to `try_acquire` (arbitrary bytes). A key of 16..48 bytes is held
  // inline and its string made by the first call (so that a lock whose key is never asked for
  // costs no allocation); several threads may call it at once, as for every const member.
  const std::string& key() const noexcept {
    if (key_state_.load(std::memory_order_acquire) != kKeyMade) make_key();
    return key_;
  }
  // Returns the owner token: 32 lowercase hex characters (128 random bits). Held inline, so a
  // lock on a short key costs no allocation; empty after a move.
  std::string_view token() const noexcept { return {token_.data(), token_size_}; }
  // Returns the fencing token: strictly greater than every fence issued earlier for this key by
  // the same store, also across releases and expiries.
  std::uint64_t fence() const noexcept { return fence_; }
  // Returns the steady-clock deadline after which the lease may belong to someone else (the
  // store's clock for `memory:` with an injected one). Moves later with each renewal.
  std::chrono::steady_clock::time_point valid_until() const noexcept;
  // Returns true if not released (nor moved from, nor known lost) and before `valid_until()`
  // minus `loss_margin(ttl)`: false from the moment the stop token is requested.
  bool held() const noexcept;

  // Renews the lease from now until it is released, destroyed or lost: every ttl/3 (by the
  // clock of the store's `now()`); after a failed renewal it retries at shorter intervals
  // (ttl/10, 1 ms..500 ms, never more than half the time left), and once `valid_until()` minus
  // `loss_margin(ttl)` comes without a confirmed renewal, the lease is lost: the stop token is
  // requested, `held()` turns false and `options.on_lost` runs, once. The same happens at once
  // when the store says the lease is no longer ours. One scheduler thread drives every kept
  // alive lock of the process, with a few threads that send renewals (those due together go
  // to the store in one `LeaseStore::extend_many` round), so a store call that hangs never
  // delays a deadline. A renewal that lands after the lease was declared lost is undone with a
  // token-checked release. Calling it again replaces the options. Throws
  // `std::invalid_argument` if the lock is not held (released or moved from) or `max_hold` is
  // negative.
  void keep_alive(KeepAliveOptions options = {});

  // Returns a token whose stop is requested when the lease is lost: the store said it is no
  // longer ours, or `valid_until()` minus `loss_margin(ttl)` came without a confirmed renewal.
  // Driven by the local clock, never later because a store call hangs; works with or without
  // `keep_alive` (without it, stop comes at `valid_until()` minus the margin). Callbacks
  // registered on it run on lockkit's keeper thread (for a lock kept alive through
  // `AsyncLockApi::keep_alive`: on the executor, or on the keeper thread when the executor does
  // not run in time): keep them short. An empty lock returns a token whose
  // stop is already requested. The first call allocates the lease's shared state.
  std::stop_token stop_token() const;

  // Releases the lease. Returns true if it was still ours; false if it had expired or been taken
  // over, or was already released (idempotent). Throws `BackendError` if the store fails; the
  // lock then stays releasable (a later call or the destructor tries again). A keep-alive stops
  // first: a renewal under way is waited for, and none is sent once this returns (nor after a
  // failed release: the lease then runs out by itself).
  bool release();
  // Moves the lease's expiry to now + `ttl` if still ours and returns true; `valid_until()`
  // moves with it, and a keep-alive renews with `ttl` from then on. Returns false (and the lock
  // is no longer held; the stop token is requested and `on_lost` runs) if the lease was lost.
  // Waits for a renewal of the keep-alive that is under way (it never overlaps one).
  // Throws `std::invalid_argument` for a ttl outside 1 ms..7 days, `BackendError` if the store
  // fails.
  bool extend(std::chrono::milliseconds ttl);

 private:
  static constexpr std::size_t kMaxTokenBytes = 32;
  // Keys up to this long fit the in-object buffer of std::string (libstdc++ and MSVC: 15,
  // libc++: 22) and are copied into key_ at once.
  static constexpr std::size_t kSmallKeyBytes = 15;
  static constexpr std::size_t kInlineKeyBytes = 48;
  // key_state_: key_ not made yet (the key is in key_buf_), being made by one `key()` call, made.
  static constexpr std::uint8_t kKeyInline = 0;
  static constexpr std::uint8_t kKeyMaking = 1;
  static constexpr std::uint8_t kKeyMade = 2;

  friend struct detail::KeepAliveAccess;

  // What the two core constructors share: `ops` held through `count` or else `own_ops`. Inline
  // (defined in lock.cpp, the only caller): the core's hot path pays no call for it.
  LOCKKIT_NO_EXPORT inline Lock(detail::LeaseOps* ops, detail::LockCount* count,
                                std::shared_ptr<detail::LeaseOps>&& own_ops, std::string_view key,
                                std::string_view token, std::uint64_t fence,
                                std::chrono::steady_clock::time_point valid_until,
                                std::chrono::steady_clock::time_point acquired,
                                std::chrono::milliseconds ttl) noexcept;

  // `keep_alive(options)` with the wake-ups and renewals on `scheduler` (an AsyncLockApi's
  // executor); null: the keeper's own threads.
  void keep_alive_on(std::shared_ptr<detail::LeaseScheduler> scheduler, KeepAliveOptions options);

  static constexpr bool inline_key(std::size_t size) noexcept {
    return size > kSmallKeyBytes && size <= kInlineKeyBytes;
  }
  // The key, without making its string.
  std::string_view key_view() const noexcept {
    if (inline_key(key_size_)) return {key_buf_.data(), key_size_};
    return key_;
  }

  void set_key(std::string_view key) noexcept;
  void make_key() const noexcept;
  void take_key(Lock& other) noexcept;
  void set_token(std::string_view token) noexcept;
  void release_quietly() noexcept;
  bool release_now();
  // Lets go of the lease's ops (the last touch of them): the lock holds nothing any more.
  void drop_ops() noexcept;
  detail::LeaseState& state() const;

  detail::LeaseOps* ops_ = nullptr;  // null once released, lost or moved from
  // What keeps *ops_ alive: the core's count of one thread's locks (no reference count shared
  // between threads per lock), or else a reference of this lock's own.
  detail::LockCount* count_ = nullptr;
  std::shared_ptr<detail::LeaseOps> own_ops_;
  // The key: in key_ when it is up to kSmallKeyBytes or longer than kInlineKeyBytes; else in
  // key_buf_, and key_ is made from it once by the first `key()` call (key_state_ says when).
  mutable std::string key_;
  mutable std::atomic<std::uint8_t> key_state_{kKeyMade};
  std::uint16_t key_size_ = 0;
  std::array<char, kInlineKeyBytes> key_buf_;
  std::array<char, kMaxTokenBytes> token_{};
  std::uint8_t token_size_ = 0;
  std::uint64_t fence_ = 0;
  std::chrono::steady_clock::time_point valid_until_;  // when state_ is null
  std::chrono::steady_clock::time_point acquired_;
  std::chrono::milliseconds ttl_{0};
  // Made on the first `keep_alive()` / `stop_token()`; shared with the keeper threads.
  mutable std::shared_ptr<detail::LeaseState> state_;
};

// Called with the key and the error when a `Lock` destructor's release fails. Must not throw.
using ErrorHook = std::function<void(std::string_view key, const std::exception& error)>;

// Installs `hook` for failed destructor releases (process-wide; empty to remove). The library
// itself never prints.
LOCKKIT_EXPORT void set_error_hook(ErrorHook hook);

}  // namespace lockkit

#endif  // LOCKKIT_LOCK_HPP_
