// SPDX-License-Identifier: MIT
// Taking a lock for `run` and `acquire`: one attempt, or retries with jitter until --wait ends.
#ifndef LOCKKIT_CLI_WAIT_HPP_
#define LOCKKIT_CLI_WAIT_HPP_

#include <chrono>
#include <optional>
#include <string_view>

#include "lockkit/lock_api.hpp"

namespace lockkit::cli {

// What ended a wait without a lock.
struct WaitEnd {
  int signal = 0;  // the signal read from `signal_fd` that interrupted the wait, else 0
};

// Tries to take `key` for `ttl`; with `wait`, retries with full-jitter backoff (at most 200 ms
// apart) until `wait` has passed (never, for `kWaitForever`), showing one updating line on stderr
// when it is a terminal. Sleeps by polling `signal_fd` (a signalfd; -1 for none): a signal read
// there ends the wait early and is reported in `end`. Returns an empty optional when the key stayed
// busy. Throws like `LockApi::try_acquire`: at once if the first attempt fails; a retryable
// `BackendError` on a later attempt is retried until the deadline.
std::optional<Lock> take_lock(LockApi& api, std::string_view key, std::chrono::milliseconds ttl,
                              std::optional<std::chrono::milliseconds> wait, int signal_fd,
                              WaitEnd& end);

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_WAIT_HPP_
