// SPDX-License-Identifier: MIT
// Internal: the keep-alive scheduler shared by every kept-alive `Lock` of the process, and the
// per-lease state it shares with the `Lock` handle.
#ifndef LOCKKIT_SRC_CORE_KEEPER_HPP_
#define LOCKKIT_SRC_CORE_KEEPER_HPP_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

class KeeperRules;
struct LeaseState;

// Where the wake-ups and renewal rounds of some leases run instead of the keeper's own threads:
// an `AsyncLockApi`'s executor (src/async/async_keeper.cpp). It applies the keeper's rules
// (`KeeperRules`), so a lease behaves the same wherever it is scheduled.
// Thread safety: called from any thread.
class LeaseScheduler {
 public:
  virtual ~LeaseScheduler() = default;
  // Puts `state`'s next wake-up at `at` (by its store's clock) under number `seq`, as
  // `keeper_schedule`. Returns false if this scheduler takes no more leases (its AsyncLockApi is
  // gone): the keeper's thread then watches the lease, which is no longer renewed.
  virtual bool schedule(KeeperRules& rules, const std::shared_ptr<LeaseState>& state,
                        std::chrono::steady_clock::time_point at, std::uint64_t seq) = 0;
  // Wakes the scheduler (an injected clock moved).
  virtual void wake() noexcept = 0;
  // Drops `state` (released): what is left of it no longer keeps the scheduler busy.
  virtual void forget(const LeaseState& state) noexcept = 0;

  // fork(): the scheduler's lock is held across it (taken last), so that a child finds every
  // lease in place; it never calls the keeper while holding that lock.
  virtual void lock_for_fork() noexcept = 0;
  virtual void unlock_after_fork() noexcept = 0;
  // In a forked child, on its one thread (the lock still held): calls `f` with each lease it
  // knows, duplicates included, then makes its lock afresh.
  virtual void reset_in_child(
      const std::function<void(const std::shared_ptr<LeaseState>&)>& f) noexcept = 0;
};

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
  // Held while a hook of this lease runs (never with `mu`): `on_lost` waits for an
  // `on_renewal_error` under way, and an error's report checks `lost` under it, so that no error
  // is reported after the loss. Recursive: a hook may itself find the lease lost (`extend`).
  std::recursive_mutex hooks_mu;

  std::mutex mu;
  std::condition_variable cv;  // `sending` went false
  // All below guarded by mu.
  std::chrono::milliseconds ttl;
  Steady::time_point valid_until;
  Phase phase = Phase::kHeld;
  bool kept_alive = false;
  bool queued = false;   // waiting for its group's next renewal round
  bool sending = false;  // a renewal, or the holder's own extend, is with the store
  // The send under way has reached the store call (false: a round queued for a thread, which a
  // holder waiting in `await_send` may take back instead of waiting for a thread itself).
  bool send_started = false;
  std::uint64_t sending_epoch = 0;
  std::uint64_t send_id = 0;  // numbers each send; a round applies its outcome only if it matches
  // A holder waiting for the send under way gives up on it from then on (steady clock): a renewal
  // whose reply the waiting thread itself would have to read (AsyncLockApi's executor).
  Steady::time_point sending_until = Steady::time_point::max();
  Steady::time_point renew_at{};
  Steady::time_point hold_until = Steady::time_point::max();
  std::uint64_t seq = 0;               // the keeper's timer entry with this number is the live one
  std::uint64_t registered_epoch = 0;  // the keeper counts it in a group (0: not)
  KeepAliveOptions options;
  // Where renewals are timed and sent; expired or empty: the keeper's own threads.
  std::weak_ptr<LeaseScheduler> scheduler;
  bool renewer_gone = false;  // the scheduler that renewed it is gone: watched, never renewed
  // The keeper's watch of a lease renewed by a `LeaseScheduler` (see `keeper_schedule`): its
  // live entry is numbered `watch_seq` and due at `watch_at` (max: none armed).
  std::uint64_t watch_seq = 0;
  Steady::time_point watch_at = Steady::time_point::max();

  // Returns the moment the lease counts as lost without a confirmed renewal.
  Steady::time_point deadline() const { return valid_until - loss_margin(ttl); }
  // Returns true in a forked child for a lease of an ancestor: it is that process's lease, so
  // this one neither renews nor releases it.
  bool inherited() const noexcept { return epoch != keeper_epoch(); }
  // Returns true if this process renews the lease (mu held).
  bool renewed_here() const noexcept { return kept_alive && !renewer_gone && !inherited(); }
};

