// SPDX-License-Identifier: MIT
// AsyncLockApi's native postgres:// path: the sync store's statements in libpq's pipeline mode
// on a few connections whose sockets the executor watches; no thread blocks per call.
#include "async/postgres_native_client.hpp"

#include <poll.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "async/blocking_pool.hpp"
#include "async/native_lease_ops.hpp"
#include "core/keeper.hpp"
#include "core/lease_ops.hpp"
#include "core/store_failure.hpp"
#include "core/store_lock_api.hpp"
#include "lockkit/errors.hpp"
#include "postgres/pg_native.hpp"

namespace lockkit::detail {

namespace {

using Clock = std::chrono::steady_clock;
using pg::NativeOp;
using pg::NativeReply;

// Requests one connection carries at once; a new connection is opened (up to the configured
// number) for each this many waiting. Each request is its own transaction: the server runs a
// connection's requests one after another, so a deep pipeline only saves round trips.
constexpr std::size_t kMaxInFlight = 32;

class PostgresLeaseOps;

// Natively granted locks by token, for `native_release` to find their `PostgresLeaseOps`.
struct Registry {
  struct Entry {
    std::weak_ptr<PostgresLeaseOps> ops;
    bool releasing = false;  // a native release was sent and has not failed
  };
  std::mutex mu;
  std::unordered_map<std::string, Entry, TokenHash, std::equal_to<>> by_token;  // guarded by mu
};

// The `LeaseOps` of a natively granted `Lock` (extends and keep-alive renewals run through the
// blocking store).
class PostgresLeaseOps final : public NativeLeaseOps {
 public:
  PostgresLeaseOps(std::shared_ptr<LeaseOps> inner, std::shared_ptr<Registry> registry,
                   std::string token)
      : NativeLeaseOps(std::move(inner)),
        registry_(std::move(registry)),
        token_(std::move(token)) {}
  ~PostgresLeaseOps() override {
    std::lock_guard<std::mutex> guard(registry_->mu);
    auto it = registry_->by_token.find(token_);
    if (it != registry_->by_token.end() && it->second.ops.expired()) registry_->by_token.erase(it);
  }

  // Renewed with the store's other leases, in its batches.
  const void* batch_key() const noexcept override {
    return batch_ ? batch_->batch_key() : registry_.get();
  }
  std::string renew_many(std::span<const ExtendRequest> requests,
                         std::span<ExtendOutcome> out) noexcept override {
    std::string error = renew_blocking(requests, out);
    // A renewal on a pooled connection may commit after a native release sent meanwhile on
    // another: its "not ours" then says that the holder is releasing, not that the lease was
    // lost, so it counts as a failed renewal instead.
    std::lock_guard<std::mutex> guard(registry_->mu);
    for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
      if (out[i] != ExtendOutcome::kNotOurs) continue;
      auto entry = registry_->by_token.find(requests[i].token);
      if (entry != registry_->by_token.end() && entry->second.releasing) {
        out[i] = ExtendOutcome::kFailed;
      }
    }
    return error;
  }

 private:
  const std::shared_ptr<Registry> registry_;
  const std::string token_;
};

}  // namespace

// A few connections, touched only on `strand_`. Requests wait in `queued_` until a ready
// connection has room, then go out in its pipeline; each connection's answers complete its
// oldest request first. A connection is opened on the blocking pool (connect, TLS, auth and the
// schema check block, once per connection), then only its socket is waited on.
class PostgresNativeClient : public std::enable_shared_from_this<PostgresNativeClient> {
 public:
  // Gets the failure or the reply, exactly once, on the strand.
  using Done = std::function<void(const StoreFailure* failure, const NativeReply* reply)>;

  struct Request {
    NativeOp op = NativeOp::kAcquire;
    std::string key;
    std::string token;
    std::chrono::milliseconds ttl{0};
    Done done;
    Clock::time_point deadline{};  // queued: for a connection; sent: for the answer
    bool expired = false;          // its deadline passed and a cancel was sent
  };

