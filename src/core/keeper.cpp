// SPDX-License-Identifier: MIT
// The keep-alive scheduler: one timer thread for every kept-alive lease of the process, and a
// few workers that send the renewals; and the rules it applies, which an AsyncLockApi's
// executor applies too (`KeeperRules`).
//
// The timer thread never calls a store. It keeps, per store, a heap of wake-ups by that store's
// clock (`LeaseOps::now()`, so an injected clock drives the schedule), hands due renewals to the
// workers in one batch per store, and declares a lease lost when its deadline (valid_until minus
// the loss margin) comes without a confirmed renewal: a store call that hangs occupies a worker,
// never the timer. At most kRoundsPerStore rounds per store are under way at a time (a store
// that renews one lease per call, e.g. one transaction each, still keeps up with many leases);
// workers are started on demand, at most kMaxWorkers, so one hanging store leaves workers for
// the others. Leases kept alive through an AsyncLockApi are scheduled on its executor instead
// (`LeaseScheduler`); this thread only watches those (never renews them): each one's deadline,
// so that a lease whose executor does not run is still declared lost in time.
#include "core/keeper.hpp"

#include <pthread.h>

#include <algorithm>
#include <deque>
#include <exception>
#include <map>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "core/wake_queue.hpp"
#include "lockkit/clock.hpp"
#include "lockkit/errors.hpp"

namespace lockkit::detail {
namespace {

constexpr unsigned kMaxWorkers = 6;

std::atomic<std::uint64_t> g_epoch{1};

Steady::duration period(std::chrono::milliseconds ttl) {
  return std::max<Steady::duration>(ttl / 3, std::chrono::milliseconds(1));
}

// Returns when a lease of `ttl` renewed at `from` is renewed next: one period later, moved back
// to a grid of a tenth of the period, so that leases of a store that come due within the same
// tenth go to the store together (one round, e.g. one pipelined round trip or one statement),
// at the price of renewing up to 10 % early.
Steady::time_point next_renewal(Steady::time_point from, std::chrono::milliseconds ttl) {
  const Steady::duration p = period(ttl);
  const Steady::duration grid = std::max<Steady::duration>(p / 10, Steady::duration(1));
  const Steady::duration at = (from + p).time_since_epoch();
  return Steady::time_point(at - at % grid);
}

// Retries come quickly but never crowd the time left: at least two fit before the deadline.
Steady::duration retry_delay(std::chrono::milliseconds ttl, Steady::duration left) {
  Steady::duration base = std::clamp<Steady::duration>(ttl / 10, std::chrono::milliseconds(1),
                                                       std::chrono::milliseconds(500));
  return std::min(base, std::max<Steady::duration>(left / 2, std::chrono::milliseconds(1)));
}

std::string loss_reason(const LeaseState& s, Steady::time_point now) {
  if (s.inherited()) {
    return "the lease belongs to the process that forked this one, which renews it; this "
           "process's copy is not renewed and its end is near";
  }
  if (s.renewer_gone && s.kept_alive) {
    return "the AsyncLockApi that renewed the lease is gone and its end is near";
  }
  if (!s.kept_alive) return "the lease was not renewed and its end is near (no keep-alive)";
  if (now >= s.hold_until || s.renew_at >= s.hold_until) {
    return "max_hold was reached: the lease was not renewed any more and its end is near";
  }
  if (s.sending) return "a renewal is still unanswered by the store and the lease's end is near";
  return "renewals failed and the lease's end is near";
}

// The rules (see KeeperRules), used directly by the keeper below and through the interface by
// the schedulers of other libraries.
class Rules final : public KeeperRules {
 public:
  WakeDecision decide(const std::shared_ptr<LeaseState>& sp, std::uint64_t seq,
                      Steady::time_point now) override {
    LeaseState& s = *sp;
    WakeDecision d;
    std::lock_guard<std::mutex> guard(s.mu);
    if (seq != s.seq) return d;  // superseded by a later schedule
    if (s.phase != LeaseState::Phase::kHeld) {
      d.kind = WakeDecision::Kind::kGone;
      return d;
    }
    if (now >= s.deadline()) {
      mark_lost(s);
      d.kind = WakeDecision::Kind::kLost;
      d.reason = loss_reason(s, now);
      return d;
    }
    d.kind = WakeDecision::Kind::kNext;
    if (s.renewed_here() && !s.queued && !s.sending && now >= s.renew_at) {
      if (now < s.hold_until) {
        s.queued = true;
        d.kind = WakeDecision::Kind::kRenew;
      } else {
        s.renew_at = Steady::time_point::max();  // max_hold has passed: no more renewals
      }
    }
    ++s.seq;
    d.next = Wake{sp, next_wake(s), s.seq};
    return d;
  }

