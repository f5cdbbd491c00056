// SPDX-License-Identifier: MIT
// AsyncLockApi's native redis:// path: requests are written and replies completed by the
// executor, many in flight on one pipelined connection, with the sync store's scripts and keys.
#include "async/redis_native_client.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <asio/bind_executor.hpp>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "async/async_keeper.hpp"
#include "async/blocking_pool.hpp"
#include "async/native_lease_ops.hpp"
#include "async/redis_native_connection.hpp"
#include "core/escape.hpp"
#include "core/keeper.hpp"
#include "core/lease_ops.hpp"
#include "core/store_lock_api.hpp"
#include "core/token.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/lock_api.hpp"
#include "redis/redis_native.hpp"
#include "redis/redis_scripts.hpp"

namespace lockkit::detail {

namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

enum Script : int { kAcquire = 0, kRelease = 1, kExtend = 2 };

std::string context(std::string_view op, std::string_view key) {
  return std::string(op) + " \"" + escape_key(key) + "\": ";
}

class RedisLeaseOps;

// Natively granted locks by token, for `native_release` to find their `RedisLeaseOps`. The key
// views the token that the entry's `RedisLeaseOps` owns: its destructor erases the entry.
struct Registry {
  struct Entry {
    std::weak_ptr<RedisLeaseOps> ops;
    // A native release was sent (and has not failed): keep-alive rounds leave the lease out.
    // The release's completion waits for a renewal of the lease under way, on the strand that
    // would read that renewal's reply: so none may be sent after the release, and every one
    // sent before it is answered first (replies come in order).
    bool releasing = false;
  };
  std::mutex mu;
  std::unordered_map<std::string_view, Entry, TokenHash, std::equal_to<>>
      by_token;  // guarded by mu
};

// The `LeaseOps` of a natively granted `Lock`: keep-alive renewals go out natively while the
// AsyncLockApi lives.
class RedisLeaseOps final : public NativeLeaseOps, public AsyncRenewer {
 public:
  RedisLeaseOps(std::shared_ptr<LeaseOps> inner, std::shared_ptr<Registry> registry,
                const std::array<char, kTokenChars>& token, std::weak_ptr<RedisNativeClient> client)
      : NativeLeaseOps(std::move(inner)),
        registry_(std::move(registry)),
        token_(token),
        client_(std::move(client)) {}
  ~RedisLeaseOps() override {
    std::lock_guard<std::mutex> guard(registry_->mu);
    auto it = registry_->by_token.find(token());
    if (it != registry_->by_token.end() && it->second.ops.expired()) registry_->by_token.erase(it);
  }

  std::string_view token() const noexcept { return {token_.data(), token_.size()}; }

  // Keep-alive renewals of the natively granted locks of one AsyncLockApi form one batch, sent
  // on its connection by the executor.
  // The registry, one per client, is the key: it lives while a lease of that client (or the
  // keeper's batch of them) does, so no later client's leases can join this batch.
  const void* batch_key() const noexcept override { return registry_.get(); }
  std::string renew_many(std::span<const ExtendRequest> requests,
                         std::span<ExtendOutcome> out) noexcept override;

  // The AsyncLockApi's own keep-alive: the same requests, their outcome handed to `done` on the
  // strand that read the last reply (no thread waits for it).
  bool renew_async(std::span<const ExtendRequest> requests, std::span<char> skipped,
                   Done done) override;
  Clock::duration reply_bound() const noexcept override;

 private:
  // A renewal through the blocking store may reach the server after a native release that was
  // sent meanwhile: its "not ours" then only says that the release went first, not that the
  // lease was lost (the holder is releasing it), so it counts as a failed renewal instead.
  void forgive_released(std::span<const ExtendRequest> requests,
                        std::span<ExtendOutcome> out) noexcept {
    std::lock_guard<std::mutex> guard(registry_->mu);
    for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
      if (out[i] != ExtendOutcome::kNotOurs) continue;
      auto entry = registry_->by_token.find(requests[i].token);
      if (entry != registry_->by_token.end() && entry->second.releasing) {
        out[i] = ExtendOutcome::kFailed;
      }
    }
  }

 private:
  const std::shared_ptr<Registry> registry_;
  const std::array<char, kTokenChars> token_;  // in place: a string of 32 would allocate
  const std::weak_ptr<RedisNativeClient> client_;
};

}  // namespace