  PostgresNativeClient(const asio::any_io_executor& ex, std::shared_ptr<LockApi> api,
                       NativeGrants& grants, pg::NativeAsyncSource& source)
      : api_(std::move(api)),
        grants_(grants),
        source_(source),
        config_(source.native_config()),
        owner_(::getpid()),
        strand_(asio::make_strand(ex)),
        queue_timer_(strand_),
        registry_(std::make_shared<Registry>()) {
    for (std::size_t i = 0; i < std::max<std::size_t>(1, config_.connections); ++i) {
      slots_.push_back(std::make_unique<Slot>(strand_));
    }
  }

  ~PostgresNativeClient() {
    for (auto& slot : slots_) drop(*slot);
  }

  NativeGrants& grants() noexcept { return grants_; }
  pg::NativeAsyncSource& source() noexcept { return source_; }
  const std::shared_ptr<LockApi>& api() const noexcept { return api_; }
  const std::shared_ptr<Registry>& registry() const noexcept { return registry_; }
  pid_t owner() const noexcept { return owner_; }

  // Any thread; on the strand itself (a handler starting the next attempt), at once.
  void submit(Request request) {
    if (strand_.running_in_this_thread()) {
      submit_here(std::move(request));
      return;
    }
    asio::post(strand_, [self = shared_from_this(), request = std::move(request)]() mutable {
      self->submit_here(std::move(request));
    });
  }

