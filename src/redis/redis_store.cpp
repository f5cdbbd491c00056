// SPDX-License-Identifier: MIT
// The redis:// store: Lua scripts for acquire/release/extend/status, URL parsing, registration.
#include <algorithm>
#include <charconv>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

#include "core/escape.hpp"
#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_cluster.hpp"
#include "redis/redis_connection.hpp"
#include "redis/redis_keys.hpp"
#include "redis/redis_native.hpp"
#include "redis/redis_scripts.hpp"

namespace lockkit {
namespace {

using detail::StoreFailure;
using detail::redis::kAcquireScript;
using detail::redis::kExtendScript;
using detail::redis::kReleaseScript;
using detail::redis::kStatusScript;
using detail::redis::Reply;
using std::chrono::milliseconds;

enum Script : std::size_t { kAcquire, kRelease, kExtend, kStatus };

// Applies to the whole backend: no call may exceed the configured timeouts.
void validate(const RedisOptions& o) {
  if (o.host.empty()) throw std::invalid_argument("host: must not be empty");
  if (o.port == 0) throw std::invalid_argument("port: must be 1..65535, got 0");
  if (o.connections < 1 || o.connections > 256) {
    throw std::invalid_argument("connections: must be 1..256, got " +
                                std::to_string(o.connections));
  }
  if (o.db > 65535)
    throw std::invalid_argument("db: must be 0..65535, got " + std::to_string(o.db));
  if (o.cluster && o.db != 0) {
    throw std::invalid_argument("db: a Redis Cluster has database 0 only, got " +
                                std::to_string(o.db));
  }
  // Cluster routing is tested over plain connections only: over TLS it is refused rather than
  // offered untested.
  if (o.cluster && o.tls.enabled) {
    throw std::invalid_argument("cluster: not supported over TLS (rediss://)");
  }
  if (!o.cluster && !o.seeds.empty()) {
    throw std::invalid_argument("seeds: more than one node needs cluster mode (cluster=1)");
  }
  for (const RedisNode& seed : o.seeds) {
    if (seed.host.empty() || seed.port == 0) {
      throw std::invalid_argument("seeds: each needs a host and a port 1..65535");
    }
  }
  if (o.wait_replicas > 16) {
    throw std::invalid_argument("wait_replicas: must be 0..16, got " +
                                std::to_string(o.wait_replicas));
  }
  if (o.wait_replicas > 0 &&
      (o.wait_timeout < milliseconds(1) || o.wait_timeout > o.command_timeout)) {
    throw std::invalid_argument("wait_timeout: must be 1ms..command_timeout (" +
                                format_duration(o.command_timeout) + "), got " +
                                format_duration(o.wait_timeout));
  }
  const RedisTlsOptions& tls = o.tls;
  if (!tls.enabled &&
      (!tls.ca_file.empty() || !tls.ca_dir.empty() || !tls.cert_file.empty() ||
       !tls.key_file.empty() || !tls.server_name.empty() || tls.insecure_skip_verify)) {
    throw std::invalid_argument("tls: options set but TLS is off (use rediss://)");
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    throw std::invalid_argument("tls_cert, tls_key: give both or neither");
  }
  if (tls.insecure_skip_verify && (!tls.ca_file.empty() || !tls.ca_dir.empty())) {
    throw std::invalid_argument(
        "tls_insecure_skip_verify: verifies nothing, so tls_ca_file/tls_ca_dir would be ignored");
  }
  for (auto [name, value] : {std::pair{"connect_timeout", o.connect_timeout},
                             std::pair{"command_timeout", o.command_timeout}}) {
    if (value < milliseconds(1) || value > std::chrono::hours(1)) {
      throw std::invalid_argument(std::string(name) + ": must be 1ms..1h, got " +
                                  format_duration(value));
    }
  }
}

std::string context(std::string_view op, std::string_view key) {
  return std::string(op) + " \"" + detail::escape_key(key) + "\": ";
}

[[noreturn]] void raise(std::string_view op, std::string_view key, const StoreFailure& f) {
  throw BackendError("redis", f.kind(), context(op, key) + f.what());
}

std::uint64_t to_uint(const redisReply& r, std::string_view op, std::string_view key) {
  if (r.type == REDIS_REPLY_INTEGER && r.integer >= 0) return static_cast<std::uint64_t>(r.integer);
  if (r.type == REDIS_REPLY_STRING) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(r.str, r.str + r.len, v);
    if (ec == std::errc() && ptr == r.str + r.len) return v;
  }
  throw BackendError("redis", ErrorKind::kProtocol, context(op, key) + "unexpected reply");
}

// Per-thread buffers, so that a warm call allocates nothing for its keys and request. A `Lock`
// in a thread_local may be released at thread exit after these buffers are gone: then a call
// falls back to buffers of its own.
struct Buffers {
  std::string request;
  std::tuple<std::string, std::string, std::string> keys;  // lock, fence, holder
};

thread_local bool g_buffers_gone = false;  // trivially destructible: readable until thread end

struct ThreadBuffers : Buffers {
  ~ThreadBuffers() { g_buffers_gone = true; }
};

class Scratch {
 public:
  Buffers& get() {
    if (g_buffers_gone) return own_;
    thread_local ThreadBuffers shared;
    return shared;
  }