  void begin_round(RenewalRound& round, std::shared_ptr<LeaseOps> ops,
                   std::span<const std::shared_ptr<LeaseState>> batch, Steady::duration give_up,
                   std::vector<Wake>& next) override {
    round.ops = std::move(ops);
    LeaseOps& o = *round.ops;
    for (const auto& sp : batch) {
      LeaseState& s = *sp;
      std::function<bool()> ask;
      {
        std::lock_guard<std::mutex> guard(s.mu);
        s.queued = false;
        if (s.phase != LeaseState::Phase::kHeld || !s.renewed_here() || s.sending) continue;
        ask = s.options.should_renew;
      }
      bool wanted = true;
      if (ask) {
        try {
          wanted = ask();
        } catch (...) {  // a hook that throws says nothing: renew
        }
      }
      std::lock_guard<std::mutex> guard(s.mu);
      if (s.phase != LeaseState::Phase::kHeld || !s.renewed_here() || s.sending) continue;
      const Steady::time_point now = o.now();
      if (!wanted || now >= s.hold_until) {
        // Not wanted now: asked again shortly. Past max_hold (the round started late): never.
        s.renew_at = now >= s.hold_until ? Steady::time_point::max()
                                         : now + retry_delay(s.ttl, s.deadline() - now);
        ++s.seq;
        next.push_back(Wake{sp, next_wake(s), s.seq});
        continue;
      }
      s.sending = true;
      // A native round is sent at once; a round on threads waits for one (see send_round).
      s.send_started = give_up != Steady::duration::max();
      s.sending_epoch = keeper_epoch();
      s.sending_until =
          give_up == Steady::duration::max() ? Steady::time_point::max() : Steady::now() + give_up;
      ++s.send_id;
      round.going.push_back(sp);
      round.requests.push_back(ExtendRequest{s.key, s.token, s.ttl});
      round.ttls.push_back(s.ttl);
      round.sends.push_back(s.send_id);
    }
    round.outcomes.assign(round.going.size(), ExtendOutcome::kFailed);
    round.skipped.assign(round.going.size(), 0);
  }

  void send_round(RenewalRound& round, BatchRenewer* renewer) noexcept override {
    LeaseOps& ops = *round.ops;
    // Leases taken back while the round waited for this thread (their holder released or
    // extended them, see `await_send`) are not sent: nothing goes out after a release returned.
    std::vector<std::size_t> taken_back;
    for (std::size_t i = 0; i < round.going.size(); ++i) {
      LeaseState& s = *round.going[i];
      std::lock_guard<std::mutex> guard(s.mu);
      if (s.sending && s.send_id == round.sends[i]) {
        s.send_started = true;
      } else {
        try {
          taken_back.push_back(i);
        } catch (...) {  // out of memory: sent anyway; an extend never revives a released lease
        }
      }
    }
    round.start = ops.now();
    if (taken_back.empty()) {
      round.error = send_requests(ops, renewer, round.requests, round.outcomes);
    } else {
      send_part(round, renewer, taken_back);
    }
    round.done = ops.now();
  }

  // The store call of a round: one extend_many (a BatchRenewer), else one extend per request.
  // Returns the first error.
  static std::string send_requests(LeaseOps& ops, BatchRenewer* renewer,
                                   std::span<const ExtendRequest> requests,
                                   std::span<ExtendOutcome> outcomes) noexcept {
    if (renewer) return renewer->renew_many(requests, outcomes);
    std::string error;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const ExtendRequest& r = requests[i];
      try {
        outcomes[i] =
            ops.extend(r.key, r.token, r.ttl) ? ExtendOutcome::kExtended : ExtendOutcome::kNotOurs;
      } catch (const std::exception& e) {
        if (error.empty()) error = e.what();
      } catch (...) {
        if (error.empty()) error = "unknown error";
      }
    }
    return error;
  }

  // send_round without the leases at `left_out` (ascending), which keep kFailed.
  static void send_part(RenewalRound& round, BatchRenewer* renewer,
                        std::span<const std::size_t> left_out) noexcept {
    std::vector<std::size_t> index;
    std::vector<ExtendRequest> requests;
    std::vector<ExtendOutcome> outcomes;
    try {
      std::size_t skip = 0;
      for (std::size_t i = 0; i < round.requests.size(); ++i) {
        if (skip < left_out.size() && left_out[skip] == i) {
          ++skip;
          continue;
        }
        index.push_back(i);
        requests.push_back(round.requests[i]);
      }
      outcomes.assign(index.size(), ExtendOutcome::kFailed);
    } catch (...) {
      round.error = "out of memory";
      return;
    }
    if (index.empty()) return;
    round.error = send_requests(*round.ops, renewer, requests, outcomes);
    for (std::size_t k = 0; k < index.size(); ++k) round.outcomes[index[k]] = outcomes[k];
  }