  void shutdown() {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed_ = true;
      const StoreFailure gone(ErrorKind::kUnavailable, "the AsyncLockApi is gone", true, true);
      for (auto& slot : self->slots_) self->fail(*slot, gone);
      self->fail_queued(gone, false);
      self->queue_timer_.cancel();
    });
  }

 private:
  struct Slot {
    explicit Slot(const asio::strand<asio::any_io_executor>& strand) : timer(strand) {}
    enum class State { kIdle, kConnecting, kReady } state = State::kIdle;
    std::unique_ptr<pg::NativeConnection> conn;
    std::unique_ptr<asio::posix::stream_descriptor> socket;  // conn's, watched, never closed
    std::deque<Request> inflight;  // sent (perhaps only to libpq's buffer), oldest first
    asio::steady_timer timer;      // the oldest request's deadline
    std::uint64_t generation = 0;  // one per connection; stale handlers see a change
    bool writing = false;          // a wait for writability is under way
    bool flush_posted = false;
    bool timer_armed = false;
    // A cancel was sent for an overdue request: no new requests; the connection is dropped
    // once those in flight are answered, or at `cancel_until`.
    bool cancelling = false;
    Clock::time_point cancel_until{};
    // The server said this session cannot serve us (read-only after a failover, prepared
    // statements gone behind a pooler): no new requests; dropped once those in flight end.
    bool retiring = false;
  };

  void submit_here(Request request) {
    if (closed_) {
      const StoreFailure gone(ErrorKind::kUnavailable, "the AsyncLockApi is gone");
      request.done(&gone, nullptr);
      return;
    }
    // A wait for a connection, as the store's pool checkout, plus the connect it may need.
    request.deadline = Clock::now() + config_.command_timeout + config_.connect_timeout;
    queued_.push_back(std::move(request));
    pump();
  }

  // Moves waiting requests onto the ready connection with the fewest in flight; opens another
  // connection while requests wait.
  void pump() {
    while (!queued_.empty()) {
      Slot* best = nullptr;
      for (auto& slot : slots_) {
        if (slot->state != Slot::State::kReady || slot->cancelling || slot->retiring ||
            slot->inflight.size() >= kMaxInFlight) {
          continue;
        }
        if (!best || slot->inflight.size() < best->inflight.size()) best = slot.get();
      }
      if (!best) break;
      Request request = std::move(queued_.front());
      queued_.pop_front();
      send(*best, std::move(request));
    }
    if (queued_.empty()) return;
    std::size_t connecting = 0;
    for (auto& slot : slots_) connecting += slot->state == Slot::State::kConnecting;
    for (auto& slot : slots_) {
      if (connecting * kMaxInFlight >= queued_.size()) break;
      if (slot->state != Slot::State::kIdle) continue;
      connect(*slot);
      ++connecting;
    }
    arm_queue_timer();
  }

  void connect(Slot& slot) {
    slot.state = Slot::State::kConnecting;
    const std::uint64_t generation = ++slot.generation;
    // Connecting blocks (resolution, TLS, authentication, the schema check): on a thread of its
    // own, at most one per connection, rather than the shared pool, so that a connect never
    // waits behind other stores' calls (and works in a forked child, which has no pool
    // threads). The work guard keeps the executor running until the answer is posted back, so
    // the client is always destroyed on the strand or after it.
    auto job = [self = shared_from_this(), slot = &slot, generation,
                work = asio::make_work_guard(strand_.get_inner_executor())]() mutable {
      std::unique_ptr<pg::NativeConnection> conn;
      std::optional<StoreFailure> failure;
      try {
        conn = self->source_.native_connect();
      } catch (const StoreFailure& e) {
        failure = e;
      } catch (const std::exception& e) {
        failure.emplace(ErrorKind::kUnavailable, e.what(), false, true);
      }
      auto& strand = self->strand_;
      // A guard of this thread's own, held until post() has returned: the handler may run at
      // once and drop `work`, and the executor's context must not be torn down while post() is
      // still inside it (it destroys its copy of the strand on the way out).
      const auto keep = asio::make_work_guard(strand.get_inner_executor());
      asio::post(strand, [self = std::move(self), slot, generation, conn = std::move(conn),
                          failure = std::move(failure), work = std::move(work)]() mutable {
        self->connected(*slot, generation, std::move(conn), failure);
      });
    };
    try {
      std::thread(std::move(job)).detach();
    } catch (const std::exception& e) {  // no thread to be had: as a failed connect
      slot.state = Slot::State::kIdle;
      ++slot.generation;
      fail_queued(StoreFailure(ErrorKind::kUnavailable, std::string("connect: ") + e.what()),
                  false);
    }
  }

  void connected(Slot& slot, std::uint64_t generation, std::unique_ptr<pg::NativeConnection> conn,
                 const std::optional<StoreFailure>& failure) {
    if (generation != slot.generation || closed_) return;  // `conn` closes here
    if (failure) {
      slot.state = Slot::State::kIdle;
      // Nobody else will serve the waiting requests soon: they fail with the store's error,
      // as a blocking call would.
      bool other = false;
      for (auto& s : slots_) other = other || s->state != Slot::State::kIdle;
      if (!other) fail_queued(*failure, false);
      return;
    }
    try {
      slot.socket = std::make_unique<asio::posix::stream_descriptor>(strand_, conn->socket());
    } catch (const std::exception& e) {
      slot.state = Slot::State::kIdle;
      fail_queued(StoreFailure(ErrorKind::kUnavailable, e.what()), false);
      return;
    }
    slot.conn = std::move(conn);
    slot.state = Slot::State::kReady;
    wait_read(slot);
    pump();
  }

  void send(Slot& slot, Request request) {
    try {
      slot.conn->send(request.op, request.key, request.token, request.ttl);
    } catch (const StoreFailure& e) {
      request.done(&e, nullptr);  // not sent
      fail(slot, e);
      return;
    }
    request.deadline = Clock::now() + config_.command_timeout;
    slot.inflight.push_back(std::move(request));
    arm_timer(slot);
    // One write for every request queued in this turn of the executor.
    if (!slot.flush_posted) {
      slot.flush_posted = true;
      asio::post(strand_, [self = shared_from_this(), slot = &slot, g = slot.generation] {
        if (g != slot->generation) return;
        slot->flush_posted = false;
        self->flush(*slot);
      });
    }
  }

  void flush(Slot& slot) {
    if (slot.state != Slot::State::kReady) return;
    bool all = false;
    try {
      all = slot.conn->flush();
    } catch (const StoreFailure& e) {
      fail(slot, e);
      pump();
      return;
    }
    if (!all && !slot.writing) {
      slot.writing = true;
      slot.socket->async_wait(asio::posix::stream_descriptor::wait_write,
                              [self = shared_from_this(), slot = &slot,
                               g = slot.generation](const std::error_code& ec) {
                                if (g != slot->generation) return;
                                slot->writing = false;
                                if (ec) return;
                                self->flush(*slot);
                              });
    }
    drain(slot);  // libpq may have read answers while writing
  }

  void wait_read(Slot& slot) {
    slot.socket->async_wait(
        asio::posix::stream_descriptor::wait_read,
        [self = shared_from_this(), slot = &slot, g = slot.generation](const std::error_code& ec) {
          if (g != slot->generation) return;
          if (ec) {
            self->fail(*slot,
                       StoreFailure(ErrorKind::kUnavailable, "wait: " + ec.message(), true, true));
            self->pump();
            return;
          }
          self->on_readable(*slot);
        });
  }

  void on_readable(Slot& slot) {
    const std::uint64_t generation = slot.generation;
    // The reactor watches edges: what libpq left unread on the socket would raise none, so read
    // until the socket is empty (a few rounds; then the executor's other work goes first).
    for (int round = 0; round < 16; ++round) {
      try {
        slot.conn->consume();
      } catch (const StoreFailure& e) {
        // Also an idle connection the server closed (restart, termination): noticed here,
        // before a request is sent on it.
        fail(slot, e);
        pump();
        return;
      }
      drain(slot);
      if (generation != slot.generation) return;
      pollfd p{slot.conn->socket(), POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) {
        wait_read(slot);
        return;
      }
    }
    asio::post(strand_, [self = shared_from_this(), slot = &slot, generation] {
      if (generation == slot->generation) self->on_readable(*slot);
    });
  }

  // Completes every request whose answer is there, oldest first.
  void drain(Slot& slot) {
    const std::uint64_t generation = slot.generation;
    while (!slot.inflight.empty()) {
      NativeReply reply;
      try {
        if (!slot.conn->next(reply)) break;
      } catch (const StoreFailure& e) {
        if (e.broken()) {
          fail(slot, e);
          pump();
          return;
        }
        // As the blocking store does: a standby (so that a multi-host URL finds the new
        // primary) or a session without our prepared statements is replaced.
        if (e.server_code() == "25006" || e.server_code() == "26000") slot.retiring = true;
        Request request = std::move(slot.inflight.front());
        slot.inflight.pop_front();
        request.done(&e, nullptr);
        if (generation != slot.generation) return;
        continue;
      }
      Request request = std::move(slot.inflight.front());
      slot.inflight.pop_front();
      if (request.expired) {
        // Answered after its deadline, the cancel too late: as the blocking store reports it
        // (an acquire in doubt, which the caller then releases).
        const StoreFailure late(ErrorKind::kTimeout, "no answer until after the deadline", true);
        request.done(&late, nullptr);
      } else {
        request.done(nullptr, &reply);
      }
      if (generation != slot.generation) return;  // a handler's new request broke it
    }
    if ((slot.cancelling || slot.retiring) && slot.inflight.empty()) {
      // Dropped all the same: the cancel may still be on its way and would hit the next
      // statement sent on this connection.
      fail(slot, StoreFailure(ErrorKind::kTimeout, "cancelled"));
    }
    arm_timer(slot);
    pump();
  }

  // One timer per connection, for its oldest request: answers come in order, so if that one
  // has none by its deadline, the connection is stuck. As the blocking store does, the server
  // is asked to cancel the running statement (dropping the connection would leave it to commit
  // later, unseen) and given `cancel_grace` to say how it ended; then everything on the
  // connection fails.
  void arm_timer(Slot& slot) {
    if (slot.timer_armed || slot.inflight.empty()) return;
    slot.timer_armed = true;
    slot.timer.expires_at(slot.cancelling ? slot.cancel_until : slot.inflight.front().deadline);
    slot.timer.async_wait([self = shared_from_this(), slot = &slot,
                           g = slot.generation](const std::error_code& ec) {
      if (g != slot->generation) return;
      slot->timer_armed = false;
      if (ec || slot->inflight.empty()) return;
      const auto now = Clock::now();
      if (slot->cancelling && now >= slot->cancel_until) {
        self->fail(*slot, StoreFailure(ErrorKind::kTimeout,
                                       "no answer, and no confirmation of a cancel", true, true));
        self->pump();
        return;
      }
      if (!slot->cancelling && slot->inflight.front().deadline <= now) {
        slot->cancelling = true;
        slot->cancel_until = now + self->config_.cancel_grace;
        for (auto& request : slot->inflight) {
          if (request.deadline <= now) request.expired = true;
        }
        slot->conn->cancel();
      }
      self->arm_timer(*slot);
    });
  }

  void arm_queue_timer() {
    if (queue_timer_armed_ || queued_.empty()) return;
    queue_timer_armed_ = true;
    queue_timer_.expires_at(queued_.front().deadline);
    queue_timer_.async_wait([self = shared_from_this()](const std::error_code&) {
      self->queue_timer_armed_ = false;
      if (self->closed_) return;
      const StoreFailure busy(ErrorKind::kTimeout, "all " + std::to_string(self->slots_.size()) +
                                                       " native connections busy or connecting");
      self->fail_queued(busy, true);
      self->arm_queue_timer();
    });
  }

  // Fails the waiting requests (only those past their deadline if `expired_only`).
  void fail_queued(const StoreFailure& failure, bool expired_only) {
    const auto now = Clock::now();
    std::deque<Request> failed;
    while (!queued_.empty() && (!expired_only || queued_.front().deadline <= now)) {
      failed.push_back(std::move(queued_.front()));
      queued_.pop_front();
    }
    for (auto& request : failed) request.done(&failure, nullptr);
  }

  // Drops the connection: every request on it fails with `cause`, as sent (an acquire in
  // doubt). The slot connects again when requests wait.
  void fail(Slot& slot, const StoreFailure& cause) {
    ++slot.generation;
    slot.state = Slot::State::kIdle;
    slot.timer_armed = false;
    slot.writing = false;
    slot.flush_posted = false;
    slot.cancelling = false;
    slot.retiring = false;
    slot.timer.cancel();
    drop(slot);
    auto inflight = std::move(slot.inflight);
    slot.inflight.clear();
    const StoreFailure lost(cause.kind(), cause.what(), true, true, cause.server_code());
    for (auto& request : inflight) request.done(&lost, nullptr);
  }

  // Stops watching the socket and closes the connection (libpq closes the socket). One
  // inherited across fork() is left alone: the descriptor's deregistration would reach the
  // parent's registration through the shared epoll instance.
  void drop(Slot& slot) noexcept {
    const bool inherited = slot.conn && slot.conn->inherited();
    if (slot.socket) {
      if (inherited) {
        (void)slot.socket.release();
      } else {
        std::error_code ignored;
        slot.socket->cancel(ignored);
        (void)slot.socket->release();
        slot.socket.reset();
      }
    }
    slot.conn.reset();
  }

  const std::shared_ptr<LockApi> api_;  // keeps grants_ and source_ alive
  NativeGrants& grants_;
  pg::NativeAsyncSource& source_;
  const pg::NativeConfig config_;
  const pid_t owner_;
  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer queue_timer_;
  const std::shared_ptr<Registry> registry_;
  // The rest only on strand_.
  std::vector<std::unique_ptr<Slot>> slots_;
  std::deque<Request> queued_;
  bool queue_timer_armed_ = false;
  bool closed_ = false;
};

