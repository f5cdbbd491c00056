// SPDX-License-Identifier: MIT
// The redlock:// store: one lease over N independent Redis servers, granted by a quorum.
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/escape.hpp"
#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_connection.hpp"
#include "redis/redis_keys.hpp"
#include "redis/redis_scripts.hpp"
#include "redis/redlock_native.hpp"
#include "redis/redlock_quorum.hpp"

namespace lockkit {
namespace {

using detail::StoreFailure;
using detail::redis::Answer;
using detail::redis::QuorumRound;
using detail::redis::Reply;
using detail::redis::Vote;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

enum Script : std::size_t { kAcquire, kRelease, kExtend, kStatus, kSettle, kBatch };

constexpr std::size_t kMaxNodes = 64;

std::string context(std::string_view op, std::string_view key) {
  return std::string(op) + " \"" + detail::escape_key(key) + "\": ";
}

std::optional<std::uint64_t> as_uint(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER && r.integer >= 0) return static_cast<std::uint64_t>(r.integer);
  if (r.type == REDIS_REPLY_STRING) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(r.str, r.str + r.len, v);
    if (ec == std::errc() && ptr == r.str + r.len) return v;
  }
  return std::nullopt;
}

std::uint64_t to_uint(const redisReply& r) {
  if (auto v = as_uint(r)) return *v;
  throw StoreFailure(ErrorKind::kProtocol, "unexpected reply");
}

// This process's id without a system call per use: getpid(2) costs one in glibc, and every
// request asks. Kept current in a forked child by the fork handler.
std::atomic<pid_t> g_pid{0};
pid_t process_id() noexcept {
  [[maybe_unused]] static const bool registered = [] {
    g_pid.store(::getpid(), std::memory_order_relaxed);
    ::pthread_atfork(nullptr, nullptr, [] { g_pid.store(::getpid(), std::memory_order_relaxed); });
    return true;
  }();
  return g_pid.load(std::memory_order_relaxed);
}

// One request to one node, run by the node's worker in a batch with whatever other callers
// queued meanwhile.
struct Job {
  std::optional<Script> script;  // EVALSHA of this script, or a plain command
  // Fills the command's arguments (for a script: numkeys, keys, argv) just before the batch is
  // sent (after the connection's INFO was read), or returns false to drop the request: it is no
  // longer wanted, and `build` has done the bookkeeping itself. Called once.
  std::function<bool(std::vector<std::string>&)> build;
  // Gets the reply (never an error reply) or the failure. Never throws.
  std::function<void(Reply, const StoreFailure*)> done;
};

// What a lane's batch puts on the wire: one job's script or command, or consecutive acquires,
// releases and fence write-backs (up to kMaxBatchOps) as one run of kRedlockBatchScript, whose
// fixed cost per call (parsing, setting up its keys and arguments, the reply) is most of what
// a lock operation costs the server. It runs them in order and answers each apart.
struct Unit {
  std::size_t first = 0;  // the unit's jobs, in the order they were queued
  std::size_t count = 1;
  std::optional<Script> single;  // the one job's script, when not a batch
  bool batch() const { return count > 1; }
  std::optional<Script> script() const { return batch() ? std::optional<Script>(kBatch) : single; }
};

// The job's letter in kRedlockBatchScript, or 0 if it goes alone.
char batch_op(const Job& job) {
  if (!job.script) return 0;
  switch (*job.script) {
    case kAcquire:
      return 'a';
    case kRelease:
      return 'r';
    case kSettle:
      return 's';
    default:
      return 0;
  }
}

// Splits `jobs` (their arguments in `job_args`: numkeys, keys, argv) into units, each with
// its arguments.
void plan(const std::vector<Job*>& jobs, std::vector<std::vector<std::string>>& job_args,
          std::vector<Unit>& units, std::vector<std::vector<std::string>>& args) {
  for (std::size_t j = 0; j < jobs.size();) {
    std::size_t end = j + 1;
    if (batch_op(*jobs[j]) != 0) {
      while (end < jobs.size() && end - j < detail::redis::kMaxBatchOps &&
             batch_op(*jobs[end]) != 0)
        ++end;
    }
    if (end - j == 1) {
      units.push_back(Unit{j, 1, jobs[j]->script});
      args.push_back(std::move(job_args[j]));
      j = end;
      continue;
    }
    // numkeys, every job's keys, the letters, every job's argv. Each job's keys move out and
    // leave its argv behind.
    std::vector<std::string> run(1);
    std::string ops;
    std::size_t numkeys = 0;
    for (std::size_t k = j; k < end; ++k) {
      auto& a = job_args[k];
      const std::size_t n = std::stoul(a.at(0));
      numkeys += n;
      std::move(a.begin() + 1, a.begin() + 1 + n, std::back_inserter(run));
      a.erase(a.begin(), a.begin() + 1 + n);
      ops.push_back(batch_op(*jobs[k]));
    }
    run[0] = std::to_string(numkeys);
    run.push_back(std::move(ops));
    for (std::size_t k = j; k < end; ++k) {
      std::move(job_args[k].begin(), job_args[k].end(), std::back_inserter(run));
    }
    units.push_back(Unit{j, end - j, std::nullopt});
    args.push_back(std::move(run));
    j = end;
  }
}

// A Redis error reply as the failure of the call it answers.
StoreFailure error_failure(const redisReply& reply) {
  std::string text(reply.str, reply.len);
  ErrorKind kind = detail::redis::error_reply_kind(text);
  return StoreFailure(kind, "server error: " + text,
                      kind != ErrorKind::kAuth && kind != ErrorKind::kUnavailable);
}

// Hands `reply` to `job`: an error reply as the failure it names.
void deliver(Job& job, Reply reply) {
  if (reply->type == REDIS_REPLY_ERROR) {
    const StoreFailure f = error_failure(*reply);
    job.done(nullptr, &f);
    return;
  }
  job.done(std::move(reply), nullptr);
}