  void end_round(RenewalRound& round, RoundEnd& end) override {
    if (round.error.empty()) round.error = "the store failed";
    LeaseOps& ops = *round.ops;
    for (std::size_t i = 0; i < round.going.size(); ++i) {
      LeaseState& s = *round.going[i];
      std::lock_guard<std::mutex> guard(s.mu);
      // Given up by a holder that could not wait for it (see `await_send`): whoever sends now
      // decides, and this outcome says nothing about the lease any more.
      if (!s.sending || s.send_id != round.sends[i]) continue;
      s.sending = false;
      s.sending_until = Steady::time_point::max();
      s.cv.notify_all();
      if (s.phase == LeaseState::Phase::kLost) {
        // Declared lost while this renewal was with the store: the holder has been told to stop,
        // so a lease the store renewed anyway must not linger for a ttl with nobody using it.
        if (round.outcomes[i] == ExtendOutcome::kExtended) end.undo.push_back(round.going[i]);
        continue;
      }
      if (s.phase != LeaseState::Phase::kHeld) continue;
      if (round.skipped[i]) {
        s.renew_at = round.done + retry_delay(s.ttl, s.deadline() - round.done);
      } else {
        switch (round.outcomes[i]) {
          case ExtendOutcome::kExtended:
            if (round.ttls[i] == s.ttl) {
              s.valid_until = round.start + s.ttl - ops.drift(s.ttl);
              s.valid_until_ticks.store(s.valid_until.time_since_epoch().count(),
                                        std::memory_order_release);
              s.renew_at = next_renewal(round.start, s.ttl);
            }
            break;
          case ExtendOutcome::kNotOurs:
            if (mark_lost(s)) {
              end.lost.emplace_back(round.going[i], "the store says the lease is no longer ours");
            }
            continue;
          case ExtendOutcome::kFailed:
            s.renew_at = round.done + retry_delay(s.ttl, s.deadline() - round.done);
            if (s.options.on_renewal_error) {
              end.failed.emplace_back(round.going[i], s.options.on_renewal_error);
            }
            break;
        }
      }
      ++s.seq;
      end.next.push_back(Wake{round.going[i], next_wake(s), s.seq});
    }
  }

  void report(RoundEnd& end, std::string_view error) noexcept override {
    for (auto& [state, hook] : end.failed) {
      // Declared lost since (its deadline passed while this round's end waited for a thread):
      // `on_lost` has been or is being called, and an error after it would only confuse.
      std::lock_guard<std::recursive_mutex> hooks(state->hooks_mu);
      if (state->lost.load(std::memory_order_acquire)) continue;
      try {
        hook(error);
      } catch (...) {  // a hook never changes the schedule
      }
    }
    end.failed.clear();
    for (auto& [state, reason] : end.lost) detail::notify_lost(*state, reason);
    end.lost.clear();
  }

  void undo(LeaseOps& ops, RoundEnd& end) noexcept override {
    for (const auto& sp : end.undo) {
      try {
        (void)ops.release(sp->key, sp->token);
      } catch (...) {  // it then runs out by its ttl
      }
    }
    end.undo.clear();
  }

  void notify_lost(LeaseState& state, std::string_view reason) noexcept override {
    detail::notify_lost(state, reason);
  }

  const void* group_key(const LeaseState& state) noexcept override {
    auto* batch = dynamic_cast<BatchRenewer*>(state.ops.get());
    return batch ? batch->batch_key() : state.ops.get();
  }

  void orphan(const std::shared_ptr<LeaseState>& state, const LeaseScheduler* from) override;
  void enlist(std::weak_ptr<LeaseScheduler> scheduler) override;
};

Rules g_rules;

struct Entry {
  Steady::time_point at;
  std::uint64_t seq;
  std::shared_ptr<LeaseState> state;
  bool watch = false;  // a watch of a lease renewed by a `LeaseScheduler`: `seq` is `watch_seq`
};

// The leases of one store (one clock, one batch).
struct Group {
  const void* key = nullptr;  // in Keeper::groups_
  std::shared_ptr<LeaseOps> ops;
  BatchRenewer* batch = nullptr;  // null: renew with `ops->extend`, one by one
  WakeQueue<Entry> timers;
  std::vector<std::shared_ptr<LeaseState>> pending;  // due: for the next round
  unsigned rounds = 0;                               // rounds queued or under way
  std::size_t members = 0;                           // states registered here
  // The rounds under way, by number: a forked child finds their leases here.
  std::map<std::uint64_t, std::vector<std::shared_ptr<LeaseState>>> flying;
};

struct Notice {
  std::shared_ptr<LeaseState> state;
  std::string reason;
};

class Keeper {
 public:
  // Adds a wake-up of `state`; `watch`: a watch entry (numbered by `watch_seq`), not a wake-up.
  void schedule(const std::shared_ptr<LeaseState>& state, Steady::time_point at, std::uint64_t seq,
                bool watch = false) {
    std::lock_guard<std::mutex> guard(mu_);
    const void* key = g_rules.group_key(*state);
    auto& slot = groups_[key];
    if (!slot) {
      slot = std::make_unique<Group>();
      slot->key = key;
      slot->ops = state->ops;
      slot->batch = dynamic_cast<BatchRenewer*>(state->ops.get());
    }
    {
      std::lock_guard<std::mutex> state_guard(state->mu);
      if (state->registered_epoch != epoch_) {
        state->registered_epoch = epoch_;
        ++slot->members;
      }
    }
    slot->timers.push(Entry{at, seq, state, watch});
    wake_locked();
  }

