// SPDX-License-Identifier: MIT
// AsyncLockApi's keep-alive: one asio::steady_timer on the executor wakes the leases it keeps
// alive, by the keeper's own rules (`KeeperRules`: when to renew, when a lease is lost, what an
// outcome means), and sends their renewals, per store in batches, natively (redis://: pipelined
// on the executor's connection) or on the blocking pool, whose outcome comes back to the
// executor. No keeper thread renews them while the AsyncLockApi lives; the keeper's timer thread
// only watches their deadlines (`keeper_schedule`), so that a lease whose executor stops running
// is still declared lost in time.
#include "async/async_keeper.hpp"

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "async/blocking_pool.hpp"
#include "core/wake_queue.hpp"

namespace lockkit::detail {

namespace {

using Steady = std::chrono::steady_clock;

struct Entry {
  Steady::time_point at;
  std::uint64_t seq;
  std::shared_ptr<LeaseState> state;
};

// The leases of one store (one clock, one batch).
struct Group {
  std::shared_ptr<LeaseOps> ops;
  BatchRenewer* batch = nullptr;   // the blocking store's batch, if any
  AsyncRenewer* native = nullptr;  // the native async path, if any
  WakeQueue<Entry> timers;
  std::vector<std::shared_ptr<LeaseState>> pending;  // due: for the next round
  unsigned rounds = 0;                               // under way
  // The leases kept alive here: the group (and the timer) stays while one is left.
  std::unordered_set<const LeaseState*> members;
  // The rounds under way, by number: a forked child and `close` find their leases here.
  std::map<std::uint64_t, std::vector<std::shared_ptr<LeaseState>>> flying;
};

// One round to start, taken from a group.
struct Launch {
  const void* key = nullptr;
  std::uint64_t id = 0;
  std::shared_ptr<LeaseOps> ops;
  BatchRenewer* batch = nullptr;
  AsyncRenewer* native = nullptr;
  std::vector<std::shared_ptr<LeaseState>> states;
};

}  // namespace

class AsyncKeeper final : public LeaseScheduler, public std::enable_shared_from_this<AsyncKeeper> {
 public:
  explicit AsyncKeeper(const asio::any_io_executor& ex) : ex_(ex) { timer_.emplace(ex); }

  bool schedule(KeeperRules& rules, const std::shared_ptr<LeaseState>& state, Steady::time_point at,
                std::uint64_t seq) override {
    bool first = false;
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (closed_) return false;
      first = !rules_;
      rules_ = &rules;
      const void* key = rules.group_key(*state);
      Group& g = groups_[key];
      if (!g.ops) {
        g.ops = state->ops;
        g.batch = dynamic_cast<BatchRenewer*>(g.ops.get());
        g.native = dynamic_cast<AsyncRenewer*>(g.ops.get());
      }
      g.timers.push(Entry{at, seq, state});
      g.members.insert(state.get());
      arm_locked(Steady::now() + std::max<Steady::duration>(at - g.ops->now(), {}));
    }
    // Outside the lock: the keeper's registry is never taken under it (see lock_for_fork).
    if (first) rules.enlist(weak_from_this());
    return true;
  }

  void wake() noexcept override {
    std::lock_guard<std::mutex> guard(mu_);
    if (closed_ || groups_.empty()) return;
    try {
      arm_locked(Steady::now());
    } catch (...) {  // out of memory: the next poll comes within kMaxSleep
    }
  }

  void forget(const LeaseState& state) noexcept override {
    std::lock_guard<std::mutex> guard(mu_);
    if (closed_ || !rules_) return;
    auto it = groups_.find(rules_->group_key(state));
    if (it == groups_.end()) return;
    it->second.members.erase(&state);
    drop_if_idle(it);
  }

  void lock_for_fork() noexcept override { mu_.lock(); }
  void unlock_after_fork() noexcept override { mu_.unlock(); }
  void reset_in_child(
      const std::function<void(const std::shared_ptr<LeaseState>&)>& f) noexcept override {
    for (auto& [key, g] : groups_) {
      for (const Entry& e : entries_of(g.timers)) f(e.state);
      for (const auto& sp : g.pending) f(sp);
      for (const auto& [id, batch] : g.flying) {
        for (const auto& sp : batch) f(sp);
      }
    }
    new (&mu_) std::mutex;  // held by the parent's forking thread, which is not here
  }

