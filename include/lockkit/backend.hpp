// SPDX-License-Identifier: MIT
// `LeaseStore`: the one interface a backend implements; `make_lock_api` builds the rest on it.
#ifndef LOCKKIT_BACKEND_HPP_
#define LOCKKIT_BACKEND_HPP_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

// One renewal of a batch (see `LeaseStore::extend_many`).
struct ExtendRequest {
  std::string_view key;
  std::string_view token;
  std::chrono::milliseconds ttl{0};
};

// What became of one `ExtendRequest`.
enum class ExtendOutcome : std::uint8_t {
  kExtended,  // still ours; expiry moved to now + ttl
  kNotOurs,   // expired, released or taken over: `extend` returned false
  kFailed,    // the store failed (`extend` threw): it may or may not have been applied
};

// A table of leases: key -> (owner token, fence, expiry). A backend is a `LeaseStore` and
// nothing else; `make_lock_api` checks arguments, mints tokens, computes `valid_until`, makes
// `Lock` handles, cleans up after in-doubt acquires and notifies observers, once for every store.
//   class MyStore final : public lockkit::LeaseStore { ... };
//   auto api = lockkit::make_lock_api(std::make_shared<MyStore>());
// Contract: the calls receive valid arguments only (key 1..1024 bytes, ttl 1 ms..7 days, the
// token as minted: 32 lowercase hex characters). `acquire` must check and write in one atomic
// step; fences must increase strictly per key, also across releases and expiries. Functions
// added here later get a default, so a store written against this header keeps compiling.
// When the store is unreachable: every call throws `BackendError`, never an empty optional or
// `false` (those mean "held by someone else" and "no longer ours").
// Thread safety: implementations must be safe to share; calls may run concurrently.
class LOCKKIT_EXPORT LeaseStore {
 public:
  virtual ~LeaseStore() = default;
  // Returns the backend's name, e.g. "redis"; used in messages and observer events.
  virtual std::string_view backend() const noexcept = 0;
  // Grants `key` to `token` for `ttl` if no unexpired lease holds it. Returns the fence, or
  // empty if someone else holds it. Throws BackendError (kInDoubt if it may have been applied).
  virtual std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                               std::chrono::milliseconds ttl) = 0;
  // Deletes the lease on `key` if its owner token is `token`. Returns false if it was no longer
  // ours (expired, released, taken over). Throws `BackendError` if the store fails.
  virtual bool release(std::string_view key, std::string_view token) = 0;
  // Moves the lease's expiry to now + `ttl` (store clock) if its owner is `token` and it has
  // not expired. Returns false if it was no longer ours. Throws `BackendError` on failure.
  virtual bool extend(std::string_view key, std::string_view token,
                      std::chrono::milliseconds ttl) = 0;
  // Returns the holder's fence and remaining time, or empty if `key` is free.
  virtual std::optional<LockInfo> status(std::string_view key) = 0;
  // Returns the unexpired leases whose key starts with `prefix`, in any order.
  virtual std::vector<LockInfo> list(std::string_view prefix) = 0;
  // Extends several leases, as `extend` would each, where the store can in one round (e.g. one
  // pipelined round trip for many Redis locks); `out[i]` (same size as `requests`) says what
  // became of `requests[i]`. The keep-alive (`Lock::keep_alive`) sends renewals that are due
  // together through here. By default calls `extend` for each request, a throw counting as
  // `kFailed`. May throw `BackendError` for a round that failed as a whole (then every request
  // counts as `kFailed`).
  virtual void extend_many(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out);
  // Blocks until `key` may have become free or `until` has come, whichever is first.
  // `LockApi::acquire` calls it between two attempts on a busy key, instead of sleeping until
  // `until` (the end of the jittered backoff delay, never past the policy's `max_wait`). A
  // store that can watch keys returns as soon as the key is released or its lease expires, so
  // that a waiter does not sleep out a long backoff; returning early without a release is
  // harmless (the caller tries again and waits again). Must not return long after `until`;
  // should not throw (a failing store is reported by the next attempt). The default sleeps
  // until `until`.
  virtual void wait_for_release(std::string_view key, std::chrono::steady_clock::time_point until);
  // Returns the local time `Lock::valid_until()` is measured on: the steady clock by default.
  virtual std::chrono::steady_clock::time_point now() const noexcept;
  // Returns the margin subtracted from a lease of `ttl` for local validity (clock drift between
  // this host and the store): 0 by default.
  virtual std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept;
};

// The LockApi over any store: checks arguments, mints tokens, computes valid_until (steady
// clock read just before the store call + ttl - drift(ttl)), makes Lock handles, releases
// with the same token after an in-doubt acquire and rethrows. `list` comes back sorted by key.
// Throws `std::invalid_argument` for a null `store`.
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_lock_api(std::shared_ptr<LeaseStore> store);

// open() makes `scheme:` URLs through `factory` (scheme without ':', e.g. "mystore"); replaces
// an earlier registration. Call it once, before the first `open` of that scheme.
LOCKKIT_EXPORT void register_backend(
    std::string scheme, std::function<std::shared_ptr<LeaseStore>(std::string_view url)> factory);

}  // namespace lockkit

#endif  // LOCKKIT_BACKEND_HPP_