  // `state` (released: its phase is no longer kHeld) stops counting in its store's group, and
  // the group goes if that was its last lease: the store is then referenced only by its owners
  // and closes when they let go (a process that exits right after a release still closes its
  // store). What is left of the group's released and lost leases goes with it; in a group that
  // stays, their wake-ups are dropped when they come (no search through the heap here). A
  // round under way keeps the group until it returns; the worker then drops it.
  void forget(const std::shared_ptr<LeaseState>& state) {
    std::unique_ptr<Group> dead;
    {
      std::lock_guard<std::mutex> guard(mu_);
      auto it = groups_.find(g_rules.group_key(*state));
      if (it == groups_.end()) return;
      unregister(*it->second, *state);
      dead = take_if_idle(it);
    }
    // `dead` (and with it maybe the store) goes here, with no keeper lock held.
  }

  void wake() noexcept {
    std::lock_guard<std::mutex> guard(mu_);
    woken_ = true;
    timer_cv_.notify_one();
  }

  unsigned threads() noexcept {
    std::lock_guard<std::mutex> guard(mu_);
    return (timer_started_ ? 1u : 0u) + workers_;
  }

  explicit Keeper(std::uint64_t epoch) : epoch_(epoch) {}

  // fork(): the parent holds the keeper's mutex across it, so that a child finds every lease's
  // entry in place (the keeper never holds it during a store call or a callback).
  void lock_for_fork() { mu_.lock(); }
  void unlock_after_fork() { mu_.unlock(); }

  // In a forked child, on the one thread there is (this keeper's mutex is still held by it, from
  // `lock_for_fork`): calls `f` with each lease this keeper knew of, duplicates included.
  template <class F>
  void for_each_state_in_child(F f) {
    for (auto& [key, g] : groups_) {
      for (const Entry& e : entries_of(g->timers)) f(e.state);
      for (const auto& sp : g->pending) f(sp);
      for (const auto& [round, batch] : g->flying) {
        for (const auto& sp : batch) f(sp);
      }
    }
  }

 private:
  // `state` no longer counts in `g` (keeper mutex held; takes the state's).
  void unregister(Group& g, LeaseState& state) {
    std::lock_guard<std::mutex> guard(state.mu);
    if (state.registered_epoch != epoch_) return;
    state.registered_epoch = 0;
    --g.members;
  }

  // Returns true if `g` has nothing left to do: no lease counts in it (its wake-ups and pending
  // renewals, if any, are of released or lost leases) and no round is under way.
  static bool idle(const Group& g) { return g.members == 0 && g.rounds == 0; }

  // Removes the group at `it` if it is idle, and returns it for the caller to destroy once the
  // keeper mutex is released (its `ops` may be the store's last reference).
  std::unique_ptr<Group> take_if_idle(std::map<const void*, std::unique_ptr<Group>>::iterator it) {
    if (!idle(*it->second)) return {};
    std::unique_ptr<Group> dead = std::move(it->second);
    groups_.erase(it);
    return dead;
  }

  void wake_locked() {
    if (!timer_started_) {
      timer_started_ = true;
      std::thread([this] { timer_loop(); }).detach();
    }
    woken_ = true;
    timer_cv_.notify_one();
  }