// The redis:// store's native client: its connection, and what it needs to hand grants to the
// core. The connection is shared code (redis_native_connection.cpp); this adds the store.
class RedisNativeClient {
 public:
  using Request = RedisNativeConnection::Request;

  RedisNativeClient(const asio::any_io_executor& ex, std::shared_ptr<LockApi> api,
                    NativeGrants& grants, redis::NativeAsyncSource& source,
                    redis::NativeTarget target)
      : api_(api),
        grants_(grants),
        source_(source),
        registry_(std::make_shared<Registry>()),
        conn_(std::make_shared<RedisNativeConnection>(
            asio::make_strand(ex),
            NativeConnectionConfig{
                .target = std::move(target),
                .scripts = {redis::kAcquireScript, redis::kReleaseScript, redis::kExtendScript},
                .name = "lockkit-async",
                .backend = "redis",
                .read_info = false,
                // The probe goes through the blocking store; `api` keeps it alive.
                .probe = [api = std::move(api),
                          &grants] { (void)grants.grant_store().status("lockkit-async-probe"); },
            })) {}

  NativeGrants& grants() noexcept { return grants_; }
  redis::NativeAsyncSource& source() noexcept { return source_; }
  const std::shared_ptr<Registry>& registry() const noexcept { return registry_; }
  const asio::strand<asio::any_io_executor>& strand() const noexcept { return conn_->strand(); }
  const redis::NativeTarget& target() const noexcept { return conn_->target(); }

  static void add(Request& request, std::string_view arg) {
    RedisNativeConnection::add(request, arg);
  }
  void submit(Request&& request) { conn_->submit(std::move(request)); }
  bool try_submit(Request&& request) { return conn_->try_submit(std::move(request)); }
  void shutdown() { conn_->shutdown(); }

 private:
  const std::shared_ptr<LockApi> api_;  // keeps grants_ and source_ alive
  NativeGrants& grants_;
  redis::NativeAsyncSource& source_;
  const std::shared_ptr<Registry> registry_;
  const std::shared_ptr<RedisNativeConnection> conn_;
};

namespace {

// One keep-alive round sent natively: the keeper's worker waits here while the executor sends
// the renewals and reads their replies.
struct RenewRound {
  explicit RenewRound(std::size_t n) : outcomes(n, ExtendOutcome::kFailed), remaining(n) {}
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ExtendOutcome> outcomes;  // guarded by mu
  std::size_t remaining;                // guarded by mu
  std::string error;                    // guarded by mu
};

// The native renewal of `r`: the sync store's extend script on its keys (`lock_key` ... are the
// caller's scratch buffers). Its reply is observed as an extend by the grants' observers, then
// goes to `handle(error, reply)`.
template <class Handle>
RedisNativeClient::Request extend_request(RedisNativeClient& client, const ExtendRequest& r,
                                          std::string& lock_key, std::string& fence_key,
                                          std::string& holder_key, Handle handle) {
  RedisNativeClient::Request request;
  client.source().native_keys_of(r.key, lock_key, fence_key, holder_key);
  request.script = kExtend;
  for (std::string_view arg :
       {std::string_view("2"), std::string_view(lock_key), std::string_view(holder_key), r.token}) {
    RedisNativeClient::add(request, arg);
  }
  RedisNativeClient::add(request, std::to_string(r.ttl.count()));
  // The grants outlive every request: the client holds the LockApi that owns them.
  request.done = [handle = std::move(handle), grants = &client.grants(), key = std::string(r.key),
                  sent_at = Clock::now()](std::exception_ptr error, redisReply* reply) {
    LockOutcome outcome = LockOutcome::kError;
    if (!error && reply->type == REDIS_REPLY_INTEGER) {
      outcome = reply->integer == 1 ? LockOutcome::kOk : LockOutcome::kNotOurs;
    }
    grants->observe(LockOperation::kExtend, key, outcome, 0, Clock::now() - sent_at);
    handle(std::move(error), reply);
  };
  return request;
}

}  // namespace

