// SPDX-License-Identifier: MIT
// Internal: the sqlite:// backend's connections: one SQLite connection, the pool of them, and
// the session a call runs in (fork gate, busy deadline, error translation).
#ifndef LOCKKIT_SRC_SQLITE_SQLITE_CONNECTION_HPP_
#define LOCKKIT_SRC_SQLITE_SQLITE_CONNECTION_HPP_

#include <sqlite3.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/store_failure.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/sqlite.hpp"
#include "sqlite/sqlite_schema.hpp"

namespace lockkit::detail::sqlite {

// The prepared statements of one connection, by index.
enum StmtId : std::size_t {
  kBegin,
  kCommit,
  kRollback,
  kAcquire,
  kSetFence,
  kSweep,
  kRelease,
  kExtend,
  kStatus,
  kList,
  kStmtCount
};

// Returns the SQL of statement `id` (the store's statements live with the store).
const char* statement_sql(StmtId id) noexcept;

struct DbCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Resets a statement when leaving scope, so its next use starts clean (bindings are rebound).
class ResetGuard {
 public:
  explicit ResetGuard(sqlite3_stmt* stmt) noexcept : stmt_(stmt) {}
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;
  ~ResetGuard() { sqlite3_reset(stmt_); }

 private:
  sqlite3_stmt* stmt_;
};

inline void bind_blob(sqlite3_stmt* stmt, int index, std::string_view bytes) {
  // A null pointer would bind NULL, not an empty blob.
  sqlite3_bind_blob(stmt, index, bytes.empty() ? "" : bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_STATIC);
}

inline std::string_view column_blob(sqlite3_stmt* stmt, int index) {
  const void* data = sqlite3_column_blob(stmt, index);
  int size = sqlite3_column_bytes(stmt, index);
  return data ? std::string_view(static_cast<const char*>(data), static_cast<std::size_t>(size))
              : std::string_view();
}

// Returns the number of fork()s in this process's ancestry, so that a child can tell connections
// it inherited (unusable there) without a getpid() system call on every call. The first call
// installs the fork handlers.
unsigned fork_generation() noexcept;

// Marks a thread as inside SQLite for fork(), which waits until no thread is; waits while a
// fork is being prepared. Nested marks count once (an inner one must not wait for a fork the
// outer one holds up).
class InsideSqlite {
 public:
  InsideSqlite() noexcept;
  InsideSqlite(const InsideSqlite&) = delete;
  InsideSqlite& operator=(const InsideSqlite&) = delete;
  ~InsideSqlite();
};

// Which file a path names. The birth time tells a new file from a deleted one whose inode
// number was reused (ext4 reuses them at once).
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  std::int64_t birth_sec = 0;
  std::uint32_t birth_nsec = 0;
  bool operator==(const FileId&) const = default;
};

// Returns the identity of the file at `path`, or empty if there is none (or it cannot be read).
std::optional<FileId> file_id(const std::string& path);

// What a failed SQLite call means, decided in one place: the kind and a cause for the message
// (the caller puts the operation, key and path in front). `maybe_applied`: the call was a
// commit whose write may have reached the file. Contention leaves the connection fine; after
// anything else it is broken: the next call starts afresh.
StoreFailure classify(sqlite3* db, int rc, std::chrono::milliseconds busy_timeout,
                      const std::string& path, bool maybe_applied = false);

// One sqlite3 connection with its prepared statements. Used by one thread at a time.
struct SqliteConnection {
  SqliteConnection() = default;
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;
  // Checkpoints a long WAL, then closes; leaves a connection inherited through fork() alone.
  ~SqliteConnection();

  FileId file;              // the file it opened; a call that finds another at the path drops it
  bool registered = false;  // counted in open_files()
  DbPtr db;
  std::array<StmtPtr, kStmtCount> stmts;
  // When the current call stops waiting for locks: its start + busy_timeout, for all of its
  // statements together (not per statement).
  std::chrono::steady_clock::time_point busy_deadline;
  unsigned fork_generation = 0;  // `fork_generation()` when opened
  int wal_frames = 0;            // frames in the WAL after this connection's last commit
  bool committed = false;        // it has committed a write (the WAL hook ran)
};

// The connections of one store to its file: idle ones kept for reuse, new ones opened (and the
// file set up) outside the mutex. A connection to a file that is no longer at the path is
// dropped, never reused.
// Thread safety: safe to share; calls may run concurrently.
class SqlitePool {
 public:
  // Checks `options` (`std::invalid_argument` naming the field) and the SQLite library, then
  // the file system (`SqliteFile::ensure_file`). Opens no connection: the first call does, so
  // that a store made but not used before fork() works in the child.
  explicit SqlitePool(SqliteOptions options);
  SqlitePool(const SqlitePool&) = delete;
  SqlitePool& operator=(const SqlitePool&) = delete;