// The threads that run one node's requests: `lanes` queues with a thread each, started on
// demand. A lane's thread takes every request queued on it at once and sends them all in one
// pipelined write, then reads their replies in order: one wake-up and one round trip for all
// the callers that queued while the previous batch was out, instead of one thread hand-off per
// request. A key always uses the same lane, so a node receives one key's requests in the order
// they were made (a release never overtakes the acquire before it); a slow node holds up only
// its own lanes.
// Fork-safe in the way the connection pool is: a forked child leaves the parent's lanes
// untouched (their threads do not exist there) and starts its own.
class Executor {
 public:
  using Runner = std::function<void(std::vector<Job>&)>;
  Executor(std::size_t lanes, Runner runner) : lanes_(lanes), runner_(std::move(runner)) {}
  ~Executor() {
    std::shared_ptr<State> s = state_;
    if (s == nullptr) return;
    if (s->pid != ::getpid()) {
      // A forked child's copy: its threads do not exist here and must not be joined.
      new std::shared_ptr<State>(std::move(state_));  // NOLINT: leaked on purpose
      return;
    }
    for (auto& lane : s->lanes) {
      std::lock_guard lock(lane->mu);
      lane->stop = true;
      lane->cv.notify_all();
    }
    // Queued requests (late releases) run first. The last reference to the store may be
    // dropped by a request's captures on one of these threads: that one is detached and ends
    // on its own (its queue is empty then: every queued request holds a reference).
    for (auto& lane : s->lanes) {
      std::thread t;
      {
        std::lock_guard lock(lane->mu);
        t = std::move(lane->thread);
      }
      if (!t.joinable()) continue;
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach();
      } else {
        t.join();
      }
    }
  }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void submit(std::size_t hash, Job job) {
    State* s = current();
    Lane& lane = *s->lanes[hash % s->lanes.size()];
    std::unique_lock lock(lane.mu);
    lane.jobs.push_back(std::move(job));
    if (!lane.thread.joinable()) {
      // `keep` keeps the lane alive for its thread.
      lane.thread = std::thread(
          [keep = s->shared_from_this(), &lane, runner = runner_] { run(lane, runner); });
    } else if (lane.idle) {
      lane.idle = false;  // one wake-up however many callers queue before the thread runs
      lock.unlock();
      lane.cv.notify_one();
    }
  }

 private:
  static constexpr std::size_t kMaxBatch = 256;
  struct Lane {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Job> jobs;  // guarded by mu
    std::thread thread;     // guarded by mu
    bool idle = false;      // guarded by mu: the thread waits (and nobody has woken it yet)
    bool stop = false;      // guarded by mu
  };
  struct State : std::enable_shared_from_this<State> {
    explicit State(std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) lanes.push_back(std::make_unique<Lane>());
    }
    pid_t pid = ::getpid();
    std::vector<std::unique_ptr<Lane>> lanes;
  };

  // `runner` is the node's; it is called only with requests queued, each holding a reference
  // to the store, so the node is alive while it runs.
  static void run(Lane& lane, const Runner& runner) {
    std::vector<Job> batch;
    std::unique_lock lock(lane.mu);
    for (;;) {
      if (!lane.jobs.empty()) {
        if (lane.jobs.size() <= kMaxBatch) {
          batch.swap(lane.jobs);
        } else {
          auto end = lane.jobs.begin() + static_cast<std::ptrdiff_t>(kMaxBatch);
          batch.assign(std::make_move_iterator(lane.jobs.begin()), std::make_move_iterator(end));
          lane.jobs.erase(lane.jobs.begin(), end);
        }
        lock.unlock();
        runner(batch);  // never throws: every request gets its reply or failure
        batch.clear();  // the captures go here, maybe the store itself: before the lock
        lock.lock();
        continue;
      }
      if (lane.stop) return;
      lane.idle = true;
      lane.cv.wait(lock);
      lane.idle = false;
    }
  }

  // Called for every request: no lock and no system call unless this process has no lanes
  // yet (first use, or the first use after a fork).
  State* current() {
    State* s = fast_.load(std::memory_order_acquire);
    if (s != nullptr && s->pid == process_id()) [[likely]]
      return s;
    std::lock_guard lock(init_mu_);
    if (state_ == nullptr || state_->pid != ::getpid()) {
      // After a fork the parent's lanes are abandoned (a mutex may be held by a thread that
      // does not exist here, their threads cannot be joined): leaked on purpose.
      if (state_ != nullptr) new std::shared_ptr<State>(std::move(state_));  // NOLINT
      state_ = std::make_shared<State>(lanes_);
    }
    fast_.store(state_.get(), std::memory_order_release);
    return state_.get();
  }

  const std::size_t lanes_;
  const Runner runner_;
  std::mutex init_mu_;
  std::shared_ptr<State> state_;       // guarded by init_mu_
  std::atomic<State*> fast_{nullptr};  // state_'s, for current() without the lock
};

std::size_t lane_of(std::string_view key) noexcept {
  return std::hash<std::string_view>{}(key);
}

detail::redis::ConnectConfig connect_config(const RedisOptions& o) {
  using namespace detail::redis;
  return ConnectConfig{
      .host = o.host,
      .port = o.port,
      .user = o.user,
      .password = o.password.empty() && o.user.empty() ? std::nullopt
                                                       : std::optional<std::string>(o.password),
      .db = o.db,
      .connect_timeout = o.connect_timeout,
      .command_timeout = o.command_timeout,
      .scripts = {kRedlockAcquireScript, kReleaseScript, kExtendScript, kStatusScript,
                  kRedlockSettleScript, kRedlockBatchScript},
      .allow_eviction = o.allow_eviction,
      .tls =
          TlsConfig{
              .enabled = o.tls.enabled,
              .ca_file = o.tls.ca_file,
              .ca_dir = o.tls.ca_dir,
              .cert_file = o.tls.cert_file,
              .key_file = o.tls.key_file,
              .server_name = o.tls.server_name,
              .insecure_skip_verify = o.tls.insecure_skip_verify,
          },
  };
}

// One Redis server of the quorum: its connections, its worker threads, what we know of its
// restarts, and its backoff after failures.
class Node {
 public:
  Node(const RedisOptions& o, std::size_t threads, milliseconds backoff, milliseconds max_backoff)
      : layout(o.prefix),
        pool_(connect_config(o), o.connections),
        slots_(o.connections),
        timeout_(o.connect_timeout + o.command_timeout),
        command_timeout_(o.command_timeout),
        backoff_(backoff),
        max_backoff_(max_backoff),
        exec(threads, [this](std::vector<Job>& batch) { run_batch(batch); }) {}