  void close() noexcept {
    std::vector<std::shared_ptr<LeaseState>> states;
    KeeperRules* rules = nullptr;
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (closed_) return;
      closed_ = true;
      rules = rules_;
      // The executor's context may be destroyed next: the timer goes now (its pending wait
      // completes as aborted, or is destroyed with the context), so that nothing here touches
      // the context afterwards, wherever this object's last reference drops.
      timer_.reset();
      ex_.reset();
      try {
        for (auto& [key, g] : groups_) {
          for (const Entry& e : entries_of(g.timers)) states.push_back(e.state);
          for (const auto& sp : g.pending) states.push_back(sp);
          for (const auto& [id, batch] : g.flying) {
            states.insert(states.end(), batch.begin(), batch.end());
          }
        }
      } catch (...) {  // out of memory: those left out are no longer watched
      }
      groups_.clear();
    }
    if (!rules) return;
    std::sort(states.begin(), states.end());
    states.erase(std::unique(states.begin(), states.end()), states.end());
    for (const auto& sp : states) {
      try {
        rules->orphan(sp, this);
      } catch (...) {  // out of memory: no longer watched; `held()` still turns false in time
      }
    }
  }

 private:
  // Returns true if `state` is still kept alive by this scheduler (not moved elsewhere since).
  bool kept_here(LeaseState& state) {
    std::lock_guard<std::mutex> guard(state.mu);
    return state.scheduler.lock().get() == this;
  }

  // Drops the group at `it` once no lease of it is left here and no round is under way; with
  // the last group, the timer's wait goes too, so that the executor may run out of work (mu_
  // held).
  void drop_if_idle(std::map<const void*, Group>::iterator it) {
    if (!it->second.members.empty() || it->second.rounds != 0) return;
    groups_.erase(it);
    if (!groups_.empty() || armed_ == Steady::time_point::max()) return;
    armed_ = Steady::time_point::max();
    ++generation_;
    timer_->cancel();
  }

  // Makes the timer fire at `at` (steady clock) at the latest, and within kMaxSleep (mu_ held).
  void arm_locked(Steady::time_point at) {
    at = std::min(at, Steady::now() + kMaxSleep);
    if (armed_ <= at) return;  // a wait that ends sooner is pending
    armed_ = at;
    const std::uint64_t generation = ++generation_;
    timer_->expires_at(at);  // a pending wait completes as aborted, with an older generation
    timer_->async_wait([self = shared_from_this(), generation](const std::error_code&) {
      self->on_timer(generation);
    });
  }

  // On the executor: looks at the due wake-ups, starts rounds, re-arms.
  void on_timer(std::uint64_t generation) noexcept {
    std::vector<std::pair<std::shared_ptr<LeaseState>, std::string>> lost;
    std::vector<Launch> launches;
    KeeperRules* rules = nullptr;
    try {
      std::lock_guard<std::mutex> guard(mu_);
      if (closed_ || generation != generation_) return;
      armed_ = Steady::time_point::max();
      rules = rules_;
      Steady::time_point soonest = Steady::time_point::max();
      for (auto it = groups_.begin(); it != groups_.end();) {
        Group& g = it->second;
        const Steady::time_point now = g.ops->now();
        while (!g.timers.empty() && g.timers.top().at <= now) {
          Entry e = g.timers.top();
          g.timers.pop();
          WakeDecision d = rules->decide(e.state, e.seq, now);
          switch (d.kind) {
            case WakeDecision::Kind::kStale:
              if (!kept_here(*e.state)) g.members.erase(e.state.get());
              continue;
            case WakeDecision::Kind::kGone:
              g.members.erase(e.state.get());
              continue;
            case WakeDecision::Kind::kLost:
              g.members.erase(e.state.get());
              lost.emplace_back(std::move(e.state), std::move(d.reason));
              continue;
            case WakeDecision::Kind::kRenew:
              g.pending.push_back(e.state);
              break;
            case WakeDecision::Kind::kNext:
              break;
          }
          g.timers.push(Entry{d.next.at, d.next.seq, std::move(d.next.state)});
        }
        take_rounds(it->first, g, launches);
        if (!g.timers.empty()) {
          soonest = std::min(
              soonest, Steady::now() + std::max<Steady::duration>(g.timers.top().at - now, {}));
        }
        if (g.members.empty() && g.rounds == 0) {
          it = groups_.erase(it);
        } else {
          ++it;
        }
      }
      if (!groups_.empty()) arm_locked(soonest);  // else no wait: `run()` may return
    } catch (...) {  // out of memory: what was taken still runs; the rest at the next poll
    }
    for (auto& [state, reason] : lost) rules->notify_lost(*state, reason);
    for (auto& launch : launches) start_round(*rules, std::move(launch));
  }

  // Takes `g`'s due renewals as rounds to start (mu_ held): natively, all of them (they go out
  // pipelined, kMaxRound per round); on the blocking pool, at most kRoundsPerStore at a time,
  // each a share, as the keeper's workers take them.
  void take_rounds(const void* key, Group& g, std::vector<Launch>& launches) {
    while (!g.pending.empty() && (g.native || g.rounds < kRoundsPerStore)) {
      const std::size_t take =
          g.native ? std::min(g.pending.size(), kMaxRound) : round_share(g.pending.size());
      Launch launch{key, ++rounds_started_, g.ops, g.batch, g.native, {}};
      const auto cut = g.pending.end() - static_cast<std::ptrdiff_t>(take);
      launch.states.assign(cut, g.pending.end());
      g.pending.erase(cut, g.pending.end());
      g.flying.emplace(launch.id, launch.states);
      ++g.rounds;
      launches.push_back(std::move(launch));
    }
  }

  // On the executor, no lock held: asks `should_renew`, marks the leases sending and sends them.
  void start_round(KeeperRules& rules, Launch launch) noexcept {
    try {
      auto round = std::make_shared<RenewalRound>();
      std::vector<Wake> next;
      const Steady::duration give_up =
          launch.native ? launch.native->reply_bound() : Steady::duration::max();
      rules.begin_round(*round, launch.ops, launch.states, give_up, next);
      if (round->going.empty()) {
        RoundEnd end;
        end.next = std::move(next);
        after_round(rules, launch, nullptr, std::move(end), {});
        return;
      }
      if (launch.native) {
        send_native(rules, std::move(launch), std::move(round), std::move(next));
        return;
      }
      auto self = shared_from_this();
      asio::post(blocking_pool(), [self, &rules, launch = std::move(launch), round,
                                   next = std::move(next)]() mutable {
        // The store call and the outcome on the lease happen here, so that a holder waiting for
        // this renewal (a release on the executor's own thread) never waits for the executor.
        rules.send_round(*round, launch.batch);
        RoundEnd end;
        end.next = std::move(next);
        rules.end_round(*round, end);
        std::string error = std::move(round->error);
        round.reset();
        self->back_to_executor(rules, std::move(launch), std::move(end), std::move(error));
      });
    } catch (...) {  // out of memory: the leases stay queued; their deadlines still count
    }
  }

  void send_native(KeeperRules& rules, Launch launch, std::shared_ptr<RenewalRound> round,
                   std::vector<Wake> next) {
    round->start = round->ops->now();
    std::span<char> skipped(round->skipped);
    auto self = shared_from_this();
    auto shared_next = std::make_shared<std::vector<Wake>>(std::move(next));
    auto shared_launch = std::make_shared<Launch>(launch);
    const bool sent =
        launch.native->renew_async(round->requests, skipped,
                                   [self, &rules, round, shared_launch, shared_next](
                                       std::vector<ExtendOutcome> outcomes, std::string error) {
                                     // On the executor (the connection's strand), before any later
                                     // reply is read: the lease is no longer sending when the
                                     // completion of a release sent after it runs.
                                     round->outcomes = std::move(outcomes);
                                     round->error = std::move(error);
                                     round->done = round->ops->now();
                                     RoundEnd end;
                                     end.next = std::move(*shared_next);
                                     rules.end_round(*round, end);
                                     self->after_round(rules, *shared_launch, round->ops,
                                                       std::move(end), std::move(round->error));
                                   });
    // Those left out (a release was sent first, whose completion may come before this round's
    // replies) stop sending now; they are retried shortly unless released meanwhile.
    RenewalRound left;
    left.ops = round->ops;
    for (std::size_t i = 0; i < skipped.size(); ++i) {
      if (!sent || skipped[i]) {
        left.going.push_back(round->going[i]);
        left.requests.push_back(round->requests[i]);
        left.ttls.push_back(round->ttls[i]);
        left.sends.push_back(round->sends[i]);
        left.outcomes.push_back(ExtendOutcome::kFailed);
        left.skipped.push_back(static_cast<char>(skipped[i] ? 1 : 0));
      }
    }
    if (left.going.empty()) return;
    left.start = round->start;
    left.done = round->ops->now();
    if (!sent) left.error = "the AsyncLockApi is gone";
    RoundEnd end;
    if (!sent) end.next = std::move(*shared_next);
    rules.end_round(left, end);
    if (sent) {
      // The round goes on for the others; only these wake-ups to add.
      add_wakes(rules, std::move(end.next));
      rules.report(end, left.error);
      return;
    }
    after_round(rules, launch, round->ops, std::move(end), std::move(left.error));
  }

  // From a pool thread: the rest on the executor, unless the keeper has closed.
  void back_to_executor(KeeperRules& rules, Launch launch, RoundEnd end,
                        std::string error) noexcept {
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (!closed_) {
        try {
          // Under the lock: `close` (before the executor's context goes) waits for it.
          asio::post(*ex_, [self = shared_from_this(), &rules, launch = std::move(launch),
                            end = std::move(end), error = std::move(error)]() mutable {
            auto ops = launch.ops;
            self->after_round(rules, launch, std::move(ops), std::move(end), std::move(error));
          });
          return;
        } catch (...) {  // out of memory: handled here instead
        }
      }
    }
    closed_after(rules, std::move(launch.ops), end, error);
  }

  // On the executor (or where a native round failed at once): schedules the next wake-ups,
  // starts the group's next rounds, calls the hooks, undoes renewals of lost leases on the pool.
  void after_round(KeeperRules& rules, const Launch& launch, std::shared_ptr<LeaseOps> ops,
                   RoundEnd end, std::string error) noexcept {
    std::vector<Launch> launches;
    bool closed = false;
    try {
      std::lock_guard<std::mutex> guard(mu_);
      closed = closed_;
      if (!closed) {
        auto it = groups_.find(launch.key);
        if (it != groups_.end()) {
          Group& g = it->second;
          g.flying.erase(launch.id);
          --g.rounds;
          for (const auto& sp : launch.states) {
            std::lock_guard<std::mutex> state_guard(sp->mu);
            if (sp->phase != LeaseState::Phase::kHeld) g.members.erase(sp.get());
          }
          for (auto& w : end.next) {
            const Steady::duration in = w.at - g.ops->now();
            g.timers.push(Entry{w.at, w.seq, std::move(w.state)});
            arm_locked(Steady::now() + std::max<Steady::duration>(in, {}));
          }
          end.next.clear();
          take_rounds(launch.key, g, launches);
          drop_if_idle(it);
        }
      }
    } catch (...) {  // out of memory: the leases are watched again at the next poll, or lapse
    }
    if (closed) {
      closed_after(rules, std::move(ops), end, error);
      return;
    }
    report(rules, std::move(ops), end, error);
    for (auto& l : launches) start_round(rules, std::move(l));
  }

  // Adds wake-ups of a round that goes on (on the executor).
  void add_wakes(KeeperRules& rules, std::vector<Wake> next) {
    bool closed = false;
    {
      std::lock_guard<std::mutex> guard(mu_);
      closed = closed_;
      if (!closed) {
        for (auto& w : next) {
          auto it = groups_.find(rules.group_key(*w.state));
          if (it == groups_.end()) continue;  // the round under way keeps it: not reached
          Group& g = it->second;
          const Steady::duration in = w.at - g.ops->now();
          g.timers.push(Entry{w.at, w.seq, std::move(w.state)});
          arm_locked(Steady::now() + std::max<Steady::duration>(in, {}));
        }
        return;
      }
    }
    for (auto& w : next) rules.orphan(w.state, this);
  }

  // A round ended after `close`: its leases go to the keeper's thread, watched only.
  void closed_after(KeeperRules& rules, std::shared_ptr<LeaseOps> ops, RoundEnd& end,
                    std::string_view error) noexcept {
    for (auto& w : end.next) {
      try {
        rules.orphan(w.state, this);
      } catch (...) {
      }
    }
    end.next.clear();
    report(rules, std::move(ops), end, error);
  }

  void report(KeeperRules& rules, std::shared_ptr<LeaseOps> ops, RoundEnd& end,
              std::string_view error) noexcept {
    rules.report(end, error);  // the hooks post to the executor themselves (AsyncEngine)
    if (end.undo.empty() || !ops) return;
    try {
      asio::post(blocking_pool(), [&rules, ops = std::move(ops), end = std::move(end)]() mutable {
        rules.undo(*ops, end);
      });
    } catch (...) {  // out of memory: those leases run out by their ttl
    }
  }

  std::mutex mu_;
  std::optional<asio::any_io_executor> ex_;               // guarded by mu_; empty once closed
  std::optional<asio::steady_timer> timer_;               // guarded by mu_; empty once closed
  Steady::time_point armed_ = Steady::time_point::max();  // guarded by mu_
  std::uint64_t generation_ = 0;                          // guarded by mu_: the live wait
  std::map<const void*, Group> groups_;                   // guarded by mu_
  std::uint64_t rounds_started_ = 0;                      // guarded by mu_
  KeeperRules* rules_ = nullptr;                          // guarded by mu_
  bool closed_ = false;                                   // guarded by mu_
};

std::shared_ptr<AsyncKeeper> make_async_keeper(const asio::any_io_executor& ex) {
  return std::make_shared<AsyncKeeper>(ex);
}

std::shared_ptr<LeaseScheduler> as_scheduler(const std::shared_ptr<AsyncKeeper>& keeper) {
  return keeper;
}

void close_async_keeper(AsyncKeeper& keeper) noexcept {
  keeper.close();
}

}  // namespace lockkit::detail