  void timer_loop() {
    std::unique_lock<std::mutex> lk(mu_);
    std::vector<Notice> notices;
    for (;;) {
      Steady::duration sleep = kMaxSleep;
      for (auto it = groups_.begin(); it != groups_.end();) {
        Group& g = *it->second;
        const Steady::time_point now = g.ops->now();
        while (!g.timers.empty() && g.timers.top().at <= now) {
          Entry e = g.timers.top();
          g.timers.pop();
          visit(g, e, now, notices);
        }
        if (!g.timers.empty()) sleep = std::min(sleep, g.timers.top().at - now);
        dispatch(g);
        if (idle(g)) {
          it = groups_.erase(it);
        } else {
          ++it;
        }
      }
      if (!notices.empty()) {
        lk.unlock();
        for (auto& n : notices) notify_lost(*n.state, n.reason);
        notices.clear();
        lk.lock();
        continue;
      }
      if (!woken_) timer_cv_.wait_for(lk, std::max<Steady::duration>(sleep, Steady::duration(0)));
      woken_ = false;
    }
  }

  // Looks at one due wake-up of `e.state` (keeper mutex held).
  void visit(Group& g, const Entry& e, Steady::time_point now, std::vector<Notice>& notices) {
    if (e.watch) {
      look_out(g, e, now, notices);
      return;
    }
    WakeDecision d = g_rules.decide(e.state, e.seq, now);
    switch (d.kind) {
      case WakeDecision::Kind::kStale:
        return;
      case WakeDecision::Kind::kGone:
        unregister(g, *e.state);
        return;
      case WakeDecision::Kind::kLost:
        unregister(g, *e.state);
        notices.push_back(Notice{e.state, std::move(d.reason)});
        return;
      case WakeDecision::Kind::kRenew:
        g.pending.push_back(e.state);
        break;
      case WakeDecision::Kind::kNext:
        break;
    }
    g.timers.push(Entry{d.next.at, d.next.seq, std::move(d.next.state)});
  }

  // A watch of a lease renewed elsewhere comes due (keeper mutex held): the lease is lost if its
  // deadline has passed, else watched again at its deadline, which renewals have moved. Only
  // whoever marks it lost (here or its scheduler, `mark_lost`) notifies.
  void look_out(Group& g, const Entry& e, Steady::time_point now, std::vector<Notice>& notices) {
    LeaseState& s = *e.state;
    bool drop = false;
    bool lost = false;
    bool again = false;
    Steady::time_point at;
    std::string reason;
    {
      std::lock_guard<std::mutex> guard(s.mu);
      if (e.seq != s.watch_seq) return;  // superseded by a watch that comes sooner
      s.watch_at = Steady::time_point::max();
      // Released or lost; or a forked child's copy, which `adopt_inherited` watches instead.
      if (s.phase != LeaseState::Phase::kHeld || s.inherited()) {
        drop = s.phase != LeaseState::Phase::kHeld;
      } else if (now >= s.deadline()) {
        lost = mark_lost(s);
        // Its scheduler would have said why, had it run: failed renewals, or none run at all.
        reason = s.renewed_here() && !s.sending && now < s.hold_until && s.renew_at < s.hold_until
                     ? "renewals failed or were not run in time (is the executor running?) and "
                       "the lease's end is near"
                     : loss_reason(s, now);
      } else {
        again = true;
        at = s.deadline();
        s.watch_at = at;
      }
    }
    if (drop || lost) unregister(g, s);
    if (lost) notices.push_back(Notice{e.state, std::move(reason)});
    if (again) g.timers.push(Entry{at, e.seq, e.state, true});
  }

  // Queues rounds for `g`'s due renewals, up to kRoundsPerStore at a time (keeper mutex held).
  void dispatch(Group& g) {
    std::size_t added = 0;
    const std::size_t wanted = rounds_wanted(g.pending.size());
    while (g.rounds < kRoundsPerStore && added < wanted) {
      ++g.rounds;
      ++added;
      ready_.push_back(&g);
      start_worker();
    }
  }

  // After a push to ready_ (keeper mutex held). An idle worker counts until it has woken, so
  // idle_ alone would let two pushes wake one worker and start none: the second round then waits
  // for a busy worker, maybe stuck in a hanging store, while fewer than kMaxWorkers run.
  void start_worker() {
    if (idle_ >= ready_.size()) {
      work_cv_.notify_one();
      return;
    }
    if (workers_ >= kMaxWorkers) {  // a busy worker takes it next
      if (idle_ > 0) work_cv_.notify_one();
      return;
    }
    ++workers_;
    std::thread([this] { worker_loop(); }).detach();
  }