std::string RedisLeaseOps::renew_many(std::span<const ExtendRequest> requests,
                                      std::span<ExtendOutcome> out) noexcept {
  auto client = client_.lock();
  if (!client) return renew_blocking(requests, out);
  try {
    auto round = std::make_shared<RenewRound>(requests.size());
    std::string lock_key, fence_key, holder_key;
    std::size_t unsent_from = requests.size();  // from here on, through the blocking store
    std::vector<char> releasing(requests.size(), 0);
    bool any_releasing = false;
    {
      // See Registry::Entry::releasing: a lease whose native release was sent is not renewed
      // (kFailed: the keeper stops renewing it once the release completes). Its release's
      // completion, on the strand, waits for this whole round to end: so then the round's
      // other leases go through the blocking store, which needs no strand.
      std::unique_lock<std::mutex> registry_guard(registry_->mu);
      for (std::size_t i = 0; i < requests.size(); ++i) {
        auto entry = registry_->by_token.find(requests[i].token);
        releasing[i] = entry != registry_->by_token.end() && entry->second.releasing;
        any_releasing = any_releasing || releasing[i];
      }
      if (any_releasing) {
        registry_guard.unlock();
        std::vector<ExtendRequest> rest;
        std::vector<std::size_t> at;
        for (std::size_t i = 0; i < requests.size(); ++i) {
          if (!releasing[i]) {
            rest.push_back(requests[i]);
            at.push_back(i);
          }
        }
        std::vector<ExtendOutcome> outcomes(rest.size(), ExtendOutcome::kFailed);
        std::string error = renew_blocking(rest, outcomes);
        for (std::size_t j = 0; j < at.size(); ++j) out[at[j]] = outcomes[j];
        forgive_released(requests, out);
        return error;
      }
      for (std::size_t i = 0; i < requests.size(); ++i) {
        const ExtendRequest& r = requests[i];
        bool skip = false;
        {
          try {
            client->source().native_check_key(r.key);
          } catch (const std::exception&) {
            skip = true;  // refused by `extend` too: kFailed, as the blocking store answers it
          }
        }
        if (skip) {
          std::lock_guard<std::mutex> guard(round->mu);
          --round->remaining;
          continue;
        }
        auto on_reply = [round, i](std::exception_ptr error, redisReply* reply) {
          std::lock_guard<std::mutex> guard(round->mu);
          if (error) {
            try {
              std::rethrow_exception(error);
            } catch (const std::exception& e) {
              if (round->error.empty()) round->error = e.what();
            }
          } else if (reply->type == REDIS_REPLY_INTEGER) {
            round->outcomes[i] =
                reply->integer == 1 ? ExtendOutcome::kExtended : ExtendOutcome::kNotOurs;
          } else if (round->error.empty()) {
            round->error = "redis: extend: unexpected reply";
          }
          if (--round->remaining == 0) round->cv.notify_all();
        };
        auto request =
            extend_request(*client, r, lock_key, fence_key, holder_key, std::move(on_reply));
        if (!client->try_submit(std::move(request))) {
          // The AsyncLockApi went away during this round: the rest through the blocking store.
          std::lock_guard<std::mutex> guard(round->mu);
          round->remaining -= requests.size() - i;
          unsent_from = i;
          break;
        }
      }
    }
    // Every request sent completes within the command timeout (the connection fails them
    // otherwise); the margin covers an executor that stopped running.
    const auto bound = client->target().command_timeout + client->target().connect_timeout +
                       std::chrono::seconds(1);
    client.reset();
    std::unique_lock<std::mutex> lk(round->mu);
    if (!round->cv.wait_for(lk, bound, [&] { return round->remaining == 0; })) {
      if (round->error.empty()) round->error = "redis: extend: no reply in time";
    }
    std::copy(round->outcomes.begin(), round->outcomes.end(), out.begin());
    std::string error = round->error;
    lk.unlock();
    if (unsent_from < requests.size()) {
      // Those the AsyncLockApi could not send any more.
      std::string more = renew_blocking(requests.subspan(unsent_from), out.subspan(unsent_from));
      if (error.empty()) error = std::move(more);
      forgive_released(requests, out);
    }
    return error;
  } catch (const std::exception& e) {  // out of memory
    return e.what();
  }
}

namespace {

// One keep-alive round of an AsyncLockApi sent natively: the last reply (or whoever finds none
// left to wait for) hands the outcomes to `done`.
struct AsyncRenewRound {
  std::mutex mu;
  std::vector<ExtendOutcome> outcomes;  // guarded by mu
  std::string error;                    // guarded by mu
  std::size_t remaining = 1;            // guarded by mu; 1 for the sender until all are sent
  AsyncRenewer::Done done;

