// SPDX-License-Identifier: MIT
// Internal: the retry loop shared by `LockApi::acquire` and the core's observed `acquire`.
#ifndef LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
#define LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_

#include <chrono>
#include <optional>
#include <string_view>

#include "lockkit/lock_api.hpp"

namespace lockkit::detail {

// Calls `api.try_acquire` with backoff until it succeeds or `policy.max_wait` has passed;
// counts the attempts made in `attempts`. Arguments must have been validated.
std::optional<Lock> acquire_loop(LockApi& api, std::string_view key, std::chrono::milliseconds ttl,
                                 const RetryPolicy& policy, unsigned& attempts);

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