 private:
  Buffers own_;  // empty strings: no allocation unless used
};

}  // namespace

// One Redis server as a `LeaseStore`: each call is one script run by EVALSHA on a pipelined,
// shared connection. Thread safety: safe to share; calls may run concurrently.
class RedisStore final : public LeaseStore, public detail::redis::NativeAsyncSource {
 public:
  explicit RedisStore(const RedisOptions& o)
      : layout_(o.prefix),
        command_timeout_(o.command_timeout),
        call_budget_(o.connect_timeout + o.command_timeout),
        wait_replicas_(o.wait_replicas),
        wait_timeout_(o.wait_timeout) {
    detail::redis::ConnectConfig config{
        .host = o.host,
        .port = o.port,
        .user = o.user,
        .password = o.password.empty() && o.user.empty() ? std::nullopt
                                                         : std::optional<std::string>(o.password),
        .db = o.db,
        .connect_timeout = o.connect_timeout,
        .command_timeout = o.command_timeout,
        .scripts = {kAcquireScript, kReleaseScript, kExtendScript, kStatusScript},
        .allow_eviction = o.allow_eviction,
        .tls =
            detail::redis::TlsConfig{
                .enabled = o.tls.enabled,
                .ca_file = o.tls.ca_file,
                .ca_dir = o.tls.ca_dir,
                .cert_file = o.tls.cert_file,
                .key_file = o.tls.key_file,
                .server_name = o.tls.server_name,
                .insecure_skip_verify = o.tls.insecure_skip_verify,
            },
    };
    if (!o.cluster && !o.tls.enabled && o.wait_replicas == 0) {
      native_ = detail::redis::NativeTarget{.host = o.host,
                                            .port = o.port,
                                            .user = o.user,
                                            .password = config.password,
                                            .db = o.db,
                                            .connect_timeout = o.connect_timeout,
                                            .command_timeout = o.command_timeout};
    }
    if (!o.cluster) {
      pool_ = std::make_unique<detail::redis::Pool>(std::move(config), o.connections);
      return;
    }
    std::vector<detail::redis::NodeAddress> seeds{{o.host, o.port}};
    for (const RedisNode& seed : o.seeds) seeds.push_back({seed.host, seed.port});
    router_ = std::make_unique<detail::redis::ClusterRouter>(std::move(config), std::move(seeds),
                                                             o.connections);
  }

  std::string_view backend() const noexcept override { return "redis"; }

  std::optional<detail::redis::NativeTarget> native_target() const override { return native_; }
  void native_check_key(std::string_view key) const override { check_key(key); }
  void native_keys_of(std::string_view key, std::string& lock, std::string& fence,
                      std::string& holder) const override {
    layout_.keys_of(key, lock, fence, holder);
  }