  // Counts one request as answered; the last one calls `done` (no lock held).
  void answered(std::size_t i, ExtendOutcome outcome, std::string_view failure) {
    AsyncRenewer::Done finish;
    std::vector<ExtendOutcome> all;
    std::string why;
    {
      std::lock_guard<std::mutex> guard(mu);
      if (i < outcomes.size()) outcomes[i] = outcome;
      if (!failure.empty() && error.empty()) error = failure;
      if (--remaining != 0) return;
      finish = std::move(done);
      all = std::move(outcomes);
      why = std::move(error);
    }
    finish(std::move(all), std::move(why));
  }
};

}  // namespace

Clock::duration RedisLeaseOps::reply_bound() const noexcept {
  auto client = client_.lock();
  if (!client) return Clock::duration::max();
  return client->target().command_timeout + client->target().connect_timeout +
         std::chrono::seconds(1);
}

bool RedisLeaseOps::renew_async(std::span<const ExtendRequest> requests, std::span<char> skipped,
                                Done done) {
  auto client = client_.lock();
  if (!client) return false;
  auto round = std::make_shared<AsyncRenewRound>();
  round->outcomes.assign(requests.size(), ExtendOutcome::kFailed);
  round->done = std::move(done);
  std::size_t sending = 0;
  std::string lock_key, fence_key, holder_key;
  {
    // See Registry::Entry::releasing: a lease whose native release was sent is not renewed; its
    // release's completion must find it no longer sending, and the caller clears it at once.
    // The rest go out under the registry's mutex, so that a release is wholly before or after.
    std::lock_guard<std::mutex> registry_guard(registry_->mu);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      auto entry = registry_->by_token.find(requests[i].token);
      skipped[i] = entry != registry_->by_token.end() && entry->second.releasing ? 1 : 0;
      sending += skipped[i] ? 0 : 1;
    }
    if (sending == 0) return false;
    {
      std::lock_guard<std::mutex> guard(round->mu);
      round->remaining += sending;
    }
    bool open = true;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (skipped[i]) continue;
      const ExtendRequest& r = requests[i];
      if (!open) {
        round->answered(i, ExtendOutcome::kFailed, "redis: extend: the AsyncLockApi is gone");
        continue;
      }
      try {
        client->source().native_check_key(r.key);
      } catch (const std::exception& e) {
        round->answered(i, ExtendOutcome::kFailed, e.what());  // as the blocking store answers
        continue;
      }
      auto on_reply = [round, i](std::exception_ptr error, redisReply* reply) {
        if (error) {
          std::string what = "redis: extend: failed";
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          round->answered(i, ExtendOutcome::kFailed, what);
        } else if (reply->type == REDIS_REPLY_INTEGER) {
          round->answered(
              i, reply->integer == 1 ? ExtendOutcome::kExtended : ExtendOutcome::kNotOurs, {});
        } else {
          round->answered(i, ExtendOutcome::kFailed, "redis: extend: unexpected reply");
        }
      };
      auto request =
          extend_request(*client, r, lock_key, fence_key, holder_key, std::move(on_reply));
      if (!client->try_submit(std::move(request))) {
        open = false;  // the AsyncLockApi went away during this round
        round->answered(i, ExtendOutcome::kFailed, "redis: extend: the AsyncLockApi is gone");
      }
    }
  }
  round->answered(requests.size(), ExtendOutcome::kFailed, {});  // the sender's count
  return true;
}

std::shared_ptr<RedisNativeClient> make_redis_native(const asio::any_io_executor& ex,
                                                     const std::shared_ptr<LockApi>& api) {
  auto* grants = dynamic_cast<NativeGrants*>(api.get());
  if (!grants) return nullptr;
  auto* source = dynamic_cast<redis::NativeAsyncSource*>(&grants->grant_store());
  if (!source) return nullptr;
  auto target = source->native_target();
  if (!target) return nullptr;
  return std::make_shared<RedisNativeClient>(ex, api, *grants, *source, std::move(*target));
}

