// SPDX-License-Identifier: MIT
// The `noop:` backend: locks that always or never succeed, for tests and dry runs.
#ifndef LOCKKIT_NOOP_HPP_
#define LOCKKIT_NOOP_HPP_

#include <memory>

#include "lockkit/backend.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

// Returns a `noop:` backend, the original module's `NoOpLock`. With `locked == false` every
// `try_acquire` succeeds (several holders of one key at once, each with a fresh token and an
// increasing fence); with `locked == true` none does. Arguments are still validated like every
// backend does: this is the core's `LockApi` (see `make_lock_api`) over `make_noop_store`.
// Thread safety: safe to share; calls may run concurrently.
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_noop_lock_api(bool locked = false);

// Returns the `noop:` store as a bare `LeaseStore` (`locked`: it never grants, else always).
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_noop_store(bool locked = false);

}  // namespace lockkit

#endif  // LOCKKIT_NOOP_HPP_