  void worker_loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      while (ready_.empty()) {
        ++idle_;
        work_cv_.wait(lk);
        --idle_;
      }
      Group* g = ready_.front();
      ready_.pop_front();
      std::vector<std::shared_ptr<LeaseState>> batch;
      const std::size_t take = round_share(g->pending.size());
      const auto cut = g->pending.end() - static_cast<std::ptrdiff_t>(take);
      batch.assign(cut, g->pending.end());
      g->pending.erase(cut, g->pending.end());
      const std::uint64_t round_id = ++rounds_started_;
      g->flying.emplace(round_id, batch);
      std::shared_ptr<LeaseOps> ops = g->ops;
      BatchRenewer* renewer = g->batch;
      lk.unlock();
      std::vector<Wake> next;
      RoundEnd end;
      std::string error;
      {
        RenewalRound round;
        g_rules.begin_round(round, std::move(ops), batch, Steady::duration::max(), next);
        if (!round.going.empty()) {
          g_rules.send_round(round, renewer);
          g_rules.end_round(round, end);
          error = std::move(round.error);
          // The hooks run with no lock held; the undo blocks this worker only.
          g_rules.undo(*round.ops, end);
        }
        // Only the group holds the store now (it stays while this round counts in `rounds`).
      }
      for (auto& w : end.next) next.push_back(std::move(w));
      end.next.clear();
      batch.clear();
      lk.lock();
      for (auto& w : next) {
        std::lock_guard<std::mutex> state_guard(w.state->mu);
        // Released since the round looked at it: nothing more to do for it.
        if (w.state->phase == LeaseState::Phase::kReleased) continue;
        g->timers.push(Entry{w.at, w.seq, w.state});
      }
      g->flying.erase(round_id);
      --g->rounds;
      dispatch(*g);
      woken_ = true;
      timer_cv_.notify_one();
      // The round of a lease released meanwhile may have been its group's last business.
      std::unique_ptr<Group> dead = take_if_idle(groups_.find(g->key));
      if (!end.failed.empty() || !end.lost.empty() || dead) {
        lk.unlock();
        g_rules.report(end, error);
        next.clear();
        dead.reset();  // maybe the store's last reference: destroyed with no keeper lock held
        lk.lock();
      }
    }
  }

  std::mutex mu_;
  std::condition_variable timer_cv_;
  std::condition_variable work_cv_;
  std::map<const void*, std::unique_ptr<Group>> groups_;  // guarded by mu_
  std::deque<Group*> ready_;                              // guarded by mu_
  bool timer_started_ = false;                            // guarded by mu_
  bool woken_ = false;                                    // guarded by mu_
  unsigned workers_ = 0;                                  // guarded by mu_
  unsigned idle_ = 0;                                     // guarded by mu_
  std::uint64_t rounds_started_ = 0;                      // guarded by mu_
  const std::uint64_t epoch_;
};

// Never destroyed: its threads may run until the process exits.
std::atomic<Keeper*> g_keeper{nullptr};
std::mutex g_keeper_mu;
// In a forked child: the parent's keeper, whose leases the child's keeper has yet to watch, and
// the leases the parent's schedulers knew.
std::atomic<Keeper*> g_inherited{nullptr};
std::vector<std::shared_ptr<LeaseState>>* g_inherited_scheduled =
    nullptr;                       // guarded by g_keeper_mu
std::atomic<bool> g_adopt{false};  // either of the two is there to adopt

// The live `LeaseScheduler`s, for `wake_keeper` and fork.
std::mutex g_schedulers_mu;
std::vector<std::weak_ptr<LeaseScheduler>> g_schedulers;  // guarded by g_schedulers_mu
// Between before_fork and the after-fork handlers: the schedulers whose locks are held.
std::vector<std::shared_ptr<LeaseScheduler>>* g_forking = nullptr;

void before_fork() noexcept {
  g_keeper_mu.lock();
  if (Keeper* k = g_keeper.load()) k->lock_for_fork();
  g_schedulers_mu.lock();
  try {
    auto held = std::make_unique<std::vector<std::shared_ptr<LeaseScheduler>>>();
    for (const auto& w : g_schedulers) {
      if (auto s = w.lock()) held->push_back(std::move(s));
    }
    for (const auto& s : *held) s->lock_for_fork();
    g_forking = held.release();
  } catch (...) {  // out of memory: a child may then find a scheduler's lease mid-update
  }
}

void after_fork_in_parent() noexcept {
  if (g_forking) {
    for (const auto& s : *g_forking) s->unlock_after_fork();
    delete g_forking;
    g_forking = nullptr;
  }
  g_schedulers_mu.unlock();
  if (Keeper* k = g_keeper.load()) k->unlock_after_fork();
  g_keeper_mu.unlock();
}