  milliseconds drift(milliseconds ttl) const noexcept override {
    return ttl / 100 + milliseconds(2);  // clock drift between us and Redis, as Redlock does
  }

  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       milliseconds ttl) override {
    check_key(key);
    Scratch scratch;
    auto& [lock_key, fence_key, holder_key] = scratch.get().keys;
    layout_.keys_of(key, lock_key, fence_key, holder_key);
    char ttl_buf[24];
    auto [ttl_end, ttl_ec] = std::to_chars(ttl_buf, ttl_buf + sizeof ttl_buf, ttl.count());
    (void)ttl_ec;  // a ttl of at most 7 days always fits
    Reply reply;
    std::shared_ptr<detail::redis::Connection> used;
    try {
      reply = exchange(kAcquire, slot_of(lock_key),
                       {"3", lock_key, fence_key, holder_key, token,
                        std::string_view(ttl_buf, ttl_end - ttl_buf)},
                       wait_replicas_ > 0 ? &used : nullptr);
    } catch (const StoreFailure& f) {
      if (!f.maybe_applied()) raise("try_acquire", key, f);
      // No retry: the SET may have been applied. The core releases our token and rethrows.
      throw BackendError(
          "redis", ErrorKind::kInDoubt,
          context("try_acquire", key) + f.what() + "; the lock may have been taken (in doubt)");
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == -1) {
      // Nothing was written: a key that is not lockkit's sits at one of our internal names.
      throw BackendError("redis", ErrorKind::kProtocol,
                         context("try_acquire", key) + "\"" + detail::escape_key(fence_key) +
                             "\" or \"" + detail::escape_key(holder_key) +
                             "\" holds a key that is not lockkit's; names containing "
                             "\"lockkit:{\" are reserved for lockkit");
    }
    std::uint64_t fence = to_uint(*reply, "try_acquire", key);
    if (fence == 0) return std::nullopt;
    if (wait_replicas_ > 0) confirm_replicated(*used, key, token);
    return fence;
  }

  bool release(std::string_view key, std::string_view token) override {
    check_key(key);
    Scratch scratch;
    auto& [lock_key, fence_key, holder_key] = scratch.get().keys;
    layout_.keys_of(key, lock_key, fence_key, holder_key);
    try {
      return to_uint(*exchange(kRelease, slot_of(lock_key), {"2", lock_key, holder_key, token}),
                     "release", key) == 1;
    } catch (const StoreFailure& f) {
      raise("release", key, f);
    }
  }

  bool extend(std::string_view key, std::string_view token, milliseconds ttl) override {
    check_key(key);
    Scratch scratch;
    auto& [lock_key, fence_key, holder_key] = scratch.get().keys;
    layout_.keys_of(key, lock_key, fence_key, holder_key);
    std::string ttl_ms = std::to_string(ttl.count());
    try {
      return to_uint(
                 *exchange(kExtend, slot_of(lock_key), {"2", lock_key, holder_key, token, ttl_ms}),
                 "extend", key) == 1;
    } catch (const StoreFailure& f) {
      raise("extend", key, f);
    }
  }

  // One pipelined round per server: every renewal's script goes out back to back on one
  // connection and the replies are matched in order; on a cluster, one such round per master
  // (grouped by the slot map), and a renewal redirected there goes again on its own through
  // `extend`, which follows redirections.
  void extend_many(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out) override {
    std::fill(out.begin(), out.end(), ExtendOutcome::kFailed);
    std::optional<StoreFailure> failure;
    std::vector<std::size_t> redirected;
    std::vector<std::pair<detail::redis::Pool*, std::vector<std::size_t>>> rounds;
    const detail::redis::TimePoint budget = std::chrono::steady_clock::now() + call_budget_;
    std::string lock_key, fence_key, holder_key;
    for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
      if (layout_.reserved(requests[i].key)) continue;  // `extend` would refuse it: kFailed
      detail::redis::Pool* pool = pool_.get();
      if (router_) {
        try {
          layout_.keys_of(requests[i].key, lock_key, fence_key, holder_key);
          pool = &router_->route(detail::redis::key_slot(lock_key), budget);
        } catch (const StoreFailure& f) {
          if (!failure) failure = f;
          continue;
        }
      }
      auto it = std::find_if(rounds.begin(), rounds.end(),
                             [&](const auto& r) { return r.first == pool; });
      if (it == rounds.end()) it = rounds.insert(rounds.end(), {pool, {}});
      it->second.push_back(i);
    }
    for (auto& [pool, indices] : rounds) {
      extend_round(*pool, requests, indices, out, failure, redirected);
    }
    for (std::size_t i : redirected) {
      try {
        out[i] = extend(requests[i].key, requests[i].token, requests[i].ttl)
                     ? ExtendOutcome::kExtended
                     : ExtendOutcome::kNotOurs;
      } catch (const BackendError&) {  // kFailed, as for any other failure of one renewal
      }
    }
    const bool none = std::all_of(out.begin(), out.end(),
                                  [](ExtendOutcome o) { return o == ExtendOutcome::kFailed; });
    if (failure && none) {
      throw BackendError(
          "redis", failure->kind(),
          "extend " + std::to_string(requests.size()) + " leases in one round: " + failure->what());
    }
  }

  std::optional<LockInfo> status(std::string_view key) override {
    check_key(key);
    return status_unchecked(key);
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    // Only lockkit's locks have a holder record: scanning for those leaves out every other key
    // with a TTL (caches, sessions, other libraries' locks), even with an empty prefix.
    const std::string pattern = layout_.holder_pattern(prefix);
    std::vector<LockInfo> out;
    // A cluster: every master's keyspace in turn (each holds the slots it serves).
    std::vector<detail::redis::Pool*> nodes;
    if (router_) {
      try {
        nodes = router_->masters(std::chrono::steady_clock::now() + call_budget_);
      } catch (const StoreFailure& f) {
        raise("list", prefix, f);
      }
    } else {
      nodes.push_back(pool_.get());
    }
    for (detail::redis::Pool* node : nodes) {
      std::string cursor = "0";
      do {
        Reply page;
        try {
          page = check(exchange_on(*node, std::nullopt,
                                   {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}, false));
        } catch (const StoreFailure& f) {
          raise("list", prefix, f);
        }
        if (page->type != REDIS_REPLY_ARRAY || page->elements != 2 ||
            page->element[0]->type != REDIS_REPLY_STRING ||
            page->element[1]->type != REDIS_REPLY_ARRAY) {
          throw BackendError("redis", ErrorKind::kProtocol,
                             context("list", prefix) + "bad SCAN reply");
        }
        cursor.assign(page->element[0]->str, page->element[0]->len);
        const redisReply& keys = *page->element[1];
        for (std::size_t i = 0; i < keys.elements; ++i) {
          std::string_view name(keys.element[i]->str, keys.element[i]->len);
          std::string_view key = layout_.holder_key(name);
          if (key.empty() || key.size() > kMaxKeyBytes || key.substr(0, prefix.size()) != prefix ||
              layout_.reserved(key)) {
            continue;
          }
          // A holder whose lock has gone, or was taken by someone else since, is left out.
          auto info = status_unchecked(key);
          if (info && info->fence != 0) out.push_back(std::move(*info));
        }
      } while (cursor != "0");
    }
    std::sort(out.begin(), out.end(),
              [](const LockInfo& a, const LockInfo& b) { return a.key < b.key; });
    out.erase(std::unique(out.begin(), out.end(),  // SCAN may return a key twice
                          [](const LockInfo& a, const LockInfo& b) { return a.key == b.key; }),
              out.end());
    return out;
  }

 private:
  std::uint16_t slot_of(std::string_view lock_key) const noexcept {
    return router_ ? detail::redis::key_slot(lock_key) : 0;
  }

  // Sends one command about `slot` and returns its reply (never an error reply): on one server,
  // its pool; on a cluster, the slot's master, following MOVED (the map learns the new owner)
  // and ASK (ASKING + the command on the importing node), retrying TRYAGAIN and CLUSTERDOWN
  // briefly, and learning the map again when a node cannot be reached before anything was
  // sent (a failover). All of it within `call_budget_` of the start, plus at most one
  // connect and one command. `used`, if given, receives the connection that answered.
  // Throws `StoreFailure`.
  Reply exchange(std::optional<Script> script, std::uint16_t slot,
                 std::initializer_list<std::string_view> args,
                 std::shared_ptr<detail::redis::Connection>* used = nullptr) {
    if (!router_) return check(exchange_on(*pool_, script, args, false, used));
    using Clock = std::chrono::steady_clock;
    auto& counters = detail::redis::cluster_counters();
    const detail::redis::TimePoint budget = Clock::now() + call_budget_;
    detail::redis::Pool* pool = &router_->route(slot, budget);
    bool asking = false;
    milliseconds pause(1);
    for (int redirects = 0;; ++redirects) {
      const std::uint64_t version = router_->version();
      Reply reply;
      try {
        reply = exchange_on(*pool, script, args, asking, used);
      } catch (const StoreFailure& f) {
        // Sent (or perhaps sent): no retry, the caller decides (in doubt for an acquire). Not
        // sent: the node may have failed over; a refreshed map may name its replacement.
        if (f.maybe_applied() || Clock::now() >= budget) throw;
        try {
          router_->refresh(version, budget);
        } catch (const StoreFailure&) {
          throw f;  // the node's own failure says more than "nobody else answered"
        }
        detail::redis::Pool* next = &router_->route(slot, budget);
        if (next == pool && !asking) throw;
        pool = next;
        asking = false;
        continue;
      }
      asking = false;
      if (reply->type != REDIS_REPLY_ERROR) return reply;
      std::string_view text(reply->str, reply->len);
      if (redirects >= kMaxRedirects || Clock::now() >= budget) {
        if (detail::redis::parse_redirection(text)) {
          // Refused, never run: unavailable (the cluster is moving slots), not in doubt.
          throw StoreFailure(ErrorKind::kUnavailable,
                             "server error: " + std::string(text) + " (still redirected after " +
                                 std::to_string(redirects) + " tries)",
                             false);
        }
        return check(std::move(reply));
      }
      if (auto to = detail::redis::parse_redirection(text)) {
        if (to->ask) {
          counters.ask.fetch_add(1, std::memory_order_relaxed);
          pool = &router_->node(to->to);
          asking = true;
        } else {
          counters.moved.fetch_add(1, std::memory_order_relaxed);
          pool = &router_->moved(to->slot, to->to);
        }
        continue;
      }
      if ((text.substr(0, 8) == "TRYAGAIN" || text.substr(0, 11) == "CLUSTERDOWN") &&
          Clock::now() + pause < budget) {
        // A slot in mid-migration (our keys split between two nodes) or a failover under way:
        // nothing ran. Retry on the slot's current master, after a short, growing pause.
        counters.tryagain.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, milliseconds(50));
        if (text.substr(0, 11) == "CLUSTERDOWN") {
          try {
            router_->refresh(version, budget);
          } catch (const StoreFailure&) {
            return check(std::move(reply));
          }
        }
        pool = &router_->route(slot, budget);
        continue;
      }
      return check(std::move(reply));
    }
  }

  // Runs one command on one pool and returns its reply, which may be an error reply. A script
  // goes by EVALSHA (`args` are numkeys, keys, argv), else `args` are the command; `asking`
  // sends ASKING right before it. Retries once, on a fresh connection, only when the request
  // was certainly not sent. Throws `StoreFailure`.
  Reply exchange_on(detail::redis::Pool& pool, std::optional<Script> script,
                    std::initializer_list<std::string_view> args, bool asking,
                    std::shared_ptr<detail::redis::Connection>* used = nullptr) {
    const std::size_t index = pool.pick();
    // Reused per thread: the request is copied into the connection's buffer, so no
    // allocation per call once warm.
    Scratch scratch;
    std::string& request = scratch.get().request;
    static const std::string kAsking = [] {
      std::string out;
      detail::redis::append_command(out, {"ASKING"});
      return out;
    }();
    Reply reply;
    for (int attempt = 0;; ++attempt) {
      // A failed connect is not retried: that would double the time a call may take.
      auto conn = pool.get(index);
      try {
        auto deadline = std::chrono::steady_clock::now() + command_timeout_;
        auto build = [&](std::string_view verb, std::string_view head) {
          request.clear();
          detail::redis::append_array_header(request, args.size() + (script ? 2 : 0));
          if (script) {
            detail::redis::append_bulk(request, verb);
            detail::redis::append_bulk(request, head);
          }
          for (std::string_view arg : args) detail::redis::append_bulk(request, arg);
        };
        build("EVALSHA", script ? std::string_view(conn->script_sha(*script)) : "");
        reply = conn->call_after(asking ? kAsking : std::string_view(), request, deadline);
        if (script && reply->type == REDIS_REPLY_ERROR &&
            std::string_view(reply->str, reply->len).substr(0, 8) == "NOSCRIPT") {
          // Flushed since we connected (SCRIPT FLUSH): EVAL runs it and caches it again.
          build("EVAL", pool.config().scripts[*script]);
          reply = conn->call_after(asking ? kAsking : std::string_view(), request,
                                   std::chrono::steady_clock::now() + command_timeout_);
        }
        if (used) *used = std::move(conn);
        return reply;
      } catch (const StoreFailure& f) {
        // Not sent: typically an idle connection the server closed (restart). One more try.
        if (!f.maybe_applied() && attempt == 0) continue;
        throw;
      }
    }
  }

  // Renews `requests[indices]` on `pool` in one pipelined round and sets their outcomes.
  // A reply that is an error counts for its own request only; a cluster redirection puts the
  // request in `redirected`. Retries once, on a fresh connection, only when nothing was sent.
  void extend_round(detail::redis::Pool& pool, std::span<const ExtendRequest> requests,
                    const std::vector<std::size_t>& indices, std::span<ExtendOutcome> out,
                    std::optional<StoreFailure>& failure, std::vector<std::size_t>& redirected) {
    const std::size_t index = pool.pick();
    std::string lock_key, fence_key, holder_key;
    std::vector<std::string> wire(indices.size());
    auto build = [&](std::size_t k, std::string_view verb, std::string_view head) {
      const ExtendRequest& r = requests[indices[k]];
      layout_.keys_of(r.key, lock_key, fence_key, holder_key);
      const std::string ttl_ms = std::to_string(r.ttl.count());
      std::string& request = wire[k];
      request.clear();
      detail::redis::append_array_header(request, 7);
      for (std::string_view arg :
           {verb, head, std::string_view("2"), std::string_view(lock_key),
            std::string_view(holder_key), r.token, std::string_view(ttl_ms)}) {
        detail::redis::append_bulk(request, arg);
      }
    };
    for (int attempt = 0;; ++attempt) {
      std::vector<Reply> replies;
      std::optional<StoreFailure> lost;
      try {
        // A failed connect is not retried: that would double the time a round may take.
        auto conn = pool.get(index);
        for (std::size_t k = 0; k < indices.size(); ++k) {
          build(k, "EVALSHA", conn->script_sha(kExtend));
        }
        replies = conn->call_many(wire, std::chrono::steady_clock::now() + command_timeout_, lost);
        // Flushed since we connected (SCRIPT FLUSH): EVAL runs it and caches it again.
        std::vector<std::size_t> again;
        for (std::size_t k = 0; k < replies.size(); ++k) {
          const Reply& r = replies[k];
          if (r && r->type == REDIS_REPLY_ERROR &&
              std::string_view(r->str, r->len).substr(0, 8) == "NOSCRIPT") {
            again.push_back(k);
          }
        }
        if (!again.empty()) {
          std::vector<std::string> retry_wire;
          for (std::size_t k : again) {
            build(k, "EVAL", pool.config().scripts[kExtend]);
            retry_wire.push_back(std::move(wire[k]));
          }
          auto second = conn->call_many(retry_wire,
                                        std::chrono::steady_clock::now() + command_timeout_, lost);
          for (std::size_t j = 0; j < again.size(); ++j) replies[again[j]] = std::move(second[j]);
        }
      } catch (const StoreFailure& f) {
        // Thrown before anything was sent: an idle connection the server closed (restart).
        if (attempt == 0 && !f.maybe_applied() && replies.empty()) continue;
        if (!failure) failure = f;
        return;
      }
      if (lost && !failure) failure = std::move(lost);
      for (std::size_t k = 0; k < replies.size(); ++k) {
        const Reply& r = replies[k];
        const std::size_t i = indices[k];
        if (!r) continue;  // no reply: kFailed
        if (r->type == REDIS_REPLY_INTEGER) {
          out[i] = r->integer == 1 ? ExtendOutcome::kExtended : ExtendOutcome::kNotOurs;
          continue;
        }
        if (r->type != REDIS_REPLY_ERROR) {
          if (!failure) failure.emplace(ErrorKind::kProtocol, "unexpected reply", true);
          continue;
        }
        const std::string_view text(r->str, r->len);
        if (router_ && (detail::redis::parse_redirection(text) || text.substr(0, 8) == "TRYAGAIN" ||
                        text.substr(0, 11) == "CLUSTERDOWN")) {
          redirected.push_back(i);
          continue;
        }
        if (!failure) {
          failure.emplace(detail::redis::error_reply_kind(text),
                          "server error: " + std::string(text), true);
        }
      }
      return;
    }
  }

  // Returns `reply` unless it is an error reply, which becomes a `StoreFailure` with
  // `maybe_applied` unless the server refused before running anything.
  static Reply check(Reply reply) {
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string text(reply->str, reply->len);
      ErrorKind kind = detail::redis::error_reply_kind(text);
      // Refused before running (ACL, loading, busy, read-only replica, a cluster redirection):
      // nothing was applied. Anything else may have failed inside a script, after some of its
      // writes.
      bool maybe_applied = !detail::redis::refused_before_running(text);
      if (text.substr(0, 6) == "MOVED " || text.substr(0, 4) == "ASK ") {
        text += " (a Redis Cluster node: connect with ?cluster=1 to follow redirections)";
      }
      throw StoreFailure(kind, "server error: " + text, maybe_applied);
    }
    return reply;
  }

  // WAIT on the connection that granted the lock (WAIT covers that connection's writes), then
  // release the lock again if fewer than `wait_replicas_` replicas confirmed it.
  void confirm_replicated(detail::redis::Connection& conn, std::string_view key,
                          std::string_view token) {
    std::string request;
    const std::string replicas = std::to_string(wait_replicas_);
    const std::string timeout = std::to_string(wait_timeout_.count());
    detail::redis::append_command(request, {"WAIT", replicas, timeout});
    std::uint64_t confirmed = 0;
    try {
      confirmed = to_uint(*check(conn.call(request, std::chrono::steady_clock::now() +
                                                        command_timeout_ + wait_timeout_)),
                          "try_acquire", key);
    } catch (const StoreFailure& f) {
      throw BackendError("redis", ErrorKind::kInDoubt,
                         context("try_acquire", key) + "granted, then WAIT failed: " + f.what() +
                             "; the lock may be held (in doubt)");
    }
    if (confirmed >= wait_replicas_) return;
    bool released = false;
    try {
      released = release(key, token);
    } catch (const BackendError& e) {
      throw BackendError("redis", ErrorKind::kInDoubt,
                         context("try_acquire", key) + "granted, but only " +
                             std::to_string(confirmed) + " of " + replicas +
                             " replicas confirmed it within " + format_duration(wait_timeout_) +
                             ", and releasing it failed: " + e.what() + " (in doubt)");
    }
    (void)released;  // false: it expired or was never ours after all; either way not held
    throw BackendError("redis", ErrorKind::kUnavailable,
                       context("try_acquire", key) + "granted, but only " +
                           std::to_string(confirmed) + " of " + replicas +
                           " replicas confirmed it within " + format_duration(wait_timeout_) +
                           " (wait_replicas); released it");
  }

  std::optional<LockInfo> status_unchecked(std::string_view key) {
    Scratch scratch;
    auto& [lock_key, fence_key, holder_key] = scratch.get().keys;
    layout_.keys_of(key, lock_key, fence_key, holder_key);
    Reply reply;
    try {
      reply = exchange(kStatus, slot_of(lock_key), {"2", lock_key, holder_key});
    } catch (const StoreFailure& f) {
      raise("status", key, f);
    }
    if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      throw BackendError("redis", ErrorKind::kProtocol,
                         context("status", key) + "unexpected reply");
    }
    return LockInfo{std::string(key), to_uint(*reply->element[0], "status", key),
                    milliseconds(to_uint(*reply->element[1], "status", key))};
  }

  // The one check only this backend has; the core checked everything else. A caller mistake,
  // like the core's own checks.
  void check_key(std::string_view key) const {
    if (layout_.reserved(key)) [[unlikely]] {
      throw std::invalid_argument(
          "key: Redis names (prefix + key) containing \"lockkit:{\" are reserved by redis://");
    }
  }

  // Bounds a redirection loop (a slot bouncing between two nodes); TRYAGAIN pauses keep a
  // migration's ASK/TRYAGAIN cycles far below it within the budget.
  static constexpr int kMaxRedirects = 1000;

  std::optional<detail::redis::NativeTarget> native_;  // plain TCP, one server: the async path
  const detail::redis::KeyLayout layout_;
  const milliseconds command_timeout_;
  const milliseconds call_budget_;  // cluster: redirections and map refreshes of one call
  const unsigned wait_replicas_;
  const milliseconds wait_timeout_;
  std::unique_ptr<detail::redis::Pool> pool_;             // one server, or
  std::unique_ptr<detail::redis::ClusterRouter> router_;  // a cluster
};

