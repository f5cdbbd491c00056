// SPDX-License-Identifier: MIT
// Internal: `LeaseOps`, what a `Lock` calls back into; only the core implements it.
#ifndef LOCKKIT_SRC_CORE_LEASE_OPS_HPP_
#define LOCKKIT_SRC_CORE_LEASE_OPS_HPP_

#include <chrono>
#include <string_view>

#include "lockkit/lock.hpp"

namespace lockkit::detail {

// What a `Lock` calls back into to release or extend its lease: implemented by the core over a
// `LeaseStore` (src/core/store_lock_api.cpp; the tests script their own). A `Lock` keeps its
// `LeaseOps` alive through a `shared_ptr`, so a lock may outlive the `LockApi` that made it.
// Thread safety: implementations must be safe to call from any thread.
class LeaseOps {
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

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_LEASE_OPS_HPP_
