// SPDX-License-Identifier: MIT
// Internal: the retry loop shared by `LockApi::acquire` and the core's observed `acquire`.
#ifndef LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
#define LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_

#include <chrono>
#include <optional>
#include <string_view>

#include "lockkit/backend.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit::detail {

// Calls `api.try_acquire` with backoff until it succeeds or `policy.max_wait` has passed;
// counts the attempts made in `attempts`. Between attempts it waits through
// `store->wait_for_release` (woken early when the store sees the key released), or sleeps when
// `store` is null. Arguments must have been validated.
std::optional<Lock> acquire_loop(LockApi& api, std::string_view key, std::chrono::milliseconds ttl,
                                 const RetryPolicy& policy, unsigned& attempts,
                                 LeaseStore* store = nullptr);

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_STORE_LOCK_API_HPP_