void native_try_acquire(const std::shared_ptr<RedisNativeClient>& client, std::string_view key,
                        std::chrono::milliseconds ttl, std::shared_ptr<AsyncAcquireOperation> op,
                        NativeAcquireDone done) {
  try {
    client->source().native_check_key(key);
  } catch (...) {
    done(std::move(op), std::current_exception(), std::nullopt);
    return;
  }
  RedisNativeClient::Request request;
  {
    // Scratch buffers of this thread: the names go straight into the request.
    thread_local std::string lock_key, fence_key, holder_key;
    client->source().native_keys_of(key, lock_key, fence_key, holder_key);
    request.payload.reserve(lock_key.size() + fence_key.size() + holder_key.size() + 96);
    RedisNativeClient::add(request, "3");
    RedisNativeClient::add(request, lock_key);
    RedisNativeClient::add(request, fence_key);
    RedisNativeClient::add(request, holder_key);
  }
  // The token in place (no string of its own once the request is made). From the public
  // make_token(): the core's fill_token is not exported from a shared liblockkit.
  std::array<char, kTokenChars> token;
  {
    const std::string fresh = make_token();
    static_assert(kTokenChars == 32);
    if (fresh.size() != token.size()) throw std::logic_error("lockkit: unexpected token length");
    std::memcpy(token.data(), fresh.data(), token.size());
  }
  RedisNativeClient::add(request, std::string_view(token.data(), token.size()));
  {
    char ttl_ms[24];
    const auto [end, ec] = std::to_chars(ttl_ms, ttl_ms + sizeof ttl_ms, ttl.count());
    (void)ec;  // 24 digits hold every int64
    RedisNativeClient::add(request,
                           std::string_view(ttl_ms, static_cast<std::size_t>(end - ttl_ms)));
  }
  request.script = kAcquire;
  request.maybe_write = true;
  // The local clock is read before the request is sent: valid_until can only be earlier than
  // the server's expiry, as for the blocking path.
  const auto start = client->grants().grant_store().now();
  const auto sent = Clock::now();
  // `key` is the operation's own: valid while `op` is held here (until it is handed to `done`).
  request.done = [client, key, token, ttl, start, sent, op = std::move(op), done](
                     std::exception_ptr error, redisReply* reply) mutable {
    auto& grants = client->grants();
    const std::string_view token_view(token.data(), token.size());
    if (error) {
      bool doubt = false;
      try {
        std::rethrow_exception(error);
      } catch (const BackendError& e) {
        doubt = e.kind() == ErrorKind::kInDoubt;
        error = std::make_exception_ptr(
            BackendError("redis", e.kind(), context("try_acquire", key) + (e.what() + 7)));
      } catch (...) {
      }
      grants.observe(LockOperation::kTryAcquire, key, LockOutcome::kError, 0, Clock::now() - sent);
      if (!doubt) {
        done(std::move(op), std::move(error), std::nullopt);
        return;
      }
      // As the core does after an in-doubt acquire: take it back with our own token, then say
      // so. The release blocks, so it runs on the pool.
      asio::post(blocking_pool(), [client, key = std::string(key), token = std::string(token_view),
                                   error = std::move(error), op = std::move(op), done]() mutable {
        try {
          (void)client->grants().grant_store().release(key, token);
        } catch (...) {  // the caller learns kInDoubt either way; the lease expires by its TTL
        }
        auto& strand = client->strand();
        // Held until post() has returned (the handler may run, and the context go, at once).
        const auto keep = asio::make_work_guard(strand.get_inner_executor());
        asio::post(strand, [error = std::move(error), op = std::move(op), done]() mutable {
          done(std::move(op), std::move(error), std::nullopt);
        });
      });
      return;
    }
    long long fence = -2;
    if (reply->type == REDIS_REPLY_INTEGER) fence = reply->integer;
    if (fence == -1) {
      std::string lock_key, fence_key, holder_key;
      client->source().native_keys_of(key, lock_key, fence_key, holder_key);
      done(std::move(op),
           std::make_exception_ptr(BackendError(
               "redis", ErrorKind::kProtocol,
               context("try_acquire", key) + "\"" + escape_key(fence_key) + "\" or \"" +
                   escape_key(holder_key) +
                   "\" holds a key that is not lockkit's; names containing \"lockkit:{\" are "
                   "reserved for lockkit")),
           std::nullopt);
      return;
    }
    if (fence < 0) {
      std::string what = reply->type == REDIS_REPLY_ERROR
                             ? "server error: " + std::string(reply->str, reply->len)
                             : std::string("unexpected reply");
      done(std::move(op),
           std::make_exception_ptr(
               BackendError("redis", ErrorKind::kProtocol, context("try_acquire", key) + what)),
           std::nullopt);
      return;
    }
    const auto latency = Clock::now() - sent;
    if (fence == 0) {
      grants.observe(LockOperation::kTryAcquire, key, LockOutcome::kBusy, 0, latency);
      done(std::move(op), nullptr, std::nullopt);
      return;
    }
    std::optional<Lock> lock;
    try {
      auto ops =
          std::make_shared<RedisLeaseOps>(grants.grant_ops(), client->registry(), token, client);
      {
        std::lock_guard<std::mutex> guard(client->registry()->mu);
        // A new key for the entry (never an older entry's, which views another token).
        auto& by_token = client->registry()->by_token;
        by_token.erase(std::string_view(ops->token()));
        by_token.emplace(std::string_view(ops->token()), Registry::Entry{ops, false});
      }
      lock.emplace(grants.adopt_grant(key, token_view, static_cast<std::uint64_t>(fence), start,
                                      ttl, std::move(ops)));
    } catch (...) {
      done(std::move(op), std::current_exception(),
           std::nullopt);  // out of memory; the lease runs out
      return;
    }
    grants.observe(LockOperation::kTryAcquire, key, LockOutcome::kOk,
                   static_cast<std::uint64_t>(fence), latency);
    done(std::move(op), nullptr, std::move(lock));
  };
  client->submit(std::move(request));
}