  // What INFO said about the server on our newest connection: its run id and uptime.
  struct Life {
    std::string run_id;
    milliseconds uptime{0};  // now, counted on from the INFO reply with the local clock
  };

  // Runs one command (a script by EVALSHA with `args` = numkeys, keys, argv; or a plain one).
  // Throws `StoreFailure`; a node backing off fails at once without I/O.
  Reply exchange(std::optional<Script> script, const std::vector<std::string>& args) {
    EndProbe probe = begin();
    try {
      Reply r = exchange_once(script, args);
      answered();
      return r;
    } catch (const StoreFailure& f) {
      failed(f.kind());
      throw;
    }
  }

  // Runs a lane's batch: every request in one pipelined write on one connection, the replies
  // read in order. A node backing off fails them all at once without I/O.
  void run_batch(std::vector<Job>& batch) noexcept {
    auto fail_all = [&](const StoreFailure& f) {
      for (Job& job : batch) job.done(nullptr, &f);
    };
    std::optional<EndProbe> probe;
    try {
      probe.emplace(begin());
    } catch (const StoreFailure& f) {
      fail_all(f);
      return;
    }
    std::vector<std::string> requests;           // one per unit
    std::vector<std::vector<std::string>> args;  // each unit's, for a NOSCRIPT retry
    std::vector<Unit> units;
    std::vector<Job*> sent;
    bool built = false;
    for (int attempt = 0;; ++attempt) {
      try {
        const std::size_t index = pool_.pick();
        auto conn = pool_.get(index);
        observe(index, conn);
        if (!built) {
          // After the INFO above: a request's arguments may depend on the node's run.
          built = true;
          std::vector<std::vector<std::string>> job_args;
          for (Job& job : batch) {
            std::vector<std::string> a;
            if (!job.build(a)) continue;
            job_args.push_back(std::move(a));
            sent.push_back(&job);
          }
          if (sent.empty()) return;
          plan(sent, job_args, units, args);
          for (std::size_t u = 0; u < units.size(); ++u) {
            requests.emplace_back();
            const auto script = units[u].script();
            encode(requests.back(), script, script ? conn->script_sha(*script) : "", args[u]);
          }
        }
        // (A retry after a connection that failed unsent reuses the requests: a script's SHA is
        // the same on every connection.)
        std::optional<StoreFailure> failure;
        auto replies = conn->call_many(requests, Steady::now() + command_timeout_, failure);
        bool any = false;
        for (std::size_t u = 0; u < units.size(); ++u) {
          const Unit& unit = units[u];
          auto jobs = std::span<Job*>(sent).subspan(unit.first, unit.count);
          if (replies[u] == nullptr) {
            for (Job* job : jobs) job->done(nullptr, &*failure);
            continue;
          }
          any = true;
          Reply reply = std::move(replies[u]);
          const auto script = unit.script();
          try {
            if (script && reply->type == REDIS_REPLY_ERROR &&
                std::string_view(reply->str, reply->len).substr(0, 8) == "NOSCRIPT") {
              // The server lost its scripts (SCRIPT FLUSH): this one by EVAL, alone.
              std::string request;
              encode(request, script, pool_.config().scripts[*script], args[u], "EVAL");
              reply = conn->call(request, Steady::now() + command_timeout_);
            }
          } catch (const StoreFailure& f) {
            for (Job* job : jobs) job->done(nullptr, &f);
            continue;
          }
          if (!unit.batch()) {
            deliver(*jobs.front(), std::move(reply));
          } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == jobs.size()) {
            // Each operation's own reply, taken out of the array (hiredis frees what is left).
            for (std::size_t k = 0; k < jobs.size(); ++k) {
              deliver(*jobs[k], Reply(std::exchange(reply->element[k], nullptr)));
            }
          } else {
            // Refused as a whole (the script did not run): every operation gets that answer.
            const StoreFailure f =
                reply->type == REDIS_REPLY_ERROR
                    ? error_failure(*reply)
                    : StoreFailure(ErrorKind::kProtocol, "unexpected reply to a batch", true);
            for (Job* job : jobs) job->done(nullptr, &f);
          }
        }
        if (any) answered();
        if (failure) failed(failure->kind());
        return;
      } catch (const StoreFailure& f) {
        // Not sent: typically an idle connection the server closed (restart). One more try.
        if (!f.maybe_applied() && attempt == 0) continue;
        failed(f.kind());
        if (!built) {
          fail_all(f);
        } else {
          for (Job* job : sent) job->done(nullptr, &f);
        }
        return;
      } catch (const std::exception& e) {
        const StoreFailure f(ErrorKind::kUnavailable, e.what());
        if (!built) {
          fail_all(f);
        } else {
          for (Job* job : sent) job->done(nullptr, &f);
        }
        return;
      }
    }
  }

  // Returns what INFO told of the server on the connection last used.
  Life life() {
    std::lock_guard lock(mu_);
    return Life{run_id_,
                uptime_ + std::chrono::duration_cast<milliseconds>(Steady::now() - read_at_)};
  }
  bool settled(const std::string& run_id) {
    std::lock_guard lock(mu_);
    return settled_run_ == run_id && !run_id.empty();
  }
  void settle(const std::string& run_id) {
    std::lock_guard lock(mu_);
    if (run_id == run_id_) settled_run_ = run_id;
  }

  milliseconds timeout() const noexcept { return timeout_; }

  const detail::redis::KeyLayout layout;

 private:
  // Ends a probe (see begin) when it goes out of scope.
  struct EndProbe {
    std::atomic<bool>* flag = nullptr;
    EndProbe() = default;
    explicit EndProbe(std::atomic<bool>* f) : flag(f) {}
    EndProbe(EndProbe&& o) noexcept : flag(std::exchange(o.flag, nullptr)) {}
    EndProbe& operator=(EndProbe&&) = delete;
    ~EndProbe() {
      if (flag != nullptr) flag->store(false, std::memory_order_release);
    }
  };

  // Before any I/O: throws at once while the node backs off after a failure. Once the backoff
  // is over, exactly one request (or batch) probes the node (and may pay its connect timeout);
  // the others keep counting it as "no" without I/O until the probe ends.
  EndProbe begin() {
    if (failures_.load(std::memory_order_acquire) == 0) return EndProbe();
    const auto now = Steady::now();
    if (now.time_since_epoch().count() < down_until_.load(std::memory_order_acquire)) {
      throw StoreFailure(ErrorKind::kUnavailable, "node skipped after a recent failure");
    }
    if (probing_.exchange(true, std::memory_order_acq_rel)) {
      throw StoreFailure(ErrorKind::kUnavailable, "node skipped while another call probes it");
    }
    return EndProbe(&probing_);
  }
  void answered() noexcept {
    if (failures_.load(std::memory_order_relaxed) != 0) failures_.store(0);
  }
  void failed(ErrorKind kind) noexcept {
    if (kind != ErrorKind::kTimeout && kind != ErrorKind::kUnavailable) return;
    // Back off: the next calls count this node as "no" without paying its timeouts.
    unsigned n = std::min(failures_.fetch_add(1) + 1, 16U);
    auto wait = std::min<milliseconds>(backoff_ * (1LL << (n - 1)), max_backoff_);
    down_until_.store((Steady::now() + wait).time_since_epoch().count(), std::memory_order_release);
  }

  // Appends `verb` (EVALSHA or EVAL) `head` `args` for a script, or `args` alone.
  static void encode(std::string& out, std::optional<Script> script, std::string_view head,
                     const std::vector<std::string>& args, std::string_view verb = "EVALSHA") {
    detail::redis::append_array_header(out, args.size() + (script ? 2 : 0));
    if (script) {
      detail::redis::append_bulk(out, verb);
      detail::redis::append_bulk(out, head);
    }
    for (const std::string& arg : args) detail::redis::append_bulk(out, arg);
  }

  Reply exchange_once(std::optional<Script> script, const std::vector<std::string>& args) {
    const std::size_t index = pool_.pick();
    std::string request;
    for (int attempt = 0;; ++attempt) {
      auto conn = pool_.get(index);
      try {
        observe(index, conn);
        auto build = [&](std::string_view verb, std::string_view head) {
          request.clear();
          encode(request, script, head, args, verb);
        };
        build("EVALSHA", script ? std::string_view(conn->script_sha(*script)) : "");
        Reply reply = conn->call(request, Steady::now() + command_timeout_);
        if (script && reply->type == REDIS_REPLY_ERROR &&
            std::string_view(reply->str, reply->len).substr(0, 8) == "NOSCRIPT") {
          build("EVAL", pool_.config().scripts[*script]);
          reply = conn->call(request, Steady::now() + command_timeout_);
        }
        if (reply->type == REDIS_REPLY_ERROR) {
          std::string text(reply->str, reply->len);
          ErrorKind kind = detail::redis::error_reply_kind(text);
          throw StoreFailure(kind, "server error: " + text,
                             kind != ErrorKind::kAuth && kind != ErrorKind::kUnavailable);
        }
        return reply;
      } catch (const StoreFailure& f) {
        // Not sent: typically an idle connection the server closed (restart). One more try.
        if (!f.maybe_applied() && attempt == 0) continue;
        throw;
      }
    }
  }

  // On a connection we have not seen yet (first use, or a reconnect after a restart), reads
  // the server's run id and uptime once; later uptimes are counted on with the local clock.
  void observe(std::size_t index, const std::shared_ptr<detail::redis::Connection>& conn) {
    {
      std::lock_guard lock(mu_);
      if (slots_[index].lock() == conn) return;
    }
    std::string request;
    detail::redis::append_command(request, {"INFO", "server"});
    Reply info = conn->call(request, Steady::now() + command_timeout_);
    const auto read_at = Steady::now();
    detail::redis::ServerInfo server;
    if (info->type == REDIS_REPLY_STRING) {
      server = detail::redis::parse_server_info(std::string_view(info->str, info->len));
    }
    std::lock_guard lock(mu_);
    slots_[index] = conn;
    if (server.run_id != run_id_) settled_run_.clear();
    run_id_ = std::move(server.run_id);
    uptime_ = server.uptime;
    read_at_ = read_at;
  }

  detail::redis::Pool pool_;
  std::mutex mu_;
  std::vector<std::weak_ptr<detail::redis::Connection>> slots_;  // guarded by mu_
  std::string run_id_;                                           // guarded by mu_
  std::string settled_run_;       // the run whose lock-delay is over; guarded by mu_
  milliseconds uptime_{0};        // guarded by mu_
  Steady::time_point read_at_{};  // guarded by mu_
  const milliseconds timeout_;
  const milliseconds command_timeout_;
  const milliseconds backoff_;
  const milliseconds max_backoff_;
  std::atomic<Steady::rep> down_until_{0};
  std::atomic<unsigned> failures_{0};
  std::atomic<bool> probing_{false};  // a request is probing the node after its backoff

 public:
  Executor exec;  // last: joined first, while the rest is still alive
};

