// SPDX-License-Identifier: MIT
// Internal: a store that can take the core's clock reading instead of reading its own.
#ifndef LOCKKIT_SRC_CORE_CLOCKED_STORE_HPP_
#define LOCKKIT_SRC_CORE_CLOCKED_STORE_HPP_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lockkit::detail {

// The core reads `LeaseStore::now()` just before each acquire, for `valid_until`. A built-in
// store whose expiry runs on that same clock (memory:) implements this too, so that one
// reading serves both: the lease then ends exactly at the caller's start + ttl. Everything
// else (validation, tokens, in-doubt handling, observers) stays in the core; stores that do not
// implement it, every user store among them, are called through `LeaseStore::acquire`.
class ClockedStore {
 public:
  // Starts fetching what `acquire_at(key, ...)` will touch, so that the fetch overlaps the
  // core's token and clock reading instead of stalling the acquire, and returns what
  // `acquire_at` needs to find it again without working it out twice (the key's hash). A hint:
  // never fails.
  virtual std::uint64_t prefetch(std::string_view key) const noexcept = 0;
  // `LeaseStore::acquire` with `now`, a reading of this store's `now()` taken just before, and
  // `hint`, what `prefetch(key)` returned.
  virtual std::optional<std::uint64_t> acquire_at(std::string_view key, std::uint64_t hint,
                                                  std::string_view token,
                                                  std::chrono::milliseconds ttl,
                                                  std::chrono::steady_clock::time_point now) = 0;

 protected:
  ~ClockedStore() = default;
};

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_CLOCKED_STORE_HPP_