void reset_in_child() noexcept {
  // The child has none of the parent's threads: it starts a keeper of its own (the old one is
  // left alone; its mutex stays held). The parent's leases stay the parent's: the child
  // renews none of them (`LeaseState::inherited`). A lease's mutex may have been held by a
  // thread that does not exist here: each is made afresh while this is the only thread.
  auto fresh = [](const std::shared_ptr<LeaseState>& sp) {
    new (&sp->mu) std::mutex;
    new (&sp->cv) std::condition_variable;
  };
  Keeper* old = g_keeper.load();
  if (old) old->for_each_state_in_child(fresh);
  std::vector<std::shared_ptr<LeaseState>>* scheduled = nullptr;
  if (g_forking) {
    try {
      scheduled = new std::vector<std::shared_ptr<LeaseState>>;
    } catch (...) {
    }
    for (const auto& s : *g_forking) {
      s->reset_in_child([&](const std::shared_ptr<LeaseState>& sp) {
        fresh(sp);
        if (!scheduled) return;
        try {
          scheduled->push_back(sp);
        } catch (...) {
        }
      });
    }
    delete g_forking;
    g_forking = nullptr;
  }
  new (&g_schedulers_mu) std::mutex;
  const std::uint64_t epoch = g_epoch.fetch_add(1) + 1;
  g_inherited.store(old);
  g_inherited_scheduled = scheduled;
  g_adopt.store(old || scheduled);
  g_keeper.store(new Keeper(epoch));
  new (&g_keeper_mu) std::mutex;
}

Keeper& keeper();

// In a forked child, on first use of its keeper: watches the parent's leases until their
// deadlines (no thread is started before the child asks for anything: a child that only calls
// exec starts none).
void adopt_inherited(Keeper& k) {
  if (!g_adopt.exchange(false)) return;
  std::vector<std::shared_ptr<LeaseState>> states;
  if (Keeper* old = g_inherited.exchange(nullptr)) {
    old->for_each_state_in_child(
        [&](const std::shared_ptr<LeaseState>& sp) { states.push_back(sp); });
  }
  {
    std::lock_guard<std::mutex> guard(g_keeper_mu);
    if (g_inherited_scheduled) {
      for (auto& sp : *g_inherited_scheduled) states.push_back(std::move(sp));
      delete g_inherited_scheduled;
      g_inherited_scheduled = nullptr;
    }
  }
  std::sort(states.begin(), states.end());
  states.erase(std::unique(states.begin(), states.end()), states.end());
  for (const auto& sp : states) {
    LeaseState& s = *sp;
    std::uint64_t seq;
    Steady::time_point at;
    {
      std::lock_guard<std::mutex> guard(s.mu);
      if (s.phase != LeaseState::Phase::kHeld) continue;
      s.queued = false;
      s.registered_epoch = 0;
      seq = ++s.seq;
      at = next_wake(s);
    }
    k.schedule(sp, at, seq);
  }
}

Keeper& keeper() {
  Keeper* k = g_keeper.load(std::memory_order_acquire);
  if (!k) {
    std::lock_guard<std::mutex> guard(g_keeper_mu);
    k = g_keeper.load();
    if (!k) {
      static const bool installed = [] {
        pthread_atfork(&before_fork, &after_fork_in_parent, &reset_in_child);
        return true;
      }();
      (void)installed;
      k = new Keeper(g_epoch.load());
      g_keeper.store(k, std::memory_order_release);
    }
  }
  if (g_adopt.load(std::memory_order_acquire)) [[unlikely]]
    adopt_inherited(*k);
  return *k;
}

// Makes the keeper's thread watch `state`, renewed by a `LeaseScheduler`, until it is released or
// lost: the scheduler may not run (a stopped or blocked executor), and the loss must still be
// signalled at the deadline. One live watch per lease; one that comes sooner replaces it.
void watch_deadline(const std::shared_ptr<LeaseState>& state) {
  LeaseState& s = *state;
  std::uint64_t seq;
  Steady::time_point at;
  {
    std::lock_guard<std::mutex> guard(s.mu);
    if (s.phase != LeaseState::Phase::kHeld) return;
    at = s.deadline();
    if (s.watch_at <= at) return;  // armed already; it moves itself on as renewals come
    s.watch_at = at;
    seq = ++s.watch_seq;
  }
  keeper().schedule(state, at, seq, true);
}

void Rules::orphan(const std::shared_ptr<LeaseState>& state, const LeaseScheduler* from) {
  LeaseState& s = *state;
  std::uint64_t seq;
  Steady::time_point at;
  {
    std::lock_guard<std::mutex> guard(s.mu);
    const auto current = s.scheduler.lock();
    if (current && current.get() != from) return;  // kept alive elsewhere since
    s.scheduler.reset();
    s.renewer_gone = true;
    s.queued = false;
    if (s.phase != LeaseState::Phase::kHeld) return;
    seq = ++s.seq;
    at = next_wake(s);
  }
  keeper().schedule(state, at, seq);
}

void Rules::enlist(std::weak_ptr<LeaseScheduler> scheduler) {
  (void)keeper();  // installs the fork handlers
  std::lock_guard<std::mutex> guard(g_schedulers_mu);
  std::erase_if(g_schedulers, [](const auto& w) { return w.expired(); });
  g_schedulers.push_back(std::move(scheduler));
}

}  // namespace