// How many rounds of one store may be under way at once, and how many leases one round takes: at
// most kMaxRound, so that one round trip stays short; split into concurrent rounds only above
// kMinRound.
inline constexpr unsigned kRoundsPerStore = 3;
inline constexpr std::size_t kMaxRound = 1024;
inline constexpr std::size_t kMinRound = 64;
// The longest a scheduler sleeps: it also polls clocks that move without telling (an injected
// clock other than ManualClock).
inline constexpr std::chrono::milliseconds kMaxSleep{100};

// Returns how many rounds `pending` due renewals want (at most kRoundsPerStore are under way).
inline std::size_t rounds_wanted(std::size_t pending) noexcept {
  return (pending + kMinRound - 1) / kMinRound;
}
// Returns how many of `pending` due renewals one round takes: a share, so that the store's other
// rounds get some too; a small batch goes whole (one round trip, not three).
inline std::size_t round_share(std::size_t pending) noexcept {
  const std::size_t share = (pending + kRoundsPerStore - 1) / kRoundsPerStore;
  return std::min(pending, std::clamp(share, kMinRound, kMaxRound));
}

// One wake-up of a lease: at `at` (its store's clock), live while `state->seq == seq`.
struct Wake {
  std::shared_ptr<LeaseState> state;
  Steady::time_point at;
  std::uint64_t seq = 0;
};

// What a due wake-up decided (`KeeperRules::decide`).
struct WakeDecision {
  enum class Kind {
    kStale,  // superseded by a later wake-up: nothing to do
    kGone,   // released: the scheduler forgets it
    kLost,   // lost now (marked): call `notify_lost` with `reason`, no lock held
    kRenew,  // due: queued (`queued` set) for its store's next round; and `next`
    kNext,   // not due: its next wake-up is `next`
  };
  Kind kind = Kind::kStale;
  Wake next;
  std::string reason;
};

// One renewal round of leases of one store: `KeeperRules::begin_round` fills it, the store
// call (`send_round`, or a native async path) sets `outcomes`, `error`, `start` and `done`, and
// `end_round` applies them.
struct RenewalRound {
  std::shared_ptr<LeaseOps> ops;
  std::vector<std::shared_ptr<LeaseState>> going;  // marked sending
  std::vector<ExtendRequest> requests;             // views of the states' key and token
  std::vector<std::chrono::milliseconds> ttls;
  std::vector<std::uint64_t> sends;     // each state's send_id of this round
  std::vector<ExtendOutcome> outcomes;  // kFailed until the store said otherwise
  std::vector<char> skipped;            // not sent after all: retried shortly, nothing reported
  std::string error;                    // the store's failure, if any
  Steady::time_point start{};           // by the store's clock, before the first request
  Steady::time_point done{};            // after the last reply
};

// What a round's end leaves to do, with no lock held: the next wake-ups to schedule, losses to
// notify, `on_renewal_error` hooks to call with the round's error (unless their lease has been
// declared lost by then: no error is reported after the loss), renewals to undo.
struct RoundEnd {
  std::vector<Wake> next;
  std::vector<std::pair<std::shared_ptr<LeaseState>, std::string>> lost;
  std::vector<std::pair<std::shared_ptr<LeaseState>, std::function<void(std::string_view)>>> failed;
  std::vector<std::shared_ptr<LeaseState>> undo;  // renewed after they were declared lost
};

