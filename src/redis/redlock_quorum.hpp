// SPDX-License-Identifier: MIT
// Internal: the redlock:// quorum decisions, written once for the blocking store
// (redlock_store.cpp) and AsyncLockApi's native path (src/async/redlock_native_client.cpp).
#ifndef LOCKKIT_SRC_REDIS_REDLOCK_QUORUM_HPP_
#define LOCKKIT_SRC_REDIS_REDLOCK_QUORUM_HPP_

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lockkit/errors.hpp"

namespace lockkit::detail::redis {

// What INFO server says of a server's run.
struct ServerInfo {
  std::string run_id;
  std::chrono::milliseconds uptime{0};  // whole seconds, rounded down: errs on the safe side
};

inline ServerInfo parse_server_info(std::string_view text) {
  auto field = [&](std::string_view name) -> std::string_view {
    auto at = text.find(name);
    if (at == std::string_view::npos) return {};
    auto value = text.substr(at + name.size());
    return value.substr(0, value.find_first_of("\r\n"));
  };
  ServerInfo out;
  out.run_id = std::string(field("\nrun_id:"));
  std::int64_t seconds = 0;
  auto up = field("\nuptime_in_seconds:");
  std::from_chars(up.data(), up.data() + up.size(), seconds);
  out.uptime = std::chrono::seconds(seconds);
  return out;
}

// One node's answer in a round.
enum class Vote { kPending, kYes, kNo, kError, kInDoubt };

struct Answer {
  Vote vote = Vote::kPending;
  std::uint64_t fence = 0;                 // acquire: the node's fence; status: the holder's fence
  std::uint64_t recorded = 0;              // acquire: the longest ttl the node had recorded (ms)
  bool known = false;                      // acquire: the node's record names its current run
  std::string run_id;                      // acquire: the node's run that answered
  std::chrono::milliseconds uptime{0};     // acquire: the node's uptime
  std::chrono::milliseconds remaining{0};  // status
  ErrorKind kind = ErrorKind::kUnavailable;
  std::string message;
};

// A node that failed: "no", or in doubt when the request may have been applied (its reply was
// lost), so that a failed attempt takes it back.
inline Answer failed_answer(ErrorKind kind, std::string message, bool maybe_applied) {
  Answer a;
  a.vote = maybe_applied ? Vote::kInDoubt : Vote::kError;
  a.kind = kind;
  a.message = std::move(message);
  return a;
}

// Which runs of which nodes lockkit has seen before (their lock-delay is over): the decision
// reads and updates it. The blocking store keeps it per node; the native path per connection.
// Thread safety: the implementation's (the store's is safe to share; the native path's is
// called on its strand only).
class RedlockRuns {
 public:
  virtual bool settled(std::size_t node, const std::string& run_id) = 0;
  virtual void settle(std::size_t node, const std::string& run_id) = 0;

 protected:
  ~RedlockRuns() = default;
};

// The shared state of one round; the blocking store adds its mutex and condition variable.
struct QuorumRound {
  explicit QuorumRound(std::size_t n) : answers(n), pending(n) {}
  std::vector<Answer> answers;
  std::size_t pending;
  bool decided = false;
  bool granted = false;     // the outcome, once decided
  std::uint64_t fence = 0;  // the lock's fence, once granted
  // acquire: the nodes whose lock-delay this round ended, with their run ids, to be recorded
  // on them (HSET run) before the call returns
  std::vector<std::pair<std::size_t, std::string>> ended;
};

// Reads node `i`'s reply to kRedlockAcquireScript, the node being in run `run_id` for
// `uptime`. Raises `max_ttl` to the ttl a known node had recorded. Never throws.
inline Answer acquire_answer(const redisReply& r, std::size_t i, const std::string& run_id,
                             std::chrono::milliseconds uptime, RedlockRuns& runs,
                             std::atomic<std::uint64_t>& max_ttl) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || r.element[0]->type != REDIS_REPLY_INTEGER) {
    return failed_answer(ErrorKind::kProtocol,
                         r.type == REDIS_REPLY_ERROR ? "server error: " + std::string(r.str, r.len)
                                                     : std::string("unexpected reply"),
                         false);
  }
  if (r.element[0]->integer < 0) {
    return failed_answer(ErrorKind::kProtocol,
                         "an internal name holds a key that is not lockkit's; names containing "
                         "\"lockkit:{\" are reserved for lockkit",
                         false);
  }
  Answer a;
  a.fence = static_cast<std::uint64_t>(r.element[0]->integer);
  a.vote = a.fence != 0 ? Vote::kYes : Vote::kNo;
  const redisReply& rec = *r.element[1];
  if (rec.type == REDIS_REPLY_INTEGER && rec.integer >= 0) {
    a.recorded = static_cast<std::uint64_t>(rec.integer);
  } else if (rec.type == REDIS_REPLY_STRING) {
    auto [ptr, ec] = std::from_chars(rec.str, rec.str + rec.len, a.recorded);
    if (ec != std::errc() || ptr != rec.str + rec.len) {
      return failed_answer(ErrorKind::kProtocol, "unexpected reply", false);
    }
  } else {
    return failed_answer(ErrorKind::kProtocol, "unexpected reply", false);
  }
  const redisReply& run = *r.element[2];
  // Known: the node's record names its current run (lockkit saw it before this one), or we
  // ended its lock-delay ourselves (and are recording its run with this very call).
  a.known = !run_id.empty() &&
            ((run.type == REDIS_REPLY_STRING && std::string_view(run.str, run.len) == run_id) ||
             runs.settled(i, run_id));
  a.uptime = uptime;
  // Only an answer not known yet needs its run later (decide_acquire): no copy per answer.
  if (!a.known) a.run_id = run_id;
  if (a.known) runs.settle(i, run_id);
  std::uint64_t seen = max_ttl.load();
  while (a.known && a.recorded > seen && !max_ttl.compare_exchange_weak(seen, a.recorded)) {
  }
  return a;
}

