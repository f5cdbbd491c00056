// SPDX-License-Identifier: MIT
// The `memory:` backend: a process-local lock table with an injectable clock.
#ifndef LOCKKIT_MEMORY_HPP_
#define LOCKKIT_MEMORY_HPP_

#include <cstddef>
#include <memory>

#include "lockkit/backend.hpp"
#include "lockkit/clock.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

struct MemoryOptions {
  std::shared_ptr<const Clock> clock;  // decides expiry; null = the real steady clock
  // Independent sub-tables (rounded up to a power of two, at most 4096). More shards: fewer
  // cache lines shared by threads on different keys, about 256 bytes each.
  std::size_t shards = 256;
};

// Locks shared by the threads of one process; the original module's `InMemoryLock`: the core's
// `LockApi` (see `make_lock_api`) over a process-local `LeaseStore`. Expiry by
// `MemoryOptions::clock`, so tests can use a `ManualClock` instead of sleeping.
//   auto clock = std::make_shared<lockkit::ManualClock>();
//   lockkit::InMemoryLockApi api({.clock = clock});
// Keys hash to independent shards, each with its own mutex and fence counter, so threads on
// different keys rarely meet. Released and expired entries are reclaimed by sweeps: a shard
// holds at most max(64, 2 x its live leases at its previous sweep) entries, so memory follows
// the peak number of live leases, never the number of keys ever used. Fences come from the shard's
// counter, so they increase strictly per key across releases and expiries without keeping any
// per-key state. When the store is unreachable: it never is; nothing here throws `BackendError`.
// Thread safety: safe to share; calls may run concurrently.
class LOCKKIT_EXPORT InMemoryLockApi final : public LockApi {
 public:
  explicit InMemoryLockApi(MemoryOptions options = {});
  ~InMemoryLockApi() override;

  [[nodiscard]] std::optional<Lock> try_acquire(std::string_view key,
                                                std::chrono::milliseconds ttl) override;
  [[nodiscard]] std::optional<Lock> acquire(std::string_view key, std::chrono::milliseconds ttl,
                                            const RetryPolicy& policy = {}) override;
  std::string_view backend() const noexcept override { return "memory"; }
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix = {}) override;
  void set_observer(std::shared_ptr<LockObserver> observer) override;

  // Returns the number of entries in the table, live or expired but not yet swept; for tests
  // of the memory bound.
  std::size_t table_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Returns a new `memory:` backend.
LOCKKIT_EXPORT std::unique_ptr<LockApi> make_memory_lock_api(MemoryOptions options = {});

// Returns the `memory:` table as a bare `LeaseStore`: for composing stores and for running the
// conformance kit's store-level cases. `InMemoryLockApi` is `make_lock_api` over one of these.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_memory_store(MemoryOptions options = {});

}  // namespace lockkit

#endif  // LOCKKIT_MEMORY_HPP_
