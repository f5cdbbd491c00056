// SPDX-License-Identifier: MIT
// The `sqlite://` backend: leased locks shared by the processes of one host through one file.
#ifndef LOCKKIT_SQLITE_HPP_
#define LOCKKIT_SQLITE_HPP_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "lockkit/backend.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

struct SqliteOptions {
  // The database file. Created with mode 0600 (0660 with `share_with_group`) if it does not
  // exist; its directory must exist (only `default_sqlite_path()`'s directories are created,
  // with 0700). A relative path is resolved against the working directory once, at open.
  std::string path;
  // How long a call waits for another connection's write transaction before it throws
  // `BackendError` kind timeout. Must be 1 ms .. 10 min.
  std::chrono::milliseconds busy_timeout{std::chrono::seconds(2)};
  // `synchronous=FULL`: fsync the WAL on every commit. Off (`NORMAL`) by default: a lease never
  // survives a reboot anyway, and fences jump by 2^32 after one (see `make_sqlite_lock_api`), so a
  // power loss cannot make fences go backwards; turn it on to keep the last commits too.
  bool full_sync = false;
  // Idle connections kept for reuse; a call that finds none opens one (outside any lock) and
  // closes it afterwards if this many are already idle. Must be 1 .. 1024.
  std::size_t max_idle_connections = 8;
  // The locks are shared by the users of the file's group (URL `share=group`): a new file is
  // created 0660 and a group-writable file, -wal or -shm is accepted. Without it, any of them
  // being group-writable is refused. World-writable ones are always refused.
  bool share_with_group = false;
};

// Returns the default database path of the `lockkit` tool: `$XDG_STATE_HOME/lockkit/locks.db`
// if XDG_STATE_HOME is absolute, else `$HOME/.local/state/lockkit/locks.db` (HOME, else the
// password database); empty if there is no home directory. The only path whose missing
// directories are created.
LOCKKIT_EXPORT std::string default_sqlite_path();

// Returns the core's `LockApi` (see `make_lock_api`) over locks shared by every process on one
// host through one SQLite file (WAL mode): the embedded default of the `lockkit` tool. URL:
// `sqlite:///abs/path/locks.db[?busy_timeout=2s]`.
//   auto api = lockkit::make_sqlite_lock_api({.path = "/var/lib/app/locks.db"});
//   if (auto lock = api->try_acquire("nightly-report", std::chrono::minutes(5))) { ... }
//
// Contract: each acquire is one `BEGIN IMMEDIATE` transaction; release and extend are single
// token-checked statements. Fences come from one counter in the file, so they increase strictly
// across releases, expiries and restarts of every process. `busy_timeout` bounds each call as a
// whole (every wait for the write lock in it together), not each statement.
//
// Clocks: a lease expires by the host's CLOCK_MONOTONIC (the clock of `valid_until()`), read
// with the process's time namespace offset taken off, so every process on the host compares on
// one clock. Each lease records the writer's boot id and a wall-clock bound (expiry + 2 min);
// a process that reads another boot id (a reboot, or a container with its own view) treats the
// lease as live until that bound has passed, never earlier. A boot id the file has not seen
// advances the fence counter by 2^32 once. An unreadable boot id is an error.
//
// Storage: released leases are deleted at once; dead ones when their key is taken again and by
// a sweep every 64 acquisitions, so the table holds at most the leases live at the last sweep
// plus 64. Only the tables `lockkit_leases` and `lockkit_meta` are ever read or written. Every
// call checks that the path still names the file its connection has open: if the file was
// deleted or replaced, the call moves to the file now there (creating it if missing, as a new
// process would). Refused: a file, -wal or -shm that is world-writable (or group-writable
// without `share_with_group`), and a file with several hard links (each name would get its own
// lock table). The file must be on a local file system of this host; bind mounts of the single
// file are not supported.
//
// When the store is unreachable (directory unwritable, disk full, write lock held by a stuck
// process): calls throw `BackendError` within `busy_timeout`; a holder may still rely on its
// lease until `valid_until()` (nobody can take it without writing to the same file), and on
// nothing after it. A commit that fails after its write may have reached the file throws kind
// `in-doubt`, and the `LockApi` releases the lease with its token. Deleting the file ends every
// lease in it at once: don't.
//
// Opening: checks the options and the file system (creates the file if missing, checks its mode
// and links, reads the boot id). Throws `std::invalid_argument` for bad options, `BackendError`
// naming the path and the cause otherwise. The database itself is opened by the first call,
// which throws `BackendError` if it is not a database or has `lockkit_*` tables of another
// shape.
//
// Thread safety: safe to share; calls may run concurrently. In a fork() child of a process that
// had used the returned object, every call throws `BackendError` kind `unsupported` without
// touching SQLite; an object made but not used before the fork works in the child (unless the
// parent had the same file open through another one).
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_sqlite_lock_api(SqliteOptions options);

// Returns the `sqlite://` lease table as a bare `LeaseStore`, with every guarantee and error of
// `make_sqlite_lock_api` (which is `make_lock_api` over one of these): for composing stores and
// for running the conformance kit's store-level cases. Stores (and `LockApi`s) opened on the same
// path share the file's leases, as separate processes do.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_sqlite_store(SqliteOptions options);

// Parses `sqlite:///abs/path.db`, `sqlite:relative/path.db` or `sqlite:/abs/path.db`, with
// options `busy_timeout` (duration), `sync` (`normal` or `full`), `max_idle` (1..1024) and
// `share` (`user` or `group`).
// Throws `std::invalid_argument` quoting the URL for anything else.
LOCKKIT_EXPORT SqliteOptions parse_sqlite_url(std::string_view url);

}  // namespace lockkit

#endif  // LOCKKIT_SQLITE_HPP_
