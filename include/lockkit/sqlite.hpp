// SPDX-License-Identifier: MIT
// The `sqlite://` backend: leased locks shared by the processes of one host through one file.
#ifndef LOCKKIT_SQLITE_HPP_
#define LOCKKIT_SQLITE_HPP_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

namespace detail {
class SqliteStore;
}  // namespace detail

struct SqliteOptions {
  // The database file. Created with mode 0600 (and missing parent directories with 0700) if it
  // does not exist; a relative path is resolved against the working directory once, at open.
  std::string path;
  // How long a call waits for another connection's write transaction before it throws
  // `BackendError` kind timeout. Must be 1 ms .. 10 min.
  std::chrono::milliseconds busy_timeout{std::chrono::seconds(2)};
  // `synchronous=FULL`: fsync the WAL on every commit. Off (`NORMAL`) by default: a lease never
  // survives a reboot anyway, and fences jump by 2^32 after one (see the class comment), so a
  // power loss cannot make fences go backwards; turn it on to keep the last commits too.
  bool full_sync = false;
  // Idle connections kept for reuse; a call that finds none opens one (outside any lock) and
  // closes it afterwards if this many are already idle. Must be 1 .. 1024.
  std::size_t max_idle_connections = 8;
};

// Locks shared by every process on one host through one SQLite file (WAL mode): the embedded
// default of the `lockkit` tool. URL: `sqlite:///abs/path/locks.db[?busy_timeout=2s]`.
//   auto api = lockkit::make_sqlite_lock_api({.path = "/var/lib/app/locks.db"});
//   if (auto lock = api->try_acquire("nightly-report", std::chrono::minutes(5))) { ... }
// Each acquire is one `BEGIN IMMEDIATE` transaction; release and extend are single statements.
// The store's clock is the host's CLOCK_MONOTONIC (the clock `std::chrono::steady_clock` and
// `valid_until()` use), so wall-clock jumps never expire a lease early. Monotonic time restarts
// at boot: the file records the boot id (`/proc/sys/kernel/random/boot_id`), and the first
// open after a reboot drops every lease (their holders died with the boot) and advances the
// fence counter by 2^32. Fences come from one counter in the file, so they increase strictly
// across releases, expiries and restarts of every process. Released leases are deleted at
// once; expired ones when their key is taken again and by a sweep every 64 acquisitions, so
// the table holds at most the leases live at the last sweep plus 64, whatever the number of
// keys ever used. Keys are stored as BLOBs. Only the tables `lockkit_leases` and `lockkit_meta`
// are ever read or written; anything else in the file is left alone.
// Every call checks that the path still names the file its connection has open: if the file
// was deleted or replaced, the call moves to the file now there (creating it if missing, as a
// new process would), so a holder's next `extend` reports the lease lost instead of renewing it
// in a file nobody else sees. The `-wal` and `-shm` files stay next to the database.
// The file must be on a local file system of this host (WAL needs shared memory): it is not a
// lock service for several machines.
// When the store is unreachable (directory unwritable, disk full, write lock held by a stuck
// process): calls throw `BackendError` within `busy_timeout`; a holder may still rely on its
// lease until `valid_until()` (nobody can take it without writing to the same file), and on
// nothing after it. Deleting the file ends every lease in it at once: don't.
// Thread safety: safe to share; calls may run concurrently. In a child made by fork() it opens
// its own connections and never uses or closes the inherited ones.
class LOCKKIT_EXPORT SqliteLockApi final : public LockApi {
 public:
  // Opens (or creates) the file and checks its schema. Throws `std::invalid_argument` for bad
  // options, `BackendError` naming the path and the cause if the file cannot be created or
  // opened for writing, is not a database, or has tables named `lockkit_*` of another shape.
  explicit SqliteLockApi(SqliteOptions options);
  ~SqliteLockApi() override;

  [[nodiscard]] std::optional<Lock> try_acquire(std::string_view key,
                                                std::chrono::milliseconds ttl) override;
  std::string_view backend() const noexcept override { return "sqlite"; }
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix = {}) override;

  // Returns the absolute path of the database file.
  const std::string& path() const noexcept;

 private:
  std::shared_ptr<detail::SqliteStore> store_;
};

// Returns a new `sqlite://` backend; throws like `SqliteLockApi`'s constructor.
LOCKKIT_EXPORT std::unique_ptr<LockApi> make_sqlite_lock_api(SqliteOptions options);

// Parses `sqlite:///abs/path.db`, `sqlite:relative/path.db` or `sqlite:/abs/path.db`, with
// options `busy_timeout` (duration), `sync` (`normal` or `full`) and `max_idle` (1..1024).
// Throws `std::invalid_argument` quoting the URL for anything else.
LOCKKIT_EXPORT SqliteOptions parse_sqlite_url(std::string_view url);

}  // namespace lockkit

#endif  // LOCKKIT_SQLITE_HPP_