// Decides an acquire round once a quorum of counted grants is in (granted), or can no longer be
// (refused); `final`: no more answers will come. A node whose history we have not seen
// (restarted, new) counts only once every node has answered and only if its uptime exceeds the
// longest ttl recorded on the nodes with known history (lock-delay); counting it ends its
// lock-delay (noted in `round.ended`). The fence is the maximum over the counted grants.
inline void decide_acquire(QuorumRound& round, std::size_t quorum, bool final,
                           std::uint64_t max_ttl, RedlockRuns& runs) {
  const std::size_t n = round.answers.size();
  // Known also when another call ended the lock-delay of the very run that answered us after
  // our answer came in: the node has not forgotten anything since (concurrent first calls
  // of a fresh deployment, one of which settles the nodes while the others' answers are in).
  auto known = [&](std::size_t i) {
    const Answer& a = round.answers[i];
    return (a.vote == Vote::kYes || a.vote == Vote::kNo) && (a.known || runs.settled(i, a.run_id));
  };
  std::uint64_t longest = max_ttl;
  // Only a node with known history vouches for its record: in a fresh deployment no node is
  // known yet, so concurrent first calls (each seeing the others' ttls) do not all wait.
  for (std::size_t i = 0; i < n; ++i) {
    if (known(i)) longest = std::max(longest, round.answers[i].recorded);
  }
  const bool all_in = round.pending == 0 || final;
  std::size_t counted = 0, maybe = 0;
  std::uint64_t fence = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Answer& a = round.answers[i];
    if (a.vote == Vote::kPending && !final) ++maybe;
    if (a.vote != Vote::kYes) continue;
    if (known(i)) {
      ++counted;
      fence = std::max(fence, a.fence);
    } else if (!all_in) {
      ++maybe;
    } else if (a.uptime >= std::chrono::milliseconds(longest)) {
      ++counted;
      fence = std::max(fence, a.fence);
      // Ends the node's lock-delay here: the round records the run on the node, so that other
      // clients count it at once.
      if (!a.run_id.empty() && !runs.settled(i, a.run_id)) {
        runs.settle(i, a.run_id);
        round.ended.emplace_back(i, a.run_id);
      }
    }
  }
  if (counted >= quorum) {
    round.decided = true;
    round.granted = true;
    round.fence = fence;
  } else if (counted + maybe < quorum) {
    round.decided = true;
    round.granted = false;
  }
}

// What to do with a node's answer that came after its acquire round was decided.
enum class LateAction {
  kNone,
  kRelease,  // the attempt failed: take the node's grant back at once
  kSettle,   // the lock was granted: write the lock's fence to the node's holder record
};

inline LateAction late_action(const QuorumRound& round, const Answer& a) {
  if (a.vote != Vote::kYes && a.vote != Vote::kInDoubt) return LateAction::kNone;
  if (!round.granted) return LateAction::kRelease;
  if (a.vote == Vote::kYes && a.fence != round.fence) return LateAction::kSettle;
  return LateAction::kNone;
}

// What a decided acquire round leaves to do.
struct AcquireOutcome {
  bool granted = false;
  std::uint64_t fence = 0;
  std::vector<std::size_t> undo;   // the nodes that granted (or may have): release if refused
  std::vector<std::size_t> below;  // granting nodes whose counter is below the fence
  std::size_t at_fence = 0;        // granting nodes whose counter is at the fence
  std::size_t errors = 0;          // failed, in doubt or unanswered
  bool in_doubt = false;
  std::string why;  // the first failure's message
};

