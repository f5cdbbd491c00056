// SPDX-License-Identifier: MIT
// How `LockApi::acquire` waits for a busy key: exponential backoff with full jitter and a deadline.
#ifndef LOCKKIT_RETRY_HPP_
#define LOCKKIT_RETRY_HPP_

#include <chrono>

#include "lockkit/export.hpp"

namespace lockkit {

// How long and how often `LockApi::acquire` retries a busy key.
// Delay before retry n (0-based) is uniform in [0, min(max_delay, initial_delay * 2^n)]
// ("full jitter"), and never reaches past `max_wait` from the first attempt.
struct RetryPolicy {
  std::chrono::milliseconds max_wait{10'000};   // total time to keep trying; 0 = one attempt
  std::chrono::milliseconds initial_delay{10};  // cap of the first backoff delay
  std::chrono::milliseconds max_delay{1'000};   // cap of every backoff delay
};

// Returns the delay before retry `attempt` (0-based) under `policy`: full jitter, drawn from a
// thread-local generator. Throws `std::invalid_argument` naming the field if `policy` is
// invalid (negative durations, `initial_delay` 0 or above `max_delay`).
LOCKKIT_EXPORT std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, unsigned attempt);

// Throws `std::invalid_argument` naming the field if `policy` is invalid.
LOCKKIT_EXPORT void validate_retry_policy(const RetryPolicy& policy);

}  // namespace lockkit

#endif  // LOCKKIT_RETRY_HPP_
