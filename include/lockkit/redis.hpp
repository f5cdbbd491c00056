// SPDX-License-Identifier: MIT
// The `redis://` and `rediss://` (TLS) backend: leased locks on one Redis server, wire-compatible
// with npm `redlock` and Go's redsync.
#ifndef LOCKKIT_REDIS_HPP_
#define LOCKKIT_REDIS_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

// TLS for `rediss://`: the server's certificate is verified (against the system CA store unless
// a CA file or directory is given) and so is its name (`server_name`, else the host).
struct RedisTlsOptions {
  bool enabled = false;       // true: speak TLS (what `rediss://` sets)
  std::string ca_file{};      // PEM file of trusted CAs instead of the system store
  std::string ca_dir{};       // OpenSSL hashed directory of trusted CAs instead of the system store
  std::string cert_file{};    // client certificate chain (PEM), for servers that require one
  std::string key_file{};     // the client certificate's private key (PEM); needs `cert_file`
  std::string server_name{};  // name to verify and to send as SNI; empty = the host
  // True: accept any certificate for any name. Encrypts, but anyone on the path can pose as
  // the server: for tests only.
  bool insecure_skip_verify = false;
};

// One Redis node's address (a Redis Cluster seed).
struct RedisNode {
  std::string host;
  std::uint16_t port = 6379;
};

// Where and how to reach the Redis server. Every timeout is finite.
struct RedisOptions {
  std::string host = "127.0.0.1";  // name or address of the server
  std::uint16_t port = 6379;       // TCP port
  std::string user{};              // ACL user for AUTH; empty = the "default" user
  std::string password{};          // empty = no AUTH; never printed
  unsigned db = 0;                 // logical database (SELECT), 0..65535
  // Namespace prepended to every Redis key this backend touches; empty, so the Redis key of a
  // lock is exactly its name, as node-redlock and redsync use it.
  std::string prefix{};
  std::chrono::milliseconds connect_timeout{2000};  // resolution, TCP connect and the handshake
  std::chrono::milliseconds command_timeout{2000};  // from sending a request to its reply
  std::size_t connections = 2;  // pipelined connections shared by all callers, 1..256
  // False: connecting fails (`BackendError`, kind unsupported) when INFO shows a memory limit
  // with a `maxmemory-policy` other than `noeviction`, because eviction can free a live lock.
  // True: accept that risk.
  bool allow_eviction = false;
  RedisTlsOptions tls{};  // off: plain TCP
  // True: `host:port` (and `seeds`) are Redis Cluster nodes: each key goes to its slot's master,
  // learned from the cluster (CLUSTER SLOTS), with `connections` connections per master.
  bool cluster = false;
  std::vector<RedisNode> seeds{};  // more nodes to learn the slot map from (cluster only)
  // After a granted acquire, WAIT until this many replicas have the lock, for at most
  // `wait_timeout`; fewer: the lock is released and acquire throws (kind unavailable). 0: no WAIT.
  unsigned wait_replicas = 0;
  std::chrono::milliseconds wait_timeout{50};  // WAIT's limit, 1ms..command_timeout
};

// Returns the options of a `redis://[user[:password]@]host[:port][/db][?option=value&...]` URL,
// or of a `rediss://` one (TLS, same defaults) with `tls_ca_file`, `tls_ca_dir`, `tls_cert`,
// `tls_key`, `tls_server_name` (paths and a name) and `tls_insecure_skip_verify` (true or false).
// The password comes from at most one place: the URL, `password_file=PATH` (the file's first
// line) or `password_env=NAME` (an environment variable), so a URL need carry no secret.
// Options: `connect_timeout`, `command_timeout` (durations like 500ms or 2s), `connections`
// (1..256), `prefix` (percent-encoded bytes), `allow_eviction` (true or false), `cluster`
// (true or false; then `redis://h1:p1,h2:p2,...` lists seed nodes), `wait_replicas` (0..16) and
// `wait_timeout` (a duration). Throws
// `std::invalid_argument` naming the problem (empty host, bad port or db, unknown option, two
// password sources, an unreadable password file or unset variable); the message never contains
// the password.
LOCKKIT_EXPORT RedisOptions parse_redis_url(std::string_view url);