// One call's requests: the quorum state, and the caller's wait for it; outlives the call when
// replies come in late.
struct Round : QuorumRound {
  using QuorumRound::QuorumRound;
  std::mutex mu;  // guards the whole round
  std::condition_variable cv;
};

// The last `now()` this thread read, and from which store: the core reads it just before it
// calls that store's `acquire`. Consumed by that `acquire`, so a direct caller of the store (or
// another store's reading) never makes a later attempt look older than it is.
thread_local Steady::time_point t_last_now{};
thread_local const void* t_last_now_store = nullptr;

}  // namespace

class RedlockStore final : public LeaseStore,
                           public detail::redis::RedlockRuns,
                           public detail::redis::RedlockNativeSource,
                           public std::enable_shared_from_this<RedlockStore> {
 public:
  explicit RedlockStore(const RedlockOptions& o)
      : quorum_(o.nodes.size() / 2 + 1), backoff_(o.backoff), max_backoff_(o.max_backoff) {
    native_nodes_.emplace();
    for (const RedisOptions& n : o.nodes) {
      nodes_.push_back(std::make_unique<Node>(n, o.threads, o.backoff, o.max_backoff));
      wait_ = std::max(wait_, nodes_.back()->timeout());
      if (n.tls.enabled || n.cluster || n.wait_replicas != 0) {
        native_nodes_.reset();  // TLS stays on the blocking client
      } else if (native_nodes_) {
        native_nodes_->push_back(
            detail::redis::NativeTarget{.host = n.host,
                                        .port = n.port,
                                        .user = n.user,
                                        .password = n.password.empty() && n.user.empty()
                                                        ? std::nullopt
                                                        : std::optional<std::string>(n.password),
                                        .db = n.db,
                                        .connect_timeout = n.connect_timeout,
                                        .command_timeout = n.command_timeout});
      }
    }
    wait_ += milliseconds(50);  // the nodes' own timeouts end first; this only bounds the wait
  }

  std::string_view backend() const noexcept override { return "redlock"; }
  // The core reads this just before `acquire`: the attempt's start for our validity check.
  Steady::time_point now() const noexcept override {
    auto t = Steady::now();
    t_last_now = t;
    t_last_now_store = this;
    return t;
  }
  milliseconds drift(milliseconds ttl) const noexcept override {
    return ttl / 100 + milliseconds(2);  // clock drift between us and the nodes, as Redlock
  }

  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       milliseconds ttl) override {
    check_key(key);
    auto start = Steady::now();
    if (t_last_now_store == this && start - t_last_now < milliseconds(100)) start = t_last_now;
    t_last_now_store = nullptr;
    const std::size_t n = nodes_.size();
    auto round = std::make_shared<Round>(n);
    auto self = shared_from_this();
    const std::string skey(key), stoken(token);
    const std::uint64_t record = std::max<std::uint64_t>(ttl.count(), max_ttl_.load());
    const std::string clock = detail::redis::fence_floor();
    for (std::size_t i = 0; i < n; ++i) {
      send(
          i, skey, kAcquire,
          [self, round, i, skey, stoken, ttl, record, clock](std::vector<std::string>& args) {
            return self->acquire_args(*round, i, skey, stoken, ttl, record, clock, args);
          },
          [self, round, i, skey, stoken](Reply r, const StoreFailure* f) {
            self->acquire_done(*round, i, skey, stoken, std::move(r), f);
          });
    }
    std::unique_lock lock(round->mu);
    round->cv.wait_until(lock, start + wait_, [&] { return round->decided; });
    if (!round->decided) decide_acquire_locked(*round, /*final=*/true);
    auto [granted, fence, undo, below, at_fence, errors, in_doubt, why] =
        detail::redis::acquire_outcome(*round);
    const ErrorKind kind = in_doubt ? ErrorKind::kInDoubt : ErrorKind::kUnavailable;
    auto ended = std::move(round->ended);
    lock.unlock();
    // Before returning, whatever the outcome: a process that exits right after this call
    // must leave the nodes' records naming their runs, or the next process finds their
    // lock-delay running again. Only on a node's first round after a restart (or ever).
    record_runs(ended, skey);
    if (!granted) {
      undo_on(undo, skey, stoken);
      if (errors > n - quorum_) {
        throw BackendError("redlock", kind,
                           context("try_acquire", key) + detail::redis::no_quorum(errors, n, why));
      }
      return std::nullopt;
    }
    // Fences: make sure a quorum of counters is at least `fence`, so every later quorum
    // (which shares a node with this one) hands out more.
    if (!below.empty() && !write_fence(key, token, fence, below, at_fence)) {
      undo_on(undo, skey, stoken);
      throw BackendError(
          "redlock", ErrorKind::kUnavailable,
          context("try_acquire", key) + "could not write the fence back to a quorum of nodes");
    }
    if (detail::redis::validity_spent(Steady::now(), start, ttl, drift(ttl))) {
      // The validity was spent before the lock was ours: nobody may act on it.
      undo_on(undo, skey, stoken);
      return std::nullopt;
    }
    return fence;
  }

  bool release(std::string_view key, std::string_view token) override {
    check_key(key);
    return yes_no("release", key, kRelease, {std::string(token)});
  }

  bool extend(std::string_view key, std::string_view token, milliseconds ttl) override {
    check_key(key);
    const auto start = Steady::now();
    bool ok = yes_no("extend", key, kExtend, {std::string(token), std::to_string(ttl.count())});
    return ok && !detail::redis::validity_spent(Steady::now(), start, ttl, drift(ttl));
  }

  std::optional<LockInfo> status(std::string_view key) override {
    check_key(key);
    return status_unchecked(key);
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    // Candidates from every node that answers, then a quorum status of each.
    std::vector<std::string> keys;
    std::size_t failed = 0;
    std::string why;
    for (auto& node : nodes_) {
      const std::string pattern = node->layout.holder_pattern(prefix);
      std::string cursor = "0";
      try {
        do {
          Reply page =
              node->exchange(std::nullopt, {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
          if (page->type != REDIS_REPLY_ARRAY || page->elements != 2 ||
              page->element[0]->type != REDIS_REPLY_STRING ||
              page->element[1]->type != REDIS_REPLY_ARRAY) {
            throw StoreFailure(ErrorKind::kProtocol, "bad SCAN reply");
          }
          cursor.assign(page->element[0]->str, page->element[0]->len);
          const redisReply& names = *page->element[1];
          for (std::size_t i = 0; i < names.elements; ++i) {
            std::string_view name(names.element[i]->str, names.element[i]->len);
            std::string_view key = node->layout.holder_key(name);
            if (key.empty() || key.size() > kMaxKeyBytes ||
                key.substr(0, prefix.size()) != prefix || node->layout.reserved(key)) {
              continue;
            }
            keys.emplace_back(key);
          }
        } while (cursor != "0");
      } catch (const StoreFailure& f) {
        ++failed;
        if (why.empty()) why = f.what();
      }
    }
    if (failed > nodes_.size() - quorum_) {
      throw BackendError("redlock", ErrorKind::kUnavailable,
                         context("list", prefix) + std::to_string(failed) + " of " +
                             std::to_string(nodes_.size()) + " nodes failed (" + why + ")");
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    std::vector<LockInfo> out;
    for (const std::string& key : keys) {
      auto info = status_unchecked(key);
      if (info && info->fence != 0) out.push_back(std::move(*info));
    }
    return out;
  }

 private:
  // --- acquire -------------------------------------------------------------------------

  std::vector<std::string> keys_for(const Node& node, std::string_view key) const {
    std::string lock_key, fence_key, holder_key;
    node.layout.keys_of(key, lock_key, fence_key, holder_key);
    std::string meta = node.layout.prefix() + "lockkit:{redlock}";
    return {std::move(lock_key), std::move(fence_key), std::move(holder_key), std::move(meta)};
  }

  // Queues one request on node `i`'s lane for `key`.
  void send(std::size_t i, const std::string& key, std::optional<Script> script,
            std::function<bool(std::vector<std::string>&)> build,
            std::function<void(Reply, const StoreFailure*)> done) {
    nodes_[i]->exec.submit(lane_of(key), Job{script, std::move(build), std::move(done)});
  }

  // Node `i`'s acquire request, built just before it is sent; false (and counted as "no") if
  // the round was refused meanwhile.
  bool acquire_args(Round& round, std::size_t i, const std::string& key, const std::string& token,
                    milliseconds ttl, std::uint64_t record, const std::string& clock,
                    std::vector<std::string>& args) {
    {
      std::lock_guard lock(round.mu);
      // Refused without us: nothing to take back. (Granted without us: still ask, so that
      // every reachable node holds the lock and learns the ttl.)
      if (round.decided && !round.granted) {
        round.answers[i].vote = Vote::kNo;
        --round.pending;
        return false;
      }
    }
    Node& node = *nodes_[i];
    auto k = keys_for(node, key);
    Node::Life life = node.life();
    const bool settled = node.settled(life.run_id);
    args = {"4",
            k[0],
            k[1],
            k[2],
            k[3],
            token,
            std::to_string(ttl.count()),
            std::to_string(record),
            settled ? life.run_id : std::string(),
            clock};
    return true;
  }

  void acquire_done(Round& round, std::size_t i, const std::string& key, const std::string& token,
                    Reply r, const StoreFailure* failure) noexcept {
    Node& node = *nodes_[i];
    Answer a;
    try {
      if (failure != nullptr) {
        a = detail::redis::failed_answer(failure->kind(), failure->what(),
                                         failure->maybe_applied());
      } else {
        Node::Life life = node.life();
        a = detail::redis::acquire_answer(*r, i, life.run_id, life.uptime, *this, max_ttl_);
      }
    } catch (const std::exception& e) {  // out of memory
      a = detail::redis::failed_answer(ErrorKind::kUnavailable, e.what(), false);
    }
    auto late = detail::redis::LateAction::kNone;
    std::uint64_t fence = 0;
    {
      std::lock_guard lock(round.mu);
      --round.pending;
      round.answers[i] = a;
      if (round.decided) {
        late = detail::redis::late_action(round, a);
        fence = round.fence;
      } else {
        decide_acquire_locked(round, false);
        if (round.decided) round.cv.notify_all();  // the caller's one wake-up
      }
    }
    if (late != detail::redis::LateAction::kNone) {
      // Arrived after the outcome: take a failed attempt's grant back at once (the next request
      // on this lane); a granted lock's holder record shows the lock's fence.
      try {
        if (late == detail::redis::LateAction::kRelease) {
          release_later(i, key, token, nullptr);
        } else {
          auto self = shared_from_this();
          auto k = keys_for(node, key);
          const std::string sfence = std::to_string(fence);
          send(
              i, key, kSettle,
              [k, token, sfence](std::vector<std::string>& args) {
                args = {"2", k[1], k[2], token, sfence};
                return true;
              },
              // Only `status` shows this node's own fence; the lock's fence is unaffected.
              [self](Reply, const StoreFailure*) {});
        }
      } catch (const std::exception&) {
        // Out of memory: the grant there expires with its ttl.
      }
    }
  }

  // See detail::redis::decide_acquire.
  void decide_acquire_locked(Round& round, bool final) {
    detail::redis::decide_acquire(round, quorum_, final, max_ttl_.load(), *this);
  }

  // RedlockRuns: what the blocking connections' INFO told of each node's run.
  bool settled(std::size_t node, const std::string& run_id) override {
    return nodes_[node]->settled(run_id);
  }
  void settle(std::size_t node, const std::string& run_id) override {
    nodes_[node]->settle(run_id);
  }

  // Records each node's run on it, in parallel, and waits for the answers (bounded like every
  // round). A node that fails keeps its lock-delay for other clients until a later call of
  // ours records it (ours pass the run with every acquire from now on).
  void record_runs(const std::vector<std::pair<std::size_t, std::string>>& ended,
                   const std::string& key) {
    if (ended.empty()) return;
    auto round = std::make_shared<Round>(0);
    round->pending = ended.size();
    auto self = shared_from_this();
    for (const auto& [i, run_id] : ended) {
      const std::string meta = nodes_[i]->layout.prefix() + "lockkit:{redlock}";
      send(
          i, key, std::nullopt,
          [meta, run_id](std::vector<std::string>& args) {
            args = {"HSET", meta, "run", run_id};
            return true;
          },
          // A failure: see above, recorded by a later call.
          [self, round](Reply, const StoreFailure*) {
            std::lock_guard lock(round->mu);
            if (--round->pending == 0) round->cv.notify_all();
          });
    }
    std::unique_lock lock(round->mu);
    round->cv.wait_until(lock, Steady::now() + wait_, [&] { return round->pending == 0; });
  }

  // Writes `fence` to the nodes in `below` until a quorum holds a counter >= fence.
  bool write_fence(std::string_view key, std::string_view token, std::uint64_t fence,
                   const std::vector<std::size_t>& below, std::size_t already) {
    if (detail::redis::fence_settled(already, 0, quorum_)) return true;
    auto round = std::make_shared<Round>(nodes_.size());
    round->pending = below.size();
    auto self = shared_from_this();
    const std::string skey(key), stoken(token), sfence = std::to_string(fence);
    for (std::size_t i : below) {
      auto k = keys_for(*nodes_[i], skey);
      send(
          i, skey, kSettle,
          [k, stoken, sfence](std::vector<std::string>& args) {
            args = {"2", k[1], k[2], stoken, sfence};
            return true;
          },
          [self, round, i](Reply r, const StoreFailure* f) {
            Answer a;
            a.vote = f == nullptr && r->type == REDIS_REPLY_INTEGER && r->integer == 1
                         ? Vote::kYes
                         : Vote::kError;
            std::lock_guard lock(round->mu);
            round->answers[i] = a;
            --round->pending;
            round->cv.notify_all();
          });
    }
    std::unique_lock lock(round->mu);
    auto enough = [&] {
      std::size_t yes = 0;
      for (const Answer& a : round->answers) yes += a.vote == Vote::kYes;
      return detail::redis::fence_settled(already, yes, quorum_);
    };
    round->cv.wait_until(lock, Steady::now() + wait_,
                         [&] { return enough() || round->pending == 0; });
    return enough();
  }

  // Releases the grants of a failed attempt on `nodes`, in parallel on their workers, and
  // waits for them (bounded like every round): the next attempt finds them gone.
  void undo_on(const std::vector<std::size_t>& nodes, const std::string& key,
               const std::string& token) {
    if (nodes.empty()) return;
    auto round = std::make_shared<Round>(0);
    round->pending = nodes.size();
    for (std::size_t i : nodes) {
      release_later(i, key, token, [round] {
        std::lock_guard lock(round->mu);
        if (--round->pending == 0) round->cv.notify_all();
      });
    }
    std::unique_lock lock(round->mu);
    round->cv.wait_until(lock, Steady::now() + wait_, [&] { return round->pending == 0; });
  }

  // Queues the release of `token`'s grant on node `i`; `then` (if any) runs once it is done.
  // A node that cannot be reached keeps the grant until its ttl ends.
  void release_later(std::size_t i, const std::string& key, const std::string& token,
                     std::function<void()> then) {
    auto self = shared_from_this();
    auto k = keys_for(*nodes_[i], key);
    send(
        i, key, kRelease,
        [k, token](std::vector<std::string>& args) {
          args = {"2", k[0], k[2], token};
          return true;
        },
        [self, then = std::move(then)](Reply, const StoreFailure*) {
          if (then) then();
        });
  }

  // --- release, extend, status ----------------------------------------------------------

  // Turns node `i`'s reply (or failure) into its answer with `parse` (which may throw
  // `StoreFailure`), counts it, and wakes the caller once the round is decided: every yes/no
  // and status round's reply callback.
  template <class Parse>
  static void record_answer(Round& round, std::size_t i, std::size_t quorum, const Reply& r,
                            const StoreFailure* f, Parse parse) noexcept {
    Answer a;
    try {
      if (f != nullptr) throw *f;
      a = parse(*r);
    } catch (const StoreFailure& e) {
      a = detail::redis::failed_answer(e.kind(), e.what(), false);
    } catch (const std::exception& e) {
      a = detail::redis::failed_answer(ErrorKind::kUnavailable, e.what(), false);
    }
    std::lock_guard lock(round.mu);
    if (detail::redis::record_answer(round, i, std::move(a), quorum)) round.cv.notify_all();
  }

  // Runs `script` (KEYS lock, holder; ARGV `argv`) on every node; true once a quorum answered
  // 1, false once it cannot; throws if fewer than a quorum answered at all.
  bool yes_no(std::string_view op, std::string_view key, Script script,
              std::vector<std::string> argv) {
    const std::size_t n = nodes_.size();
    auto round = std::make_shared<Round>(n);
    round->pending = n;
    auto self = shared_from_this();
    const std::string skey(key);
    auto shared_argv = std::make_shared<const std::vector<std::string>>(std::move(argv));
    const std::size_t q = quorum_;
    for (std::size_t i = 0; i < n; ++i) {
      auto k = keys_for(*nodes_[i], skey);
      send(
          i, skey, script,
          [k, shared_argv](std::vector<std::string>& args) {
            args = {"2", k[0], k[2]};
            args.insert(args.end(), shared_argv->begin(), shared_argv->end());
            return true;
          },
          [self, round, i, q](Reply r, const StoreFailure* f) {
            record_answer(*round, i, q, r, f, &detail::redis::yes_no_answer);
          });
    }
    std::unique_lock lock(round->mu);
    round->cv.wait_until(lock, Steady::now() + wait_, [&] { return round->decided; });
    const auto [yes, errors, why, kind] = detail::redis::yes_no_outcome(*round);
    if (yes >= quorum_) return true;
    if (errors > n - quorum_) {
      throw BackendError("redlock", kind,
                         context(op, key) + detail::redis::no_quorum(errors, n, why));
    }
    return false;
  }

  std::optional<LockInfo> status_unchecked(std::string_view key) {
    const std::size_t n = nodes_.size();
    auto round = std::make_shared<Round>(n);
    round->pending = n;
    auto self = shared_from_this();
    const std::string skey(key);
    const std::size_t q = quorum_;
    for (std::size_t i = 0; i < n; ++i) {
      auto k = keys_for(*nodes_[i], skey);
      send(
          i, skey, kStatus,
          [k](std::vector<std::string>& args) {
            args = {"2", k[0], k[2]};
            return true;
          },
          [self, round, i, q](Reply r, const StoreFailure* f) {
            record_answer(*round, i, q, r, f, [](const redisReply& reply) {
              Answer a;
              if (reply.type == REDIS_REPLY_NIL) {
                a.vote = Vote::kNo;
              } else if (reply.type == REDIS_REPLY_ARRAY && reply.elements == 2) {
                a.vote = Vote::kYes;
                a.fence = to_uint(*reply.element[0]);
                a.remaining = milliseconds(to_uint(*reply.element[1]));
              } else {
                throw StoreFailure(ErrorKind::kProtocol, "unexpected reply");
              }
              return a;
            });
          });
    }
    std::unique_lock lock(round->mu);
    round->cv.wait_until(lock, Steady::now() + wait_, [&] { return round->decided; });
    const auto outcome = detail::redis::yes_no_outcome(*round);
    std::uint64_t fence = 0;
    milliseconds remaining = milliseconds::max();
    for (const Answer& a : round->answers) {
      if (a.vote != Vote::kYes) continue;
      fence = std::max(fence, a.fence);
      remaining = std::min(remaining, a.remaining);
    }
    if (outcome.yes >= quorum_) return LockInfo{std::string(key), fence, remaining};
    if (outcome.errors > n - quorum_) {
      throw BackendError(
          "redlock", ErrorKind::kUnavailable,
          context("status", key) + detail::redis::no_quorum(outcome.errors, n, outcome.why));
    }
    return std::nullopt;
  }

  // --- RedlockNativeSource: AsyncLockApi's native path (src/async/redlock_native_client.cpp)

  std::optional<std::vector<detail::redis::NativeTarget>> native_nodes() const override {
    return native_nodes_;
  }
  void native_check_key(std::string_view key) const override { check_key(key); }
  void native_keys_of(std::size_t node, std::string_view key, std::string& lock, std::string& fence,
                      std::string& holder, std::string& meta) const override {
    nodes_[node]->layout.keys_of(key, lock, fence, holder);
    meta = nodes_[node]->layout.prefix() + "lockkit:{redlock}";
  }
  std::atomic<std::uint64_t>& native_max_ttl() noexcept override { return max_ttl_; }
  milliseconds native_backoff() const noexcept override { return backoff_; }
  milliseconds native_max_backoff() const noexcept override { return max_backoff_; }
  void native_probe(std::size_t node) override {
    try {
      (void)nodes_[node]->exchange(std::nullopt, {"PING"});
    } catch (const StoreFailure& f) {
      throw BackendError("redis", f.kind(), f.what());
    }
  }

  void check_key(std::string_view key) const {
    for (const auto& node : nodes_) {
      if (!node->layout.reserved(key)) [[likely]]
        continue;
      throw std::invalid_argument(
          "key: Redis names (prefix + key) containing \"lockkit:{\" are reserved by redlock://");
    }
  }

  const std::size_t quorum_;
  const milliseconds backoff_;
  const milliseconds max_backoff_;
  std::optional<std::vector<detail::redis::NativeTarget>> native_nodes_;  // empty: TLS
  milliseconds wait_{0};
  std::atomic<std::uint64_t> max_ttl_{0};  // the longest ttl (ms) seen recorded on any node
  std::vector<std::unique_ptr<Node>> nodes_;
};

std::shared_ptr<LeaseStore> make_redlock_store(RedlockOptions options) {
  if (options.nodes.empty() || options.nodes.size() > kMaxNodes) {
    throw std::invalid_argument("nodes: must be 1..64, got " +
                                std::to_string(options.nodes.size()));
  }
  if (options.threads < 1 || options.threads > 1024) {
    throw std::invalid_argument("threads: must be 1..1024, got " + std::to_string(options.threads));
  }
  if (options.backoff < milliseconds(1) || options.max_backoff < options.backoff) {
    throw std::invalid_argument("backoff: must be >= 1ms and <= max_backoff");
  }
  for (RedisOptions& node : options.nodes) {
    (void)make_redis_store(node);  // checks the node's options the way redis:// does
  }
  return std::make_shared<RedlockStore>(options);
}

std::shared_ptr<LockApi> make_redlock_lock_api(RedlockOptions options) {
  return make_lock_api(make_redlock_store(std::move(options)));
}

RedlockOptions parse_redlock_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);  // checks the syntax, quotes a redacted url
  if (parsed.scheme != "redlock") detail::throw_bad_url(url, "scheme must be redlock://");
  if (!parsed.has_authority || parsed.hosts.empty()) {
    detail::throw_bad_url(url, "no host (use redlock://host1:port1,host2:port2,...)");
  }
  if (parsed.hosts.size() > kMaxNodes) detail::throw_bad_url(url, "more than 64 hosts");
  // Every node is the redis:// URL with one of the hosts: same credentials, path and options.
  std::string_view rest = url.substr(url.find("://") + 3);
  const std::size_t end = std::min(rest.find('/'), rest.find('?'));
  std::string_view authority = rest.substr(0, end);
  std::string tail(end == std::string_view::npos ? std::string_view() : rest.substr(end));
  // `tls=1` makes every node a `rediss://` URL (the tls_* options then apply to each node as
  // for rediss://); it is redlock's own option, so it leaves the query here.
  bool tls = false;
  if (auto q = tail.find('?'); q != std::string::npos) {
    std::string kept;
    std::string_view query = std::string_view(tail).substr(q + 1);
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      std::string_view item = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (item.substr(0, 4) == "tls=") {
        if (item == "tls=1" || item == "tls=true") {
          tls = true;
        } else if (item != "tls=0" && item != "tls=false") {
          detail::throw_bad_url(url, "tls: must be 1, true, 0 or false");
        }
        continue;
      }
      kept += kept.empty() ? "?" : "&";
      kept += item;
    }
    tail = tail.substr(0, q) + kept;
  }
  std::string userinfo;
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    userinfo = std::string(authority.substr(0, at + 1));
    authority.remove_prefix(at + 1);
  }
  RedlockOptions out;
  std::size_t start = 0;
  for (;;) {
    std::size_t comma = authority.find(',', start);
    std::string_view host = authority.substr(start, comma - start);
    if (host.empty()) detail::throw_bad_url(url, "empty host in the host list");
    std::string node_url = (tls ? "rediss://" : "redis://") + userinfo + std::string(host) + tail;
    try {
      out.nodes.push_back(parse_redis_url(node_url));
    } catch (const std::invalid_argument& e) {
      // parse_redis_url quotes the node's url redacted; say which host it was.
      throw std::invalid_argument(std::string(e.what()) + " (redlock node " +
                                  std::to_string(out.nodes.size() + 1) + ")");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace {
std::shared_ptr<LeaseStore> open_redlock(std::string_view url) {
  return make_redlock_store(parse_redlock_url(url));
}
using StoreFactory = std::function<std::shared_ptr<LeaseStore>(std::string_view)>;
[[maybe_unused]] const bool g_registered =
    (register_backend("redlock", StoreFactory(&open_redlock)), true);
}  // namespace

}  // namespace lockkit

// Referenced by the redis backend's anchor, so linking lockkit::redis statically keeps
// redlock:// registered too.
extern "C" void lockkit_backend_anchor_redlock() {}
