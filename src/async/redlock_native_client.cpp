// SPDX-License-Identifier: MIT
// AsyncLockApi's native redlock:// path: every attempt's requests go to all nodes at once on
// the executor (one pipelined connection per node), and the quorum is decided as the blocking
// store decides it (redis/redlock_quorum.hpp), as soon as the answers allow.
#include "async/redlock_native_client.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <atomic>
#include <charconv>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "async/native_lease_ops.hpp"
#include "async/redis_native_connection.hpp"
#include "core/escape.hpp"
#include "core/keeper.hpp"
#include "core/lease_ops.hpp"
#include "core/store_lock_api.hpp"
#include "lockkit/errors.hpp"
#include "redis/redis_scripts.hpp"
#include "redis/redlock_native.hpp"
#include "redis/redlock_quorum.hpp"

namespace lockkit::detail {

namespace {

using Clock = std::chrono::steady_clock;
using redis::Answer;
using redis::QuorumRound;
using Request = RedisNativeConnection::Request;

// The operations of redis::kRedlockBatchScript, the one script each node's connection loads:
// what one turn sends a node goes out as one run of it (see RedisNativeConnection::Request).
constexpr char kAcquire = 'a', kRelease = 'r', kSettle = 's';

std::string context(std::string_view op, std::string_view key) {
  return std::string(op) + " \"" + escape_key(key) + "\": ";
}

std::string decimal(std::uint64_t n) {
  char digits[24];
  char* end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  return std::string(digits, static_cast<std::size_t>(end - digits));
}

// A node's failure as its answer: in doubt when the request may have been applied.
Answer error_answer(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const BackendError& e) {
    std::string what = e.what();
    const std::string head = std::string(e.backend()) + ": ";
    if (what.starts_with(head)) what.erase(0, head.size());
    return redis::failed_answer(e.kind(), std::move(what), e.kind() == ErrorKind::kInDoubt);
  } catch (const std::exception& e) {
    return redis::failed_answer(ErrorKind::kUnavailable, e.what(), false);
  } catch (...) {
    return redis::failed_answer(ErrorKind::kUnavailable, "unknown failure", false);
  }
}

class RedlockLeaseOps;

// Natively granted locks by token, for `redlock_native_release` to find their ops.
struct Registry {
  std::mutex mu;
  std::unordered_map<std::string, std::weak_ptr<RedlockLeaseOps>, TokenHash, std::equal_to<>>
      by_token;  // guarded by mu
};

// The `LeaseOps` of a natively granted `Lock` (extend and keep-alive go through the blocking
// store).
class RedlockLeaseOps final : public NativeLeaseOps {
 public:
  RedlockLeaseOps(std::shared_ptr<LeaseOps> inner, std::shared_ptr<Registry> registry,
                  std::string token)
      : NativeLeaseOps(std::move(inner)),
        registry_(std::move(registry)),
        token_(std::move(token)) {}
  ~RedlockLeaseOps() override {
    std::lock_guard<std::mutex> guard(registry_->mu);
    auto it = registry_->by_token.find(token_);
    if (it != registry_->by_token.end() && it->second.expired()) registry_->by_token.erase(it);
  }

  void set_releasing(bool on) noexcept { releasing_.store(on); }

  // Renewed with the store's other leases, through the store.
  const void* batch_key() const noexcept override {
    return batch_ ? batch_->batch_key() : static_cast<const void*>(this);
  }
  std::string renew_many(std::span<const ExtendRequest> requests,
                         std::span<ExtendOutcome> out) noexcept override {
    std::string error = renew_blocking(requests, out);
    // A renewal that reached the nodes after a native release sent meanwhile: its "not ours"
    // only says that the release went first, so it counts as a failed renewal instead.
    std::lock_guard<std::mutex> guard(registry_->mu);
    for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
      if (out[i] != ExtendOutcome::kNotOurs) continue;
      auto entry = registry_->by_token.find(requests[i].token);
      if (entry == registry_->by_token.end()) continue;
      if (auto ops = entry->second.lock(); ops && ops->releasing_.load()) {
        out[i] = ExtendOutcome::kFailed;
      }
    }
    return error;
  }