std::uint64_t keeper_epoch() noexcept {
  return g_epoch.load(std::memory_order_relaxed);
}

KeeperRules& keeper_rules() noexcept {
  return g_rules;
}

void keeper_watch_inherited() {
  if (g_adopt.load(std::memory_order_acquire)) (void)keeper();
}

void keeper_schedule(const std::shared_ptr<LeaseState>& state, Steady::time_point at,
                     std::uint64_t seq) {
  std::shared_ptr<LeaseScheduler> scheduler;
  if (!state->inherited()) {  // a forked child's copy is only watched, by the keeper
    std::lock_guard<std::mutex> guard(state->mu);
    scheduler = state->scheduler.lock();
  }
  if (scheduler) {
    if (scheduler->schedule(g_rules, state, at, seq)) {
      watch_deadline(state);
      return;
    }
    g_rules.orphan(state, scheduler.get());  // its AsyncLockApi is gone
    return;
  }
  keeper().schedule(state, at, seq);
}

void keeper_forget(const std::shared_ptr<LeaseState>& state) {
  std::shared_ptr<LeaseScheduler> scheduler;
  {
    std::lock_guard<std::mutex> guard(state->mu);
    scheduler = state->scheduler.lock();
  }
  if (scheduler) scheduler->forget(*state);
  // No keeper yet (or only a forked child's new one): nothing of `state` is there.
  if (Keeper* k = g_keeper.load(std::memory_order_acquire)) k->forget(state);
}

void await_send(LeaseState& s, std::unique_lock<std::mutex>& lk) {
  const std::uint64_t epoch = keeper_epoch();
  auto done = [&] { return !s.sending || s.sending_epoch != epoch; };
  while (!done()) {
    if (!s.send_started) {
      // A round still waiting for a thread: taken back, not waited for (the thread it waits for
      // may be this one, or busy with holders waiting here). The round leaves this lease out.
      s.sending = false;
      s.sending_until = Steady::time_point::max();
      ++s.send_id;
      s.cv.notify_all();
      return;
    }
    if (s.sending_until == Steady::time_point::max()) {
      s.cv.wait(lk);
    } else if (s.cv.wait_until(lk, s.sending_until) == std::cv_status::timeout && !done() &&
               Steady::now() >= s.sending_until) {
      // Its reply would be read by a thread that waits here (an executor's own thread): the
      // renewal counts as failed, and its outcome, if it comes, is dropped.
      s.sending = false;
      s.sending_until = Steady::time_point::max();
      ++s.send_id;
      s.cv.notify_all();
    }
  }
}

Steady::time_point next_wake(const LeaseState& s) {
  Steady::time_point at = s.deadline();
  if (s.renewed_here() && !s.queued && !s.sending && s.renew_at < s.hold_until) {
    at = std::min(at, s.renew_at);
  }
  return at;
}

bool mark_lost(LeaseState& s) {
  if (s.phase != LeaseState::Phase::kHeld) return false;
  s.phase = LeaseState::Phase::kLost;
  s.lost.store(true, std::memory_order_release);
  return true;
}

void notify_lost(LeaseState& s, std::string_view reason) noexcept {
  s.stop.request_stop();
  if (s.inherited()) return;  // a forked child: `on_lost` is the parent's, about its own lease
  std::function<void(std::string_view)> on_lost;
  {
    std::lock_guard<std::mutex> guard(s.mu);
    on_lost = s.options.on_lost;
  }
  if (!on_lost) return;
  std::lock_guard<std::recursive_mutex> hooks(s.hooks_mu);  // after an error being reported
  try {
    on_lost(reason);
  } catch (...) {  // a hook that throws cannot be told anything more
  }
}

void wake_keeper() noexcept {
  if (Keeper* k = g_keeper.load(std::memory_order_acquire)) k->wake();
  std::vector<std::shared_ptr<LeaseScheduler>> live;
  try {
    std::lock_guard<std::mutex> guard(g_schedulers_mu);
    for (const auto& w : g_schedulers) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  } catch (...) {  // out of memory: they look at their clocks within kMaxSleep anyway
  }
  for (const auto& s : live) s->wake();
}

unsigned keeper_threads() noexcept {
  Keeper* k = g_keeper.load(std::memory_order_acquire);
  return k ? k->threads() : 0;
}

}  // namespace lockkit::detail

namespace lockkit {

void ManualClock::advance(std::chrono::steady_clock::duration d) noexcept {
  if (d.count() > 0) ticks_.fetch_add(d.count(), std::memory_order_acq_rel);
  detail::wake_keeper();  // leases on this clock may have come due
}

}  // namespace lockkit
