// SPDX-License-Identifier: MIT
// `LockObserver`: what a `LockApi` made by `make_lock_api` reports about every lock operation.
#ifndef LOCKKIT_OBSERVER_HPP_
#define LOCKKIT_OBSERVER_HPP_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "lockkit/errors.hpp"
#include "lockkit/export.hpp"

namespace lockkit {

// The operation an event reports.
enum class LockOperation {
  kTryAcquire,  // one attempt: `try_acquire`, and each attempt of `acquire`
  kAcquire,     // a whole `acquire` call: every attempt and the waits between them
  kRelease,     // `Lock::release`, a `Lock` destructor, `LockApi::release` by token
  kExtend,      // `Lock::extend`, `LockApi::extend` by token
};

// How the operation ended.
enum class LockOutcome {
  kOk,       // acquired; released or extended while still ours
  kBusy,     // acquire: someone else holds the key (`acquire`: until its deadline)
  kNotOurs,  // release or extend: the lease had expired, been released or taken over
  kError,    // the store failed; see `LockEvent::error`
};

// Returns the lower-case name, e.g. "try_acquire", "not_ours"; handy as a metric label.
LOCKKIT_EXPORT const char* to_string(LockOperation operation) noexcept;
LOCKKIT_EXPORT const char* to_string(LockOutcome outcome) noexcept;

// One finished lock operation. The string views are valid only during the observer call.
struct LockEvent {
  LockOperation operation = LockOperation::kTryAcquire;
  LockOutcome outcome = LockOutcome::kOk;
  std::string_view backend;  // e.g. "memory"
  std::string_view key;      // arbitrary bytes, as given
  // Time spent in the call, by the real steady clock (`kAcquire`: the whole wait).
  std::chrono::nanoseconds latency{0};
  // `kError` only: the `BackendError` kind, or empty for another exception.
  std::optional<ErrorKind> error;
  // `kAcquire` only: attempts made (at least 1).
  unsigned attempts = 0;
  // `kRelease` of a `Lock` only: time from acquisition to release, by the store's local clock
  // (`Lock::valid_until()`'s); 0 for a release by token.
  std::chrono::nanoseconds held{0};
  // `kOk` acquires only: the fence of the new lease.
  std::uint64_t fence = 0;
};

// Receives every lock operation of the `LockApi` it is attached to (see
// `LockApi::set_observer`). Called on the thread that made the call, after the store answered
// and outside every lock of lockkit, so it may take its own locks; keep it cheap, it runs on
// the lock path. An exception it throws is swallowed: it never changes the operation's result.
//   struct Counter : lockkit::LockObserver {
//     void on_event(const lockkit::LockEvent& e) override { ++counts[int(e.outcome)]; }
//     std::atomic<long> counts[4] = {};
//   };
// Thread safety: must be safe to call from many threads at once.
class LOCKKIT_EXPORT LockObserver {
 public:
  virtual ~LockObserver() = default;
  virtual void on_event(const LockEvent& event) = 0;
};

}  // namespace lockkit

#endif  // LOCKKIT_OBSERVER_HPP_