// Returns a `LeaseStore` on one Redis server; it connects on first use. Compose it (a quorum of
// several) or pass it to `make_lock_api`. Throws `std::invalid_argument` for bad options,
// including TLS files that cannot be loaded.
//   auto store = lockkit::make_redis_store({.host = "10.0.0.5", .prefix = "myapp:"});
//
// Wire contract: the lock is the string key `prefix + key`, its value the owner token (32 hex
// characters), with a millisecond TTL, exactly as `SET key token NX PX ttl` leaves it; release
// deletes it and extend re-arms its TTL only if the value is still our token. So lockkit, npm
// `redlock` and redsync exclude each other on the same resource name. Each operation is one
// round trip: a Lua script sent by EVALSHA (EVAL once after a NOSCRIPT).
//
// Fences come from one counter per Redis Cluster hash slot (at most 16384 counter keys per
// prefix, never expiring), in the lock key's slot. Every fence is max(counter + 1, the server's
// time in microseconds), so fences increase per key across releases, expiries, a restart that
// lost the data, and a restart from an old snapshot (unless the server's clock stepped back by
// more than the snapshot's age). While held, each lock also has a holder record (token and
// fence, same TTL) in the same slot for `status` and `list`. Internal keys are hashes named
// `prefix + "lockkit:{N}..."`; a key whose Redis name would contain `lockkit:{` is rejected
// (`std::invalid_argument`), and no script writes or deletes a key of another type at an
// internal name. `list` shows lockkit's live locks only (keys with a holder record) and scans
// the database (SCAN MATCH, no KEYS): its cost grows with the number of keys in it.
//
// At connect, a server with a memory limit and a `maxmemory-policy` other than `noeviction`
// is refused (`allow_eviction` accepts it): eviction can free a live lock.
// After `fork()`, the child's first call drops the connections it inherited without any I/O
// and opens its own; parent and child both keep working.
//
// Calls from any number of threads share `connections` connections: requests of concurrent
// callers are pipelined on them and sent in batches, so threads are not serialised on one
// connection and need no connection each. Connections are made lazily, outside any pool lock,
// and a broken one is replaced on the next call.
//
// TLS (`tls.enabled`): the handshake is bounded by `connect_timeout` and every read and write by
// `command_timeout`, like plain TCP. A certificate the client refuses (unknown CA, wrong name,
// expired) or the server refuses (missing or untrusted client certificate) is `BackendError`
// kind auth, naming OpenSSL's reason; a server that cannot be reached is kind unavailable or
// timeout; one that does not speak TLS is kind protocol. A forked child drops its parent's TLS
// sessions without a byte of I/O (no close_notify) and opens its own.
//
// Redis Cluster (`cluster`): the slot map comes from CLUSTER SLOTS of any node that answers
// (`host:port`, then `seeds`); each master gets its own `connections`. A lock and its bookkeeping
// share the slot of `prefix + key`, so each call is one script on one master. MOVED updates the
// map and retries there, ASK sends ASKING and the command back to back to the importing node,
// TRYAGAIN and CLUSTERDOWN are retried briefly, and a master that cannot be reached (nothing
// sent) makes the store learn the map again and retry on its replacement; within about twice
// `connect_timeout + command_timeout`, else `BackendError` kind unavailable with the server's
// reply. Such replies mean nothing ran: never kind in-doubt. `list` scans every master.
//
// Failover: replication is asynchronous, so a promoted replica may lack a lock granted just
// before its master died, and another client may take it. `wait_replicas` > 0 sends WAIT after
// each grant; if fewer replicas confirm within `wait_timeout`, the lock is released and
// acquire throws kind unavailable (kind in-doubt if that release fails too).
//
// When the store is unreachable: every call throws `BackendError` (kind unavailable, timeout or
// auth) within `connect_timeout + command_timeout`, name resolution included; nothing is
// retried in the background. `drift(ttl)` is 1% of ttl + 2 ms, so a holder may keep acting
// until its `valid_until()` (request start + ttl - drift), which lies before the server's
// expiry, but may not assume it can release or extend. If an acquire was sent but its reply
// lost, `acquire` throws kind in-doubt (the `LockApi` then releases that token if it can, which
// may take as long again). A server restart without persistence loses held locks.
// Thread safety: safe to share; calls may run concurrently.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_redis_store(RedisOptions options);