std::shared_ptr<LeaseStore> make_redis_store(RedisOptions options) {
  validate(options);
  return std::make_shared<RedisStore>(options);
}

std::shared_ptr<LockApi> make_redis_lock_api(RedisOptions options) {
  return make_lock_api(make_redis_store(std::move(options)));
}

RedisOptions parse_redis_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  if (parsed.scheme != "redis" && parsed.scheme != "rediss") {
    detail::throw_bad_url(url, "scheme must be redis:// or rediss://");
  }
  if (!parsed.has_authority || parsed.hosts.empty() || parsed.hosts.front().host.empty()) {
    detail::throw_bad_url(url, "empty host (use redis://host:port)");
  }
  RedisOptions o;
  o.tls.enabled = parsed.scheme == "rediss";
  o.host = parsed.hosts.front().host;
  if (parsed.hosts.front().port) o.port = *parsed.hosts.front().port;
  o.user = parsed.user;
  if (!parsed.path.empty() && parsed.path != "/") {
    std::string_view db = std::string_view(parsed.path).substr(1);
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), value);
    if (ec != std::errc() || ptr != db.data() + db.size() || value > 65535) {
      detail::throw_bad_url(url, "bad database \"" + std::string(db) + "\" (must be 0..65535)");
    }
    o.db = value;
  }
  detail::QueryOptions options(url, parsed);
  try {
    // From the URL, or kept off it: password_file= or password_env=.
    if (auto password = detail::take_password(options, parsed.password)) o.password = *password;
  } catch (const std::invalid_argument& e) {
    detail::throw_bad_url(url, e.what());
  }
  if (auto v = options.take_duration("connect_timeout")) o.connect_timeout = *v;
  if (auto v = options.take_duration("command_timeout")) o.command_timeout = *v;
  if (auto v = options.take_uint("connections", 1, 256)) o.connections = *v;
  if (auto v = options.take("prefix")) o.prefix = *v;
  if (auto v = options.take_uint("wait_replicas", 0, 16)) o.wait_replicas = *v;
  if (auto v = options.take_duration("wait_timeout")) o.wait_timeout = *v;
  auto take_bool = [&](const char* name, bool& field) {
    if (auto v = options.take(name)) {
      if (*v == "true" || *v == "1") {
        field = true;
      } else if (*v == "false" || *v == "0") {
        field = false;
      } else {
        detail::throw_bad_url(url,
                              std::string(name) + ": must be true or false, got \"" + *v + "\"");
      }
    }
  };
  take_bool("allow_eviction", o.allow_eviction);
  take_bool("cluster", o.cluster);
  if (parsed.hosts.size() > 1) {
    if (!o.cluster) detail::throw_bad_url(url, "several hosts need cluster=1 (seed nodes)");
    for (std::size_t i = 1; i < parsed.hosts.size(); ++i) {
      const auto& h = parsed.hosts[i];
      if (h.host.empty()) detail::throw_bad_url(url, "empty host in the host list");
      o.seeds.push_back(RedisNode{h.host, h.port ? *h.port : std::uint16_t{6379}});
    }
  }
  if (auto v = options.take("tls_ca_file")) o.tls.ca_file = *v;
  if (auto v = options.take("tls_ca_dir")) o.tls.ca_dir = *v;
  if (auto v = options.take("tls_cert")) o.tls.cert_file = *v;
  if (auto v = options.take("tls_key")) o.tls.key_file = *v;
  if (auto v = options.take("tls_server_name")) o.tls.server_name = *v;
  take_bool("tls_insecure_skip_verify", o.tls.insecure_skip_verify);
  options.finish();
  try {
    validate(o);
    detail::redis::KeyLayout check(o.prefix);
  } catch (const std::invalid_argument& e) {
    detail::throw_bad_url(url, e.what());
  }
  return o;
}

namespace {
std::shared_ptr<LeaseStore> open_redis(std::string_view url) {
  return make_redis_store(parse_redis_url(url));
}
// Registers redis:// and rediss:// (TLS) when this object file is linked; the anchor below
// keeps it linked.
using StoreFactory = std::function<std::shared_ptr<LeaseStore>(std::string_view)>;
[[maybe_unused]] const bool g_registered =
    (register_backend("redis", StoreFactory(&open_redis)),
     register_backend("rediss", StoreFactory(&open_redis)), true);
}  // namespace

}  // namespace lockkit

// redlock:// lives in the same library: keeping this object keeps that one.
extern "C" void lockkit_backend_anchor_redlock();
extern "C" void lockkit_backend_anchor_redis() {
  lockkit_backend_anchor_redlock();
}
