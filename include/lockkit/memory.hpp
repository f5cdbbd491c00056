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
  // Independent sub-tables (rounded up to a power of two, at most 65536). More shards: fewer
  // cache lines shared by threads on different keys; 128 bytes each, holding one lease, plus
  // 128 bytes per further lease of the shard.
  std::size_t shards = 8192;
};

// Returns a `memory:` backend: locks shared by the threads of one process, the original
// module's `InMemoryLock`. It is the core's `LockApi` (see `make_lock_api`) over
// `make_memory_store(options)`. Expiry by `MemoryOptions::clock`, so tests can use a
// `ManualClock` instead of sleeping; that clock also drives `Lock::keep_alive`'s schedule and
// `Lock::stop_token()`'s deadline (`ManualClock::advance` wakes the keeper).
//   auto clock = std::make_shared<lockkit::ManualClock>();
//   auto api = lockkit::make_memory_lock_api({.clock = clock});
// Storage: keys hash (with a per-store random seed) to independent shards of 128 bytes, each
// with its own spinlock and fence counter and room for one lease inline (key up to 48 bytes),
// so that threads on different keys rarely write the same cache line. A shard's further leases
// live in its own flat open-addressing table (128 bytes per lease, key inline up to 67 bytes;
// a longer key costs one allocation). A released entry leaves at once, with no tombstone left
// behind; expired ones are dropped when their place is needed or their shard's table would
// otherwise grow, and a table shrinks when under 1/8 full, so memory is the fixed shard array
// (1 MiB by default, in one 2 MiB huge page where the kernel grants one) plus the live leases,
// never the number of keys ever used. Fences come
// from the shard's counter, so they increase strictly per key across releases and expiries
// without keeping any per-key state.
// When the store is unreachable: it never is; nothing here throws `BackendError`.
// Thread safety: safe to share; calls may run concurrently.
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_memory_lock_api(MemoryOptions options = {});

// Returns the `memory:` table as a bare `LeaseStore`: for composing stores and for running the
// conformance kit's store-level cases. `make_memory_lock_api` is `make_lock_api` over one.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_memory_store(MemoryOptions options = {});

}  // namespace lockkit

#endif  // LOCKKIT_MEMORY_HPP_