std::shared_ptr<PostgresNativeClient> make_postgres_native(const asio::any_io_executor& ex,
                                                           const std::shared_ptr<LockApi>& api) {
  auto* grants = dynamic_cast<NativeGrants*>(api.get());
  if (!grants) return nullptr;
  auto* source = dynamic_cast<pg::NativeAsyncSource*>(&grants->grant_store());
  if (!source) return nullptr;
  return std::make_shared<PostgresNativeClient>(ex, api, *grants, *source);
}

bool native_try_acquire(const std::shared_ptr<PostgresNativeClient>& client, const std::string& key,
                        std::chrono::milliseconds ttl, std::shared_ptr<AsyncAcquireOperation>& op,
                        void (*done)(std::shared_ptr<AsyncAcquireOperation> op,
                                     std::exception_ptr error, std::optional<Lock> lock)) {
  if (::getpid() != client->owner()) return false;
  PostgresNativeClient::Request request;
  request.op = NativeOp::kAcquire;
  request.key = key;
  request.token = make_token();
  request.ttl = ttl;
  // The local clock is read before the request is sent: valid_until can only be earlier than
  // the server's expiry, as for the blocking path.
  const auto start = client->grants().grant_store().now();
  const auto sent = Clock::now();
  request.done = [client, key, token = request.token, ttl, start, sent, op = std::move(op), done](
                     const StoreFailure* failure, const NativeReply* reply) mutable {
    auto& grants = client->grants();
    if (failure) {
      grants.observe(LockOperation::kTryAcquire, key, LockOutcome::kError, 0, Clock::now() - sent);
      BackendError error = client->source().native_error(NativeOp::kAcquire, key, *failure);
      const bool doubt = error.kind() == ErrorKind::kInDoubt;
      std::exception_ptr thrown = std::make_exception_ptr(std::move(error));
      if (!doubt) {
        done(std::move(op), std::move(thrown), std::nullopt);
        return;
      }
      // As the core does after an in-doubt acquire: take it back with our own token, then say
      // so. The release blocks, so it runs on the pool (the LockApi keeps the store alive).
      asio::post(blocking_pool(), [api = client->api(), store = &grants.grant_store(),
                                   key = std::move(key), token = std::move(token),
                                   thrown = std::move(thrown), op = std::move(op), done]() mutable {
        try {
          (void)store->release(key, token);
        } catch (...) {  // the caller learns kInDoubt either way; the lease expires by its TTL
        }
        done(std::move(op), std::move(thrown), std::nullopt);
      });
      return;
    }
    const auto latency = Clock::now() - sent;
    if (!reply->ok) {
      grants.observe(LockOperation::kTryAcquire, key, LockOutcome::kBusy, 0, latency);
      done(std::move(op), nullptr, std::nullopt);
      return;
    }
    std::optional<Lock> lock;
    try {
      auto ops = std::make_shared<PostgresLeaseOps>(grants.grant_ops(), client->registry(), token);
      {
        std::lock_guard<std::mutex> guard(client->registry()->mu);
        client->registry()->by_token[token] = Registry::Entry{ops, false};
      }
      lock.emplace(grants.adopt_grant(key, token, reply->fence, start, ttl, std::move(ops)));
    } catch (...) {  // out of memory; the lease runs out
      done(std::move(op), std::current_exception(), std::nullopt);
      return;
    }
    grants.observe(LockOperation::kTryAcquire, key, LockOutcome::kOk, reply->fence, latency);
    done(std::move(op), nullptr, std::move(lock));
  };
  client->submit(std::move(request));
  return true;
}

