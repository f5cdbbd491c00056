// SPDX-License-Identifier: MIT
// Internal: the sqlite:// file as this process sees it: its path and the file-system checks on
// it, the boot id and clocks that decide expiry, and lockkit's schema in it.
#ifndef LOCKKIT_SRC_SQLITE_SQLITE_SCHEMA_HPP_
#define LOCKKIT_SRC_SQLITE_SQLITE_SCHEMA_HPP_

#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "lockkit/errors.hpp"
#include "lockkit/sqlite.hpp"

namespace lockkit::detail::sqlite {

class SqliteSession;

// Added to a lease's wall-clock bound: how far the wall clock may step forward (or the host stay
// suspended) during a lease before a process with another boot id view could take it early.
inline constexpr std::chrono::nanoseconds kWallMargin = std::chrono::minutes(2);
// No lease lasts longer (the core refuses longer TTLs); a monotonic expiry further ahead than
// this comes from a clock that restarted, i.e. from another boot that reused the boot id.
inline constexpr std::chrono::nanoseconds kMaxLease =
    std::chrono::hours(24 * 7) + std::chrono::minutes(1);

inline std::int64_t to_ns(std::chrono::nanoseconds d) {
  return d.count();
}

// The offsets of this process's time namespace (`/proc/self/timens_offsets`, Linux 5.6+): what
// its CLOCK_MONOTONIC and CLOCK_BOOTTIME read above the host's. No file: no time namespaces.
struct TimeOffsets {
  std::int64_t monotonic = 0;
  std::int64_t boottime = 0;
};

// One reading of the clocks that decide expiry, taken inside the call's transaction.
struct Now {
  std::int64_t mono;  // the host's CLOCK_MONOTONIC (our namespace's offset taken off), ns
  std::int64_t wall;  // CLOCK_REALTIME, ns since the epoch
};

// The database file of one store as this process sees it: its absolute path (resolved once),
// the boot id and time namespace offsets that leases are judged by, and lockkit's tables in it.
// Thread safety: immutable after construction; safe to share.
class SqliteFile {
 public:
  // Resolves `options.path` against the working directory; reads the boot id and the time
  // namespace offsets. Throws `BackendError` naming the path if it names a directory or the boot
  // id cannot be read. No file system change, no SQLite call; `options` are already checked.
  explicit SqliteFile(const SqliteOptions& options);

  // Returns the absolute path of the database file.
  const std::string& path() const noexcept { return path_; }
  // Returns the start of an error message: `op "key": "/path": `, or `op "/path": `.
  std::string context(std::string_view op, std::string_view key) const;
  [[noreturn]] void fail(std::string_view op, std::string_view key, ErrorKind kind,
                         const std::string& cause) const;
  // Makes sure the path names a regular file lockkit may use, creating it (0600, or 0660 when
  // shared with the group) if missing; creates missing directories only for the default
  // location. Checks modes and links of the file, its -wal and -shm. No SQLite call.
  void ensure_file(std::string_view op, std::string_view key) const;
  // Returns the clocks that decide expiry, read now.
  Now clocks() const noexcept;
  // Binds what the expiry conditions of the statements read: ?10 our boot id, ?11 the host's
  // CLOCK_MONOTONIC, ?12 the furthest monotonic expiry a live lease can have, ?13 CLOCK_REALTIME.
  void bind_clocks(sqlite3_stmt* stmt, const Now& now) const;
  // Makes the file `s` has open ready for use: refuses a foreign schema before anything in it
  // changes, switches to WAL, creates or migrates lockkit's tables, and records this boot id
  // (advancing the fences once for a boot id the file has not seen).
  void set_up(SqliteSession& s) const;

 private:
  void check_file(std::string_view op, std::string_view key, const std::string& name,
                  const struct stat& st) const;
  void migrate_from_1(SqliteSession& s) const;
  // Returns true if nothing wrote the file since this boot began (by the wall clock).
  bool untouched_this_boot() const;

  std::string path_;
  bool share_with_group_ = false;
  bool default_location_ = false;  // the only path whose missing directories are created
  std::string boot_;               // this process's boot id
  TimeOffsets offsets_;            // of this process's time namespace
};

}  // namespace lockkit::detail::sqlite

#endif  // LOCKKIT_SRC_SQLITE_SQLITE_SCHEMA_HPP_