 private:
  const std::shared_ptr<Registry> registry_;
  const std::string token_;
  std::atomic<bool> releasing_{false};
};

// One acquire attempt: the quorum state and what completes it. On the strand only.
struct AcquireRound : QuorumRound {
  using QuorumRound::QuorumRound;
  std::string key;
  std::string token;
  std::chrono::milliseconds ttl{0};
  Clock::time_point start{};  // the store's now() before anything was sent
  Clock::time_point sent{};
  std::shared_ptr<AsyncAcquireOperation> op;
  NativeAcquireDone done = nullptr;
  bool completed = false;
  // Writing the fence back (see redis::fence_settled).
  std::vector<std::size_t> undo;
  std::size_t at_fence = 0;
  std::size_t written = 0;
  std::size_t writes_pending = 0;
};

// One native release on every node. On the strand only, but for `lock`'s owner.
struct ReleaseRound : QuorumRound {
  using QuorumRound::QuorumRound;
  Lock* lock = nullptr;    // alive until `sink` completes: the caller's promise
  std::string_view key;    // the Lock's, read only until `sink` completes
  std::string_view token;  // the Lock's, sent at the start
  std::shared_ptr<RedlockLeaseOps> ops;
  std::shared_ptr<AsyncBoolSink> sink;
  Clock::time_point sent{};
};

}  // namespace

