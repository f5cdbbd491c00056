// SPDX-License-Identifier: MIT
// Internal: the retry loop shared by `LockApi::acquire` and the core's observed `acquire`.
#ifndef LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
#define LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "lockkit/backend.hpp"
#include "lockkit/lock_api.hpp"
#include "lockkit/observer.hpp"

namespace lockkit::detail {

// Calls `api.try_acquire` with backoff until it succeeds or `policy.max_wait` has passed;
// counts the attempts made in `attempts`. Between attempts it waits through
// `store->wait_for_release` (woken early when the store sees the key released), or sleeps when
// `store` is null. Arguments must have been validated.
std::optional<Lock> acquire_loop(LockApi& api, std::string_view key, std::chrono::milliseconds ttl,
                                 const RetryPolicy& policy, unsigned& attempts,
                                 LeaseStore* store = nullptr);

class LeaseOps;

// Keeps a `LockApi`'s `LeaseOps` alive for the `Lock`s that one thread made through it, without
// an atomic reference count that every lock writes twice: the thread that made them counts them
// with plain stores, a lock released on another thread (moved there) counts with an atomic
// instruction, and the api's destructor settles the two. Made and destroyed by the core
// (store_lock_api.cpp), one per thread index and api; a `Lock` made by it holds it.
// Thread safety: `drop` from any thread; `add` only on the thread holding the count's index.
class alignas(128) LockCount {
 public:
  LockCount(std::shared_ptr<LeaseOps> ops, unsigned index) noexcept;
  LockCount(const LockCount&) = delete;
  LockCount& operator=(const LockCount&) = delete;

  LeaseOps& ops() const noexcept { return *ops_; }
  // Returns a reference of its own to the ops (for the keeper's state of a kept-alive lease).
  std::shared_ptr<LeaseOps> share() const noexcept { return ops_; }
  // Counts one `Lock` more. Only on the thread holding the index, while the api lives.
  void add() noexcept {
    local_.store(local_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Counts one `Lock` less, from any thread: the last one once the api is gone frees this, and
  // with it the api's reference to the ops.
  void drop() noexcept;
  // The api's destructor: from now on every drop counts atomically, and the last frees.
  static void detach(std::span<LockCount* const> counts) noexcept;

 private:
  // While the api lives, `shared_` holds this much on top of the count, so that drops on other
  // threads never bring it to 0 before `detach` has added the local count.
  static constexpr std::int64_t kAttached = std::int64_t{1} << 62;

  ~LockCount() = default;

  const std::shared_ptr<LeaseOps> ops_;
  const unsigned index_;  // the thread index that counts in local_
  // Locks made minus those released on the thread holding index_: written by that thread only.
  std::atomic<std::int64_t> local_{0};
  std::atomic<bool> busy_{false};      // that thread is between reading orphaned_ and local_
  std::atomic<bool> orphaned_{false};  // detached: every drop goes to shared_
  alignas(64) std::atomic<std::int64_t> shared_{kAttached};  // minus drops on other threads
};

// What a store's native async path (lockkit::async) needs from the core's `LockApi` over a
// `LeaseStore`, which implements it: the store, and the core's own ways of making a `Lock` and
// telling observers, so that a grant made outside `try_acquire` ends up as the same `Lock`.
// Reached by dynamic_cast from a `LockApi`, also across shared libraries (libstdc++ matches the
// hidden type info by name).
class NativeGrants {
 public:
  virtual LeaseStore& grant_store() noexcept = 0;
  // The `LeaseOps` the core gives its `Lock`s (for a wrapper to forward to).
  virtual std::shared_ptr<LeaseOps> grant_ops() = 0;
  // Returns the `Lock` `try_acquire` would have made for `token` granted `fence` on `key`,
  // the request having started at `start` (the store's `now()`), calling back into `ops`.
  virtual Lock adopt_grant(std::string_view key, std::string_view token, std::uint64_t fence,
                           std::chrono::steady_clock::time_point start,
                           std::chrono::milliseconds ttl, std::shared_ptr<LeaseOps> ops) = 0;
  // Tells the attached observer, if any, about an operation done outside the core.
  virtual void observe(LockOperation operation, std::string_view key, LockOutcome outcome,
                       std::uint64_t fence, std::chrono::nanoseconds latency) noexcept = 0;

 protected:
  ~NativeGrants() = default;
};

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
