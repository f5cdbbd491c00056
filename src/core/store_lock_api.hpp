// SPDX-License-Identifier: MIT
// Internal: the retry loop shared by `LockApi::acquire` and the core's observed `acquire`.
#ifndef LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
#define LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
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