// The nodes' connections on one strand (so the rounds need no lock), their backoff after
// failures, and what lockkit saw of their runs (lock-delay).
// Thread safety: `on_strand`, `shutdown` and the accessors from any thread; the rest on the
// strand.
class RedlockNativeClient final : public redis::RedlockRuns,
                                  public std::enable_shared_from_this<RedlockNativeClient> {
 public:
  RedlockNativeClient(const asio::any_io_executor& ex, std::shared_ptr<LockApi> api,
                      NativeGrants& grants, redis::RedlockNativeSource& source,
                      std::vector<redis::NativeTarget> targets)
      : api_(std::move(api)),
        grants_(grants),
        source_(source),
        strand_(asio::make_strand(ex)),
        registry_(std::make_shared<Registry>()),
        quorum_(targets.size() / 2 + 1) {
    for (std::size_t i = 0; i < targets.size(); ++i) {
      Node node;
      node.conn = std::make_shared<RedisNativeConnection>(
          strand_, NativeConnectionConfig{
                       .target = std::move(targets[i]),
                       .scripts = {redis::kRedlockBatchScript},
                       .name = "lockkit-async",
                       .backend = "redis",
                       .read_info = true,
                       // Through the store's own connection, once: `api_` keeps it alive.
                       .probe = [api = api_, &source, i] { source.native_probe(i); },
                       .batch_script = 0,
                   });
      nodes_.push_back(std::move(node));
    }
  }

  NativeGrants& grants() noexcept { return grants_; }
  redis::RedlockNativeSource& source() noexcept { return source_; }
  const asio::strand<asio::any_io_executor>& strand() const noexcept { return strand_; }
  const std::shared_ptr<Registry>& registry() const noexcept { return registry_; }
  std::size_t size() const noexcept { return nodes_.size(); }

  // Runs `f` on the strand: at once when already there.
  template <class F>
  void on_strand(F f) {
    if (strand_.running_in_this_thread()) {
      f();
      return;
    }
    asio::post(strand_, std::move(f));
  }

  // After this, nothing is sent: a connection that `submit` reached after its shutdown would
  // connect again and keep the executor busy for ever (an undo of a late answer, failed by the
  // shutdown itself, on a node whose backoff was already over).
  void shutdown() {
    closed_.store(true);
    for (Node& node : nodes_) node.conn->shutdown();
  }

  // RedlockRuns, on the strand: the runs whose lock-delay lockkit ended or saw recorded.
  bool settled(std::size_t node, const std::string& run_id) override {
    return !run_id.empty() && nodes_[node].settled_run == run_id;
  }
  void settle(std::size_t node, const std::string& run_id) override {
    nodes_[node].settled_run = run_id;
  }

  // --- acquire ------------------------------------------------------------------------

  void start_acquire(const std::shared_ptr<AcquireRound>& round) {
    round->start = grants_.grant_store().now();
    round->sent = Clock::now();
    auto& max_ttl = source_.native_max_ttl();
    const std::string ttl = decimal(static_cast<std::uint64_t>(round->ttl.count()));
    const std::string record = decimal(
        std::max<std::uint64_t>(static_cast<std::uint64_t>(round->ttl.count()), max_ttl.load()));
    char floor_digits[24];
    const std::string_view floor = redis::fence_floor(floor_digits);
    std::size_t reachable = 0;
    for (std::size_t i = 0; i < nodes_.size(); ++i) reachable += !backing_off(i);
    if (reachable < quorum_) {
      // Too many nodes back off for a quorum: refused without I/O (asking the others would
      // only take locks to give back).
      for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (backing_off(i)) {
          round->answers[i] = redis::failed_answer(ErrorKind::kUnavailable,
                                                   "node skipped after a recent failure", false);
        } else {
          round->answers[i].vote = redis::Vote::kNo;  // not asked
        }
      }
      round->pending = 0;
      round->decided = true;
      conclude(round);
      return;
    }
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      source_.native_keys_of(i, round->key, lock_key_, fence_key_, holder_key_, meta_key_);
      const std::string& run_id = nodes_[i].conn->run_id();
      Request request;
      request.payload.reserve(lock_key_.size() + fence_key_.size() + holder_key_.size() +
                              meta_key_.size() + run_id.size() + 160);
      for (std::string_view k : {lock_key_, fence_key_, holder_key_, meta_key_}) {
        RedisNativeConnection::add(request, k);
      }
      RedisNativeConnection::end_keys(request);
      for (std::string_view arg :
           {std::string_view(round->token), std::string_view(ttl), std::string_view(record),
            settled(i, run_id) ? std::string_view(run_id) : std::string_view(), floor}) {
        RedisNativeConnection::add(request, arg);
      }
      request.batch_op = kAcquire;
      request.maybe_write = true;
      send(i, std::move(request),
           [round, i](RedlockNativeClient& self, std::exception_ptr error, redisReply* reply) {
             self.on_acquire(round, i, error, reply);
           });
    }
  }

  // --- release ------------------------------------------------------------------------

  void start_release(const std::shared_ptr<ReleaseRound>& round) {
    round->sent = Clock::now();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      send(i, release_request(i, round->key, round->token),
           [round, i](RedlockNativeClient& self, std::exception_ptr error, redisReply* reply) {
             self.on_release(round, i, error, reply);
           });
    }
  }

 private:
  struct Node {
    std::shared_ptr<RedisNativeConnection> conn;
    std::string settled_run;         // the run whose lock-delay is over for us
    unsigned failures = 0;           // in a row
    Clock::time_point down_until{};  // skipped without I/O until then
    bool probing = false;            // one request probes the node after its backoff
  };

  // Whether node `i` is skipped now: backing off after a failure, or being probed.
  bool backing_off(std::size_t i) const {
    const Node& node = nodes_[i];
    return node.failures > 0 && (node.probing || Clock::now() < node.down_until);
  }

  // Sends `request` to node `i`, unless the node backs off after a failure: then its `done`
  // runs at once with the failure, without I/O, as the blocking store's nodes do. Once the
  // backoff is over, exactly one request probes the node.
  // `then(*this, error, reply)` gets the reply; one std::function per request (the node's
  // bookkeeping and the caller's handler in one closure: two closures cost two allocations).
  template <class Then>
  void send(std::size_t i, Request request, Then then) {
    if (closed_.load()) {  // failed at once, without I/O, like a node that backs off
      then(*this,
           std::make_exception_ptr(
               BackendError("redis", ErrorKind::kUnavailable, "the AsyncLockApi is gone")),
           nullptr);
      return;
    }
    Node& node = nodes_[i];
    bool probe = false;
    if (node.failures > 0) {
      if (backing_off(i)) {
        then(*this,
             std::make_exception_ptr(BackendError("redis", ErrorKind::kUnavailable,
                                                  node.probing
                                                      ? "node skipped while another call probes it"
                                                      : "node skipped after a recent failure")),
             nullptr);
        return;
      }
      node.probing = probe = true;
    }
    request.done = [self = shared_from_this(), i, probe, then = std::move(then)](
                       std::exception_ptr error, redisReply* reply) mutable {
      Node& n = self->nodes_[i];
      if (probe) n.probing = false;
      if (error) {
        self->failed(i, error);
      } else {
        n.failures = 0;
      }
      then(*self, std::move(error), reply);
    };
    node.conn->submit(std::move(request));
  }

  // For requests whose answer nobody waits for.
  static void ignore(RedlockNativeClient&, const std::exception_ptr&, redisReply*) {}

  void failed(std::size_t i, const std::exception_ptr& error) {
    ErrorKind kind = ErrorKind::kUnavailable;
    try {
      std::rethrow_exception(error);
    } catch (const BackendError& e) {
      kind = e.kind();
    } catch (...) {
    }
    // A reply lost on a broken connection is in doubt, and the node as unreachable as for a
    // request that could not be sent.
    if (kind != ErrorKind::kTimeout && kind != ErrorKind::kUnavailable &&
        kind != ErrorKind::kInDoubt) {
      return;
    }
    Node& node = nodes_[i];
    const auto now = Clock::now();
    // Every request on a broken connection fails at once: one failure, not one per request.
    if (now < node.down_until) return;
    node.failures = std::min(node.failures + 1, 16U);
    const auto wait = std::min<std::chrono::milliseconds>(
        source_.native_backoff() * (1LL << (node.failures - 1)), source_.native_max_backoff());
    node.down_until = now + wait;
  }

  Request release_request(std::size_t i, std::string_view key, std::string_view token) {
    source_.native_keys_of(i, key, lock_key_, fence_key_, holder_key_, meta_key_);
    Request request;
    RedisNativeConnection::add(request, lock_key_);
    RedisNativeConnection::add(request, holder_key_);
    RedisNativeConnection::end_keys(request);
    RedisNativeConnection::add(request, token);
    request.batch_op = kRelease;
    return request;
  }

  // Takes `token`'s grant on node `i` back, without waiting: the node's next request for the
  // key comes after it on the same connection. A node that cannot be reached keeps the grant
  // until its ttl ends.
  void undo(std::size_t i, const std::string& key, const std::string& token) {
    send(i, release_request(i, key, token), &ignore);
  }

  Request settle_request(std::size_t i, const std::string& key, const std::string& token,
                         std::uint64_t fence) {
    source_.native_keys_of(i, key, lock_key_, fence_key_, holder_key_, meta_key_);
    Request request;
    const std::string sfence = decimal(fence);
    RedisNativeConnection::add(request, fence_key_);
    RedisNativeConnection::add(request, holder_key_);
    RedisNativeConnection::end_keys(request);
    RedisNativeConnection::add(request, token);
    RedisNativeConnection::add(request, sfence);
    request.batch_op = kSettle;
    return request;
  }

  void on_acquire(const std::shared_ptr<AcquireRound>& round, std::size_t i,
                  const std::exception_ptr& error, redisReply* reply) {
    Answer a;
    if (error) {
      a = error_answer(error);
    } else {
      const auto& conn = *nodes_[i].conn;
      a = redis::acquire_answer(*reply, i, conn.run_id(), conn.uptime(), *this,
                                source_.native_max_ttl());
    }
    --round->pending;
    if (round->decided) {
      const auto late = redis::late_action(*round, a);
      round->answers[i] = std::move(a);
      if (late == redis::LateAction::kRelease) {
        undo(i, round->key, round->token);
      } else if (late == redis::LateAction::kSettle) {
        // Only `status` shows this node's own fence; the lock's fence is unaffected.
        send(i, settle_request(i, round->key, round->token, round->fence), &ignore);
      }
      return;
    }
    round->answers[i] = std::move(a);
    redis::decide_acquire(*round, quorum_, false, source_.native_max_ttl().load(), *this);
    if (round->decided) conclude(round);
  }

  void conclude(const std::shared_ptr<AcquireRound>& round) {
    auto outcome = redis::acquire_outcome(*round);
    // Records the runs whose lock-delay this round ended on their nodes, so that other
    // clients count them at once; ahead of any later request on those connections.
    for (const auto& [i, run_id] : round->ended) {
      source_.native_keys_of(i, round->key, lock_key_, fence_key_, holder_key_, meta_key_);
      send(i, RedisNativeConnection::command({"HSET", meta_key_, "run", run_id}), &ignore);
    }
    round->ended.clear();
    if (!outcome.granted) {
      for (std::size_t i : outcome.undo) undo(i, round->key, round->token);
      const std::size_t n = nodes_.size();
      if (outcome.errors > n - quorum_) {
        complete(round,
                 std::make_exception_ptr(BackendError(
                     "redlock", outcome.in_doubt ? ErrorKind::kInDoubt : ErrorKind::kUnavailable,
                     context("try_acquire", round->key) +
                         redis::no_quorum(outcome.errors, n, outcome.why))),
                 std::nullopt);
        return;
      }
      complete(round, nullptr, std::nullopt);
      return;
    }
    if (!outcome.below.empty() && !redis::fence_settled(outcome.at_fence, 0, quorum_)) {
      round->undo = std::move(outcome.undo);
      round->at_fence = outcome.at_fence;
      round->writes_pending = outcome.below.size();
      for (std::size_t i : outcome.below) {
        send(i, settle_request(i, round->key, round->token, round->fence),
             [round](RedlockNativeClient& self, std::exception_ptr error, redisReply* reply) {
               self.on_fence_written(
                   round, !error && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1);
             });
      }
      return;
    }
    grant(round, outcome.undo);
  }

  void on_fence_written(const std::shared_ptr<AcquireRound>& round, bool ok) {
    --round->writes_pending;
    if (ok) ++round->written;
    if (round->completed) return;
    if (redis::fence_settled(round->at_fence, round->written, quorum_)) {
      grant(round, round->undo);
      return;
    }
    if (round->writes_pending != 0) return;
    for (std::size_t i : round->undo) undo(i, round->key, round->token);
    complete(round,
             std::make_exception_ptr(
                 BackendError("redlock", ErrorKind::kUnavailable,
                              context("try_acquire", round->key) +
                                  "could not write the fence back to a quorum of nodes")),
             std::nullopt);
  }

  void grant(const std::shared_ptr<AcquireRound>& round, const std::vector<std::size_t>& undo_on) {
    auto& store = grants_.grant_store();
    if (redis::validity_spent(Clock::now(), round->start, round->ttl, store.drift(round->ttl))) {
      // The validity was spent before the lock was ours: nobody may act on it.
      for (std::size_t i : undo_on) undo(i, round->key, round->token);
      complete(round, nullptr, std::nullopt);
      return;
    }
    std::optional<Lock> lock;
    try {
      auto ops = std::make_shared<RedlockLeaseOps>(grants_.grant_ops(), registry_, round->token);
      {
        std::lock_guard<std::mutex> guard(registry_->mu);
        registry_->by_token[round->token] = ops;
      }
      lock.emplace(grants_.adopt_grant(round->key, round->token, round->fence, round->start,
                                       round->ttl, std::move(ops)));
    } catch (...) {  // out of memory; the lease runs out
      complete(round, std::current_exception(), std::nullopt);
      return;
    }
    complete(round, nullptr, std::move(lock));
  }

  void complete(const std::shared_ptr<AcquireRound>& round, std::exception_ptr error,
                std::optional<Lock> lock) {
    round->completed = true;
    const LockOutcome outcome = error  ? LockOutcome::kError
                                : lock ? LockOutcome::kOk
                                       : LockOutcome::kBusy;
    grants_.observe(LockOperation::kTryAcquire, round->key, outcome, lock ? round->fence : 0,
                    Clock::now() - round->sent);
    auto op = std::move(round->op);
    round->done(std::move(op), std::move(error), std::move(lock));
  }

  void on_release(const std::shared_ptr<ReleaseRound>& round, std::size_t i,
                  const std::exception_ptr& error, redisReply* reply) {
    Answer a = error ? error_answer(error) : redis::yes_no_answer(*reply);
    if (!redis::record_answer(*round, i, std::move(a), quorum_)) return;
    const auto outcome = redis::yes_no_outcome(*round);
    const std::size_t n = nodes_.size();
    auto sink = std::move(round->sink);
    auto ops = std::move(round->ops);
    if (outcome.yes < quorum_ && outcome.errors > n - quorum_) {
      // The lock stays held and releasable: its keep-alive goes on.
      ops->set_releasing(false);
      grants_.observe(LockOperation::kRelease, round->key, LockOutcome::kError, 0,
                      Clock::now() - round->sent);
      sink->complete(
          std::make_exception_ptr(BackendError(
              "redlock", outcome.kind,
              context("release", round->key) + redis::no_quorum(outcome.errors, n, outcome.why))),
          false);
      return;
    }
    const bool ours = outcome.yes >= quorum_;
    grants_.observe(LockOperation::kRelease, round->key,
                    ours ? LockOutcome::kOk : LockOutcome::kNotOurs, 0, Clock::now() - round->sent);
    // The Lock learns the outcome without another round trip: its release asks `ops`, which
    // answers with what the nodes said.
    ops->settle(ours);
    bool released = false;
    try {
      released = round->lock->release();
    } catch (...) {
    }
    sink->complete(nullptr, released);
  }

  const std::shared_ptr<LockApi> api_;  // keeps grants_ and source_ alive
  NativeGrants& grants_;
  redis::RedlockNativeSource& source_;
  asio::strand<asio::any_io_executor> strand_;
  const std::shared_ptr<Registry> registry_;
  const std::size_t quorum_;
  std::vector<Node> nodes_;          // the vector is fixed; the nodes' state only on strand_
  std::atomic<bool> closed_{false};  // shut down: `send` fails every request at once
  // Scratch for key names, on the strand.
  std::string lock_key_, fence_key_, holder_key_, meta_key_;
};