  const SqliteOptions& options() const noexcept { return options_; }
  const SqliteFile& file() const noexcept { return file_; }
  // Throws in a fork() child of the process this pool was first used in.
  void claim(std::string_view op, std::string_view key);
  // Returns an idle connection to the file now at the path, or a new one.
  std::unique_ptr<SqliteConnection> checkout(std::string_view op, std::string_view key);
  void checkin(std::unique_ptr<SqliteConnection> conn) noexcept;

 private:
  // Opens, configures and checks a connection to the file now at the path, creating it if it
  // is missing (as a new process would); throws if that is not a usable lockkit database.
  std::unique_ptr<SqliteConnection> open_connection(std::string_view op, std::string_view key);

  const SqliteOptions options_;
  const SqliteFile file_;
  std::mutex mu_;
  std::vector<std::unique_ptr<SqliteConnection>> idle_;  // guarded by mu_
  std::optional<unsigned> home_generation_;  // guarded by mu_; fork generation of first use
};

// One call's use of a connection: checked out of the pool (after the fork gate and claim) and
// back in at the end, unless an error broke it. Its statements share one busy deadline.
class SqliteSession {
 public:
  SqliteSession(SqlitePool& pool, std::string_view op, std::string_view key = {})
      : pool_(pool),
        op_(op),
        key_(key),
        claimed_((pool.claim(op, key), true)),
        conn_(pool.checkout(op, key)) {
    conn_->busy_deadline = std::chrono::steady_clock::now() + pool.options().busy_timeout;
  }
  // Sets up a new connection: it is closed, not pooled, unless `take` hands it back.
  SqliteSession(SqlitePool& pool, std::string_view op, std::string_view key,
                std::unique_ptr<SqliteConnection> fresh)
      : pool_(pool), op_(op), key_(key), conn_(std::move(fresh)), fresh_(true) {}
  SqliteSession(const SqliteSession&) = delete;
  SqliteSession& operator=(const SqliteSession&) = delete;
  ~SqliteSession() {
    if (fresh_ || broken_) return;  // closes conn_, if still here
    if (conn_ && sqlite3_get_autocommit(conn_->db.get()) == 0) {
      // An exception left a transaction open: undo it before anyone reuses the connection.
      if (sqlite3_exec(conn_->db.get(), "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) {
        conn_.reset();
      }
    }
    if (conn_) pool_.checkin(std::move(conn_));
  }

  sqlite3* db() const noexcept { return conn_->db.get(); }
  std::unique_ptr<SqliteConnection> take() noexcept { return std::move(conn_); }
  // Sleeps like the busy handler before retry `attempt`; false once the call's deadline passed.
  bool wait_busy(int attempt) noexcept;

  sqlite3_stmt* stmt(StmtId id) {
    auto& slot = conn_->stmts[id];
    if (!slot) {
      sqlite3_stmt* raw = nullptr;
      int rc =
          sqlite3_prepare_v3(db(), statement_sql(id), -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
      if (rc != SQLITE_OK) fail(rc);
      slot.reset(raw);
    }
    return slot.get();
  }

  // Runs a statement that returns no rows.
  void exec(StmtId id) {
    sqlite3_stmt* s = stmt(id);
    ResetGuard reset(s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) fail(rc);
  }

  // Runs SQL text (schema set-up only).
  void exec_sql(const char* sql) {
    int rc = sqlite3_exec(db(), sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(rc);
  }

  // Steps `s`: true for a row, false when done; throws on errors.
  bool step(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc);
  }

  [[noreturn]] void unexpected_row() { throw_error(ErrorKind::kProtocol, "unexpected result row"); }

  // Throws the `BackendError` for a failed SQLite call; `maybe_applied` for a commit whose
  // write may have reached the file (then kind in-doubt).
  [[noreturn]] void fail(int rc, bool maybe_applied = false) {
    raise(classify(db(), rc, pool_.options().busy_timeout, pool_.file().path(), maybe_applied));
  }

  [[noreturn]] void throw_error(ErrorKind kind, const std::string& cause) {
    raise(StoreFailure(kind, cause, false, kind != ErrorKind::kTimeout));
  }

  // Translates a failure into `BackendError`: the one place that does.
  [[noreturn]] void raise(const StoreFailure& f);

 private:
  std::string context() const { return pool_.file().context(op_, key_); }

  SqlitePool& pool_;
  std::string_view op_;
  std::string_view key_;
  // From before claim() to after checkin, as seen by fork(): a child never inherits one of
  // our mutexes (the pool's, the file registry's) or SQLite's locked.
  InsideSqlite inside_;
  bool claimed_ = false;  // never a SQLite call in a fork() child of the store's process
  std::unique_ptr<SqliteConnection> conn_;
  bool fresh_ = false;
  bool broken_ = false;
};

}  // namespace lockkit::detail::sqlite

#endif  // LOCKKIT_SRC_SQLITE_SQLITE_CONNECTION_HPP_