inline AcquireOutcome acquire_outcome(const QuorumRound& round) {
  AcquireOutcome out;
  out.granted = round.granted;
  out.fence = round.fence;
  for (std::size_t i = 0; i < round.answers.size(); ++i) {
    const Answer& a = round.answers[i];
    if (a.vote == Vote::kYes) {
      out.undo.push_back(i);
      if (a.fence >= out.fence) {
        ++out.at_fence;
      } else {
        out.below.push_back(i);
      }
    }
    if (a.vote == Vote::kInDoubt) out.undo.push_back(i), out.in_doubt = true;
    if (a.vote == Vote::kError || a.vote == Vote::kInDoubt || a.vote == Vote::kPending) {
      ++out.errors;
      if (out.why.empty() && !a.message.empty()) out.why = a.message;
    }
  }
  return out;
}

// The message of a round that failed for want of nodes: "2 of 3 nodes failed, no quorum
// possible (why)".
inline std::string no_quorum(std::size_t errors, std::size_t n, const std::string& why) {
  return std::to_string(errors) + " of " + std::to_string(n) + " nodes failed, no quorum possible" +
         (why.empty() ? "" : " (" + why + ")");
}

// Fences: a granted lock's fence must be written back (kRedlockSettleScript) to the nodes in
// `below` until a quorum of counters is at least the fence, so that every later quorum (which
// shares a node with this one) hands out more. True once `at_fence + written` is a quorum.
inline bool fence_settled(std::size_t at_fence, std::size_t written, std::size_t quorum) {
  return at_fence + written >= quorum;
}

// The floor of every node's fence in one attempt (see kRedlockAcquireScript): our wall clock
// in µs, the same for every node. Written into `digits`, without allocating.
inline std::string_view fence_floor(char (&digits)[24]) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  char* end = std::to_chars(digits, digits + sizeof digits, us).ptr;
  return {digits, static_cast<std::size_t>(end - digits)};
}

inline std::string fence_floor() {
  char digits[24];
  return std::string(fence_floor(digits));
}

// Local validity is spent when `now` >= start + ttl - drift: nobody may act on the lock.
inline bool validity_spent(std::chrono::steady_clock::time_point now,
                           std::chrono::steady_clock::time_point start,
                           std::chrono::milliseconds ttl, std::chrono::milliseconds drift) {
  return now >= start + ttl - drift;
}

// Stores node `i`'s answer in a yes/no round (release, extend, status) and decides it once a
// quorum said yes or too many said anything else (so at the latest when every node answered).
// Returns true if this answer decided the round.
inline bool record_answer(QuorumRound& round, std::size_t i, Answer a, std::size_t quorum) {
  round.answers[i] = std::move(a);
  --round.pending;
  std::size_t yes = 0, no = 0;
  for (const Answer& b : round.answers) {
    yes += b.vote == Vote::kYes;
    no += b.vote != Vote::kYes && b.vote != Vote::kPending;
  }
  if (round.decided) return false;
  if (yes >= quorum || no > round.answers.size() - quorum) {
    round.decided = true;
    return true;
  }
  return false;
}

// A decided yes/no round: how many said yes, how many failed, and the first failure.
struct YesNoOutcome {
  std::size_t yes = 0;
  std::size_t errors = 0;
  std::string why;
  ErrorKind kind = ErrorKind::kUnavailable;
};

inline YesNoOutcome yes_no_outcome(const QuorumRound& round) {
  YesNoOutcome out;
  for (const Answer& a : round.answers) {
    out.yes += a.vote == Vote::kYes;
    if (a.vote == Vote::kError || a.vote == Vote::kPending) {
      ++out.errors;
      if (out.why.empty() && !a.message.empty()) out.why = a.message, out.kind = a.kind;
    }
  }
  // Auth and protocol failures say what to fix; everything else is "unavailable".
  if (out.kind != ErrorKind::kAuth && out.kind != ErrorKind::kProtocol) {
    out.kind = ErrorKind::kUnavailable;
  }
  return out;
}

// A node's answer to kReleaseScript or kExtendScript: 1 is yes.
inline Answer yes_no_answer(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER) {
    Answer a;
    a.vote = r.integer == 1 ? Vote::kYes : Vote::kNo;
    return a;
  }
  return failed_answer(ErrorKind::kProtocol,
                       r.type == REDIS_REPLY_ERROR ? "server error: " + std::string(r.str, r.len)
                                                   : std::string("unexpected reply"),
                       false);
}

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDLOCK_QUORUM_HPP_
