// SPDX-License-Identifier: MIT
// Internal: the keep-alive scheduler shared by every kept-alive `Lock` of the process, and the
// per-lease state it shares with the `Lock` handle.
#ifndef LOCKKIT_SRC_CORE_KEEPER_HPP_
#define LOCKKIT_SRC_CORE_KEEPER_HPP_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/lease_ops.hpp"

#include "lockkit/backend.hpp"
#include "lockkit/lock.hpp"

namespace lockkit::detail {

using Steady = std::chrono::steady_clock;

// Implemented by the core's `LeaseOps`: renews a batch of leases of one store in one round
// (`LeaseStore::extend_many`), telling observers. Other `LeaseOps` renew one `extend` at a time.
class BatchRenewer {
 public:
  // Returns what identifies the store: leases with the same key are renewed together.
  virtual const void* batch_key() const noexcept = 0;
  // Fills `out`; returns the message of a failure, if any (empty otherwise). Never throws.
  virtual std::string renew_many(std::span<const ExtendRequest> requests,
                                 std::span<ExtendOutcome> out) noexcept = 0;

 protected:
  ~BatchRenewer() = default;
};

// The keeper's generation: changes in a forked child, whose keeper starts with the parent's
// leases to watch but renews none of them.
std::uint64_t keeper_epoch() noexcept;

// What a `Lock` and the keeper share about one lease. Made on the first `keep_alive()` or
// `stop_token()`. Lock order: the keeper's mutex before `mu`; callbacks run with neither held.
struct LeaseState {
  enum class Phase { kHeld, kLost, kReleased };

  LeaseState(std::shared_ptr<LeaseOps> lease_ops, std::string_view lease_key,
             std::string_view lease_token, std::chrono::milliseconds lease_ttl,
             Steady::time_point acquired_at, Steady::time_point valid)
      : ops(std::move(lease_ops)),
        epoch(keeper_epoch()),
        key(lease_key),
        token(lease_token),
        acquired(acquired_at),
        valid_until_ticks(valid.time_since_epoch().count()),
        ttl(lease_ttl),
        valid_until(valid) {}

  const std::shared_ptr<LeaseOps> ops;
  const std::uint64_t epoch;  // `keeper_epoch()` of the process that made it
  const std::string key;
  const std::string token;
  const Steady::time_point acquired;
  std::atomic<Steady::rep> valid_until_ticks;  // `valid_until`, for lock-free readers
  std::atomic<bool> lost{false};               // phase == kLost, for lock-free readers
  std::stop_source stop;

  std::mutex mu;
  std::condition_variable cv;  // `sending` went false
  // All below guarded by mu.
  std::chrono::milliseconds ttl;
  Steady::time_point valid_until;
  Phase phase = Phase::kHeld;
  bool kept_alive = false;
  bool queued = false;   // waiting for its group's next renewal round
  bool sending = false;  // a renewal, or the holder's own extend, is with the store
  std::uint64_t sending_epoch = 0;
  Steady::time_point renew_at{};
  Steady::time_point hold_until = Steady::time_point::max();
  std::uint64_t seq = 0;               // the keeper's timer entry with this number is the live one
  std::uint64_t registered_epoch = 0;  // the keeper counts it in a group (0: not)
  KeepAliveOptions options;

  // Returns the moment the lease counts as lost without a confirmed renewal.
  Steady::time_point deadline() const { return valid_until - loss_margin(ttl); }
  // Returns true in a forked child for a lease of an ancestor: it is that process's lease, so
  // this one neither renews nor releases it.
  bool inherited() const noexcept { return epoch != keeper_epoch(); }
  // Returns true if this process renews the lease (mu held).
  bool renewed_here() const noexcept { return kept_alive && !inherited(); }
};

// Puts `state`'s next wake-up at `at` (by its store's clock) under number `seq` (the value of
// `state->seq` the caller just set, without holding `state->mu` now).
void keeper_schedule(const std::shared_ptr<LeaseState>& state, Steady::time_point at,
                     std::uint64_t seq);

// Drops what the keeper holds of a released `state` (its phase is no longer kHeld; the caller
// holds no lock): its wake-ups, and its store's group if no other lease of that store is left, so
// that the store is no longer referenced by the keeper once `Lock::release` returns (a renewal
// round still under way for other leases of that store keeps it until the round returns).
void keeper_forget(const std::shared_ptr<LeaseState>& state);

// Returns the earliest moment the keeper has to look at `state` (mu held).
Steady::time_point next_wake(const LeaseState& state);

// Marks `state` lost (mu held) if it is still held; returns whether it was. The caller then
// runs `notify_lost` with no lock held.
bool mark_lost(LeaseState& state);
// Requests the stop and calls `on_lost` (taken from the state) with `reason`.
void notify_lost(LeaseState& state, std::string_view reason) noexcept;

// In a forked child: makes the keeper watch the leases inherited from the parent (their stop
// tokens are then requested at their deadlines); nothing otherwise.
void keeper_watch_inherited();

// Wakes the scheduler (an injected clock moved).
void wake_keeper() noexcept;

// Returns the threads the keeper runs now (scheduler and renewal workers); for tests.
unsigned keeper_threads() noexcept;

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_KEEPER_HPP_