// The keeper's rules for wake-ups and renewal rounds, shared by its own threads and by every
// `LeaseScheduler`. Virtual so that a scheduler in another of lockkit's libraries reaches them
// (lockkit::detail is not exported from a shared build). `keeper_rules()` returns the one
// instance. Thread safety: every function may be called from any thread; none holds a lock of
// the caller's.
class KeeperRules {
 public:
  // Looks at `state`'s due wake-up numbered `seq` at `now` (its store's clock).
  virtual WakeDecision decide(const std::shared_ptr<LeaseState>& state, std::uint64_t seq,
                              Steady::time_point now) = 0;
  // Fills `round` (of the store `ops`) from the due leases of `batch` (asks `should_renew`, marks
  // each sent one sending; a renewal sent on a connection the waiting holder's thread would
  // read gives up after `give_up`); those skipped get their next wake-up in `next`.
  virtual void begin_round(RenewalRound& round, std::shared_ptr<LeaseOps> ops,
                           std::span<const std::shared_ptr<LeaseState>> batch,
                           Steady::duration give_up, std::vector<Wake>& next) = 0;
  // Sends `round` through the blocking store (`renewer` if not null, else one extend each).
  virtual void send_round(RenewalRound& round, BatchRenewer* renewer) noexcept = 0;
  // Applies the outcomes of `round` to its leases; what is left to do goes to `end`.
  virtual void end_round(RenewalRound& round, RoundEnd& end) = 0;
  // Calls `end`'s hooks with `error` and notifies its losses (no store call).
  virtual void report(RoundEnd& end, std::string_view error) noexcept = 0;
  // Undoes `end.undo`'s renewals with token-checked releases through `ops` (blocks).
  virtual void undo(LeaseOps& ops, RoundEnd& end) noexcept = 0;
  // Requests the stop and calls `on_lost`, like `notify_lost`.
  virtual void notify_lost(LeaseState& state, std::string_view reason) noexcept = 0;
  // Returns what identifies `state`'s store: leases with the same key are renewed together.
  virtual const void* group_key(const LeaseState& state) noexcept = 0;
  // Hands `state`, if `from` is its scheduler (or it has none left), to the keeper's own thread,
  // which then only watches it (`renewer_gone`): `from` is gone.
  virtual void orphan(const std::shared_ptr<LeaseState>& state, const LeaseScheduler* from) = 0;
  // Makes `wake_keeper()` and fork() reach `scheduler` while it lives.
  virtual void enlist(std::weak_ptr<LeaseScheduler> scheduler) = 0;

 protected:
  ~KeeperRules() = default;
};

KeeperRules& keeper_rules() noexcept;

// Puts `state`'s next wake-up at `at` (by its store's clock) under number `seq` (the value of
// `state->seq` the caller just set, without holding `state->mu` now), on its scheduler: the
// keeper's own thread, or the `LeaseScheduler` it was kept alive on. A lease on a
// `LeaseScheduler` is also watched by the keeper's thread (never renewed there): if the scheduler
// does not run (a stopped or blocked executor), the lease is still declared lost at its deadline.
void keeper_schedule(const std::shared_ptr<LeaseState>& state, Steady::time_point at,
                     std::uint64_t seq);

// Drops what the keeper holds of a released `state` (its phase is no longer kHeld; the caller
// holds no lock): its wake-ups, and its store's group if no other lease of that store is left, so
// that the store is no longer referenced by the keeper once `Lock::release` returns (a renewal
// round still under way for other leases of that store keeps it until the round returns). Its
// `LeaseScheduler`, if any, forgets it too.
void keeper_forget(const std::shared_ptr<LeaseState>& state);

// Waits (mu held through `lk`) until no send of `state` is under way in this process, or until
// its `sending_until`: that send is then given up (its outcome will not count). Afterwards the
// caller may send.
void await_send(LeaseState& state, std::unique_lock<std::mutex>& lk);

// Returns the earliest moment the keeper has to look at `state` (mu held).
Steady::time_point next_wake(const LeaseState& state);

// Marks `state` lost (mu held) if it is still held; returns whether it was. The caller then
// runs `notify_lost` with no lock held.
bool mark_lost(LeaseState& state);
// Requests the stop and calls `on_lost` (taken from the state) with `reason`.
void notify_lost(LeaseState& state, std::string_view reason) noexcept;

// In a forked child: makes the keeper watch the leases inherited from the parent, those its
// keeper and its `LeaseScheduler`s knew (their stop tokens are then requested at their
// deadlines); nothing otherwise.
void keeper_watch_inherited();

// Wakes the scheduler and every `LeaseScheduler` (an injected clock moved).
void wake_keeper() noexcept;

// Returns the threads the keeper runs now (scheduler and renewal workers); for tests.
unsigned keeper_threads() noexcept;

// Opens `Lock::keep_alive_on` to the `AsyncLockApi`: `lock`'s renewals run on `scheduler`.
struct KeepAliveAccess {
  static void keep_alive_on(Lock& lock, std::shared_ptr<LeaseScheduler> scheduler,
                            KeepAliveOptions options) {
    lock.keep_alive_on(std::move(scheduler), std::move(options));
  }
};

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_KEEPER_HPP_