bool native_release(const std::shared_ptr<PostgresNativeClient>& client, Lock& lock,
                    std::shared_ptr<AsyncBoolSink>& sink) {
  if (!lock.held() || ::getpid() != client->owner()) return false;
  std::shared_ptr<PostgresLeaseOps> ops;
  {
    const auto& registry = client->registry();
    std::lock_guard<std::mutex> guard(registry->mu);
    auto it = registry->by_token.find(lock.token());
    if (it == registry->by_token.end()) return false;
    ops = it->second.ops.lock();
    if (!ops) return false;
    it->second.releasing = true;
  }
  PostgresNativeClient::Request request;
  request.op = NativeOp::kRelease;
  request.key = std::string(lock.key());
  request.token = std::string(lock.token());
  const auto sent = Clock::now();
  request.done = [client, &lock, ops = std::move(ops), sent, sink = std::move(sink)](
                     const StoreFailure* failure, const NativeReply* reply) mutable {
    auto& grants = client->grants();
    if (failure) {
      {
        // The lock stays held and releasable: its keep-alive goes on.
        std::lock_guard<std::mutex> guard(client->registry()->mu);
        auto entry = client->registry()->by_token.find(lock.token());
        if (entry != client->registry()->by_token.end()) entry->second.releasing = false;
      }
      grants.observe(LockOperation::kRelease, lock.key(), LockOutcome::kError, 0,
                     Clock::now() - sent);
      sink->complete(std::make_exception_ptr(
                         client->source().native_error(NativeOp::kRelease, lock.key(), *failure)),
                     false);
      return;
    }
    grants.observe(LockOperation::kRelease, lock.key(),
                   reply->ok ? LockOutcome::kOk : LockOutcome::kNotOurs, 0, Clock::now() - sent);
    // The Lock learns the outcome without another round trip: its release asks `ops`, which
    // answers with what the server said.
    ops->settle(reply->ok);
    bool released = false;
    try {
      released = lock.release();
    } catch (...) {
    }
    sink->complete(nullptr, released);
  };
  client->submit(std::move(request));
  return true;
}

void native_shutdown(const std::shared_ptr<PostgresNativeClient>& client) noexcept {
  try {
    client->shutdown();
  } catch (...) {
  }
}

}  // namespace lockkit::detail