// Returns leased locks on one Redis server: `make_lock_api(make_redis_store(options))`, with
// every guarantee of `make_redis_store`. Connects on first use; throws `std::invalid_argument`
// for bad options.
//   auto api = lockkit::make_redis_lock_api({.host = "10.0.0.5", .prefix = "myapp:"});
//   // or: auto api = lockkit::open("redis://10.0.0.5:6379?prefix=myapp:");
//   if (auto lock = api->try_acquire("orders/42", std::chrono::seconds(30))) { ... }
// Thread safety: safe to share; calls may run concurrently.
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_redis_lock_api(RedisOptions options);

// Redlock: one lock over N independent Redis servers (masters, not replicas of each other),
// held while a majority (quorum = N/2 + 1) of them holds it. Every node keeps the `redis://`
// wire format, so npm `redlock` (multi-instance) and redsync contend with it on the same servers.
struct RedlockOptions {
  // One entry per server, each with its own host, port, credentials and timeouts. 1..64 nodes.
  std::vector<RedisOptions> nodes{};
  // Worker threads per node, started on demand. Each sends every request that callers queued
  // for it meanwhile in one pipelined write and reads their replies in order, so a few threads
  // serve any number of callers. A key always uses the same thread, so each node sees one
  // key's requests in order. 1..1024.
  std::size_t threads = 2;
  // A node whose call failed is skipped (a "no" vote without I/O) for this long, doubling on
  // every further failure up to `max_backoff`; then one call probes it again.
  std::chrono::milliseconds backoff{100};
  std::chrono::milliseconds max_backoff{2000};
};

// Returns the options of a `redlock://[user[:password]@]host1[:port1],host2[:port2],...[/db]`
// `[?option=value&...]` URL: the nodes share the credentials, database and every `redis://`
// option. `tls=1` makes every node a `rediss://` node (TLS, verified), with the `tls_*` options
// of `rediss://`. Throws `std::invalid_argument` naming the problem (no host, more than 64, a
// bad port or option); the message never contains the password.
LOCKKIT_EXPORT RedlockOptions parse_redlock_url(std::string_view url);

// Returns a `LeaseStore` over `options.nodes`, one Redis server each (see docs/redlock.md):
// - acquire sends one request to every node at once (the nodes' worker threads) and returns
//   as soon as the outcome is decided: granted by a quorum, or a quorum can no longer be
//   reached. A node that errors, times out or is backing off is a "no"; `BackendError` (kind
//   unavailable, or in-doubt if a request may have been applied) only when fewer than a quorum
//   of nodes answered. Grants of a failed attempt, also those arriving late, are released at
//   once with the token.
// - `drift(ttl)` is 1% of ttl + 2 ms; an acquire whose validity (start + ttl - drift - elapsed)
//   is spent when the quorum is reached is undone and reported busy.
// - Fences increase strictly per key across the quorum: the lock's fence is the maximum of
//   the granting nodes' per-node fences (each max(counter + 1, server time in microseconds)),
//   and it is written back (counters only move up) until a quorum of nodes holds a counter at
//   least that high, before the lock is returned.
// - Lock-delay: a node whose history lockkit has not seen (restarted, empty or from a
//   snapshot) gives no vote until its uptime (INFO) exceeds the longest ttl recorded on the
//   answering nodes whose history it knows.
// - extend needs a quorum and returns false if the validity is spent; release goes to every
//   node and returns true if a quorum still held our token.
// Throws `std::invalid_argument` for bad options. Thread safety: safe to share.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_redlock_store(RedlockOptions options);

// Returns `make_lock_api(make_redlock_store(options))`.
//   auto api = lockkit::open("redlock://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379");
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_redlock_lock_api(RedlockOptions options);

}  // namespace lockkit

#endif  // LOCKKIT_REDIS_HPP_
