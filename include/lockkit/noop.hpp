// SPDX-License-Identifier: MIT
// The `noop:` backend: locks that always or never succeed, for tests and dry runs.
#ifndef LOCKKIT_NOOP_HPP_
#define LOCKKIT_NOOP_HPP_

#include <memory>

#include "lockkit/backend.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

// The original module's `NoOpLock`. With `locked == false` every `try_acquire` succeeds (several
// holders of one key at once, each with a fresh token and an increasing fence); with
// `locked == true` none does. Arguments are still validated like every backend does: this is
// the core's `LockApi` (see `make_lock_api`) over a store that always or never grants.
// Thread safety: safe to share; calls may run concurrently.
class LOCKKIT_EXPORT NoOpLockApi final : public LockApi {
 public:
  explicit NoOpLockApi(bool locked = false);

  [[nodiscard]] std::optional<Lock> try_acquire(std::string_view key,
                                                std::chrono::milliseconds ttl) override;
  [[nodiscard]] std::optional<Lock> acquire(std::string_view key, std::chrono::milliseconds ttl,
                                            const RetryPolicy& policy = {}) override;
  std::string_view backend() const noexcept override { return "noop"; }
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix = {}) override;
  void set_observer(std::shared_ptr<LockObserver> observer) override;

  bool locked() const noexcept { return locked_; }

 private:
  bool locked_;
  std::shared_ptr<LockApi> api_;  // the core's LockApi over a store that always/never grants
};

// Returns the `noop:` store as a bare `LeaseStore` (`locked`: it never grants, else always).
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_noop_store(bool locked = false);

}  // namespace lockkit

#endif  // LOCKKIT_NOOP_HPP_