bool native_release(const std::shared_ptr<RedisNativeClient>& client, Lock& lock,
                    std::shared_ptr<AsyncBoolSink>& sink) {
  if (!lock.held()) return false;
  RedisNativeClient::Request request;
  {
    thread_local std::string lock_key, fence_key, holder_key;
    client->source().native_keys_of(lock.key(), lock_key, fence_key, holder_key);
    request.payload.reserve(lock_key.size() + holder_key.size() + 64);
    RedisNativeClient::add(request, "2");
    RedisNativeClient::add(request, lock_key);
    RedisNativeClient::add(request, holder_key);
    RedisNativeClient::add(request, lock.token());
  }
  request.script = kRelease;
  const auto sent = Clock::now();
  const auto& registry = client->registry();
  // Under the registry's mutex from the check to the submission, so that a keep-alive round
  // (which submits under it too) is either wholly before the release or leaves the lease out.
  std::lock_guard<std::mutex> guard(registry->mu);
  auto it = registry->by_token.find(lock.token());
  if (it == registry->by_token.end()) return false;
  std::shared_ptr<RedisLeaseOps> ops = it->second.ops.lock();
  if (!ops) return false;
  it->second.releasing = true;
  // `ops` moves into the completion: the last reference must never drop here, under the
  // registry's mutex (its destructor takes it).
  request.done = [client, &lock, ops = std::move(ops), sent, done = std::move(sink)](
                     std::exception_ptr error, redisReply* reply) mutable {
    auto& grants = client->grants();
    if (error || reply->type != REDIS_REPLY_INTEGER) {
      {
        // The lock stays held and releasable: its keep-alive goes on.
        std::lock_guard<std::mutex> again(client->registry()->mu);
        auto entry = client->registry()->by_token.find(lock.token());
        if (entry != client->registry()->by_token.end()) entry->second.releasing = false;
      }
      if (!error) {
        error = std::make_exception_ptr(BackendError(
            "redis", ErrorKind::kProtocol, context("release", lock.key()) + "unexpected reply"));
      }
      grants.observe(LockOperation::kRelease, lock.key(), LockOutcome::kError, 0,
                     Clock::now() - sent);
      done->complete(std::move(error), false);
      return;
    }
    const bool ours = reply->integer == 1;
    grants.observe(LockOperation::kRelease, lock.key(),
                   ours ? LockOutcome::kOk : LockOutcome::kNotOurs, 0, Clock::now() - sent);
    // The Lock learns the outcome without another round trip: its release asks `ops`, which
    // answers with what the server said.
    ops->settle(ours);
    bool released = false;
    try {
      released = lock.release();
    } catch (...) {
    }
    done->complete(nullptr, released);
  };
  client->submit(std::move(request));
  return true;
}

void native_shutdown(const std::shared_ptr<RedisNativeClient>& client) noexcept {
  try {
    client->shutdown();
  } catch (...) {
  }
}

}  // namespace lockkit::detail