std::shared_ptr<RedlockNativeClient> make_redlock_native(const asio::any_io_executor& ex,
                                                         const std::shared_ptr<LockApi>& api) {
  auto* grants = dynamic_cast<NativeGrants*>(api.get());
  if (!grants) return nullptr;
  auto* source = dynamic_cast<redis::RedlockNativeSource*>(&grants->grant_store());
  if (!source) return nullptr;
  auto nodes = source->native_nodes();
  if (!nodes || nodes->empty()) return nullptr;
  return std::make_shared<RedlockNativeClient>(ex, api, *grants, *source, std::move(*nodes));
}

void redlock_native_try_acquire(const std::shared_ptr<RedlockNativeClient>& client, std::string key,
                                std::chrono::milliseconds ttl,
                                std::shared_ptr<AsyncAcquireOperation> op, NativeAcquireDone done) {
  try {
    client->source().native_check_key(key);
  } catch (...) {
    done(std::move(op), std::current_exception(), std::nullopt);
    return;
  }
  auto round = std::make_shared<AcquireRound>(client->size());
  round->key = std::move(key);
  round->token = make_token();
  round->ttl = ttl;
  round->op = std::move(op);
  round->done = done;
  client->on_strand([client, round] { client->start_acquire(round); });
}

bool redlock_native_release(const std::shared_ptr<RedlockNativeClient>& client, Lock& lock,
                            std::shared_ptr<AsyncBoolSink>& sink) {
  if (!lock.held()) return false;
  std::shared_ptr<RedlockLeaseOps> ops;
  {
    const auto& registry = client->registry();
    std::lock_guard<std::mutex> guard(registry->mu);
    auto it = registry->by_token.find(lock.token());
    if (it == registry->by_token.end()) return false;
    ops = it->second.lock();
  }
  if (!ops) return false;
  ops->set_releasing(true);
  auto round = std::make_shared<ReleaseRound>(client->size());
  round->lock = &lock;
  round->key = lock.key();
  round->token = lock.token();
  round->ops = std::move(ops);
  round->sink = std::move(sink);
  client->on_strand([client, round] { client->start_release(round); });
  return true;
}

void redlock_native_shutdown(const std::shared_ptr<RedlockNativeClient>& client) noexcept {
  try {
    client->shutdown();
  } catch (...) {
  }
}

}  // namespace lockkit::detail
