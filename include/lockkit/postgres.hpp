// SPDX-License-Identifier: MIT
// The `postgres://` backend: leases in a table of a PostgreSQL database the team already runs.
#ifndef LOCKKIT_POSTGRES_HPP_
#define LOCKKIT_POSTGRES_HPP_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "lockkit/backend.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

struct PostgresOptions {
  // Where to connect, in libpq's syntax: "host=127.0.0.1 port=5432 dbname=app user=app" or a
  // "postgresql://" URI. Any libpq keyword works (sslmode, sslrootcert, target_session_attrs...);
  // empty means libpq's defaults and the PG* environment variables. Never printed (passwords).
  std::string conninfo;
  // Schema of the lease table, created on first use: an identifier of 1..63 characters from
  // [A-Za-z0-9_], not starting with a digit (used quoted, so case matters).
  std::string schema = "lockkit";
  // Longest time to open one connection (name resolution, TCP, TLS, authentication).
  // 1 ms .. 1 h.
  std::chrono::milliseconds connect_timeout{2000};
  // Longest time a call waits for a free pooled connection, and, separately, for the answer to
  // its statement once sent (a statement never starts with less); also the statement's
  // `statement_timeout` and `lock_timeout` on the server. 1 ms .. 1 h.
  std::chrono::milliseconds command_timeout{2000};
  // Most connections the pool opens (opened lazily, kept while healthy). 1..1024.
  std::size_t connections = 8;
  // Uses named prepared statements (one parse per connection). Set false behind a pooler in
  // transaction mode that does not track prepared statements (PgBouncer before 1.21): every
  // call then sends its statement unnamed, still in one round trip with bound parameters.
  bool prepare = true;
  // How lockkit's transactions commit: "on" (default) waits for the WAL flush (and for
  // synchronous standbys, if configured) before a grant, extend or release is reported, so it
  // survives a server crash whatever the server's or role's default. "off" trades that for
  // speed: a crash of the server may forget the last ~0.6 s of grants (two holders after a
  // restart). Also "local", "remote_write", "remote_apply" (PostgreSQL's meanings).
  std::string synchronous_commit = "on";
};

// Returns a `postgres://` backend: the core's `LockApi` (see `make_lock_api`) over
// `make_postgres_store(options)`. Leased locks in a table `<schema>.leases` of a PostgreSQL
// database (libpq, so TLS and every libpq connection option work).
//   auto api = lockkit::open(
//       "postgres://app@db.internal:5432/app?sslmode=require&password_file=/run/secrets/pg");
//   if (auto lock = api->try_acquire("reports/daily", std::chrono::minutes(5))) { ... }
// Connects on first use. Throws `std::invalid_argument` naming the field for bad options.
// Contract: each `try_acquire`, `release` and `extend` is one statement in one round trip (an
// implicit transaction, pipelined behind a guard that sets `synchronous_commit`,
// `statement_timeout` and `lock_timeout` for that transaction only): a granted acquire commits
// once and waits for its WAL flush, whatever the server's or role's defaults; a refused acquire
// only reads and writes no WAL. Expiry is decided by the server's `clock_timestamp()`; fences
// come from the sequence `<schema>.fences`, so they grow across releases, expiries and server
// restarts. `Lock::valid_until()` is request start + ttl - (ttl/100 + 2 ms).
// Storage: a released row is deleted; expired rows left behind by crashed holders are deleted by
// later granted acquires (up to 8 each), so the table holds about as many rows as there are live
// leases. No session state carries correctness (settings and advisory locks are
// transaction-scoped), so it works behind PgBouncer in transaction mode (with `prepare = false`
// for PgBouncer before 1.21).
// When the store is unreachable: calls throw `BackendError` (kind unavailable or timeout) after
// at most `command_timeout` (pool wait) + `connect_timeout` (name resolution included) +
// `command_timeout` (statement) + min(`command_timeout`, 1 s) (confirming a cancel), an in-doubt
// acquire after one token release more (made by the core); a holder may keep acting until
// `valid_until()` (the server cannot have given the key away earlier), not later. A statement
// whose deadline passed is cancelled on the server (and ends there by its `statement_timeout`
// anyway); if the server confirms, nothing was applied (kind timeout); if it cannot confirm, an
// acquire throws kind in-doubt and the core releases its token. Broken connections are dropped,
// so the first call after the server comes back succeeds.
// After fork(): each process opens its own connections on first use and never reads, writes or
// closes-with-a-word a connection it inherited, so parent and child both keep working.
// Thread safety: safe to share; calls may run concurrently (a bounded connection pool).
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_postgres_lock_api(PostgresOptions options);

// Returns the `postgres://` lease table as a bare `LeaseStore` (everything said of
// `make_postgres_lock_api` holds for it; the core adds tokens, `Lock`s and the release after an
// in-doubt acquire): for composing stores and for running the conformance kit's store-level
// cases. Connects on first use. Throws `std::invalid_argument` naming the field for bad options.
// Thread safety: safe to share; calls may run concurrently.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_postgres_store(PostgresOptions options);

// Returns the options a `postgres://` or `postgresql://` URL stands for:
// `postgres://[user[:password]@][host[:port][,host[:port]...]][/dbname][?options]`. Our options
// are `schema`, `connect_timeout` (a duration like 2s; a bare number means seconds, as in libpq),
// `command_timeout`, `connections`, `prepare` (true/false), `synchronous_commit`, and
// `password_file` (a file whose first line is the password) or `password_env` (an environment
// variable holding it), so that the URL itself carries no secret; every other option is passed to
// libpq as a keyword (sslmode=require, application_name=...). The password comes from one place
// only (user info or `password=`, `password_file`, `password_env`); with none, libpq's own
// PGPASSWORD, `passfile=` and ~/.pgpass apply. Throws `std::invalid_argument` quoting the URL
// with its password redacted, e.g. for an option libpq does not know, a password given in two
// places, an unreadable file or an unset variable (never quoting the password).
LOCKKIT_EXPORT PostgresOptions parse_postgres_url(std::string_view url);

}  // namespace lockkit

#endif  // LOCKKIT_POSTGRES_HPP_
