// SPDX-License-Identifier: MIT
// The sqlite:// backend: a lease table in a WAL-mode SQLite file, a connection pool, schema checks.
#include "lockkit/sqlite.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/url.hpp"
#include "lockkit/errors.hpp"

namespace lockkit {
namespace detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

constexpr std::int64_t kSchemaVersion = 1;
// Every this many acquisitions (by fence), the acquiring transaction deletes all expired rows.
constexpr std::int64_t kSweepEvery = 64;
// After a reboot the fence counter jumps by this much: far more than the commits a power loss
// can take back with synchronous=NORMAL (those since the last checkpoint).
constexpr std::int64_t kRebootFenceJump = std::int64_t{1} << 32;
constexpr milliseconds kMaxBusyTimeout = std::chrono::minutes(10);

// The store's clock: CLOCK_MONOTONIC, shared by every process of the host and identical to the
// steady clock that `valid_until()` is measured on, so no drift margin is needed.
std::int64_t store_now() {
  return std::chrono::duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
}

std::int64_t to_ns(milliseconds d) {
  return std::chrono::duration_cast<nanoseconds>(d).count();
}

std::string read_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id.empty() ? std::string("unknown") : id;
}

const char* kCreateSchema = R"sql(
CREATE TABLE lockkit_meta (
  name TEXT PRIMARY KEY NOT NULL,
  value NOT NULL
) WITHOUT ROWID;
CREATE TABLE lockkit_leases (
  key BLOB PRIMARY KEY NOT NULL,
  token BLOB NOT NULL,
  fence INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO lockkit_meta (name, value) VALUES ('schema_version', 1), ('fence', 0);
)sql";

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

const std::array<const char*, kStmtCount> kSql = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    // Takes a free or expired key; returns no row if it is held. The new fence is the
    // counter + 1; the caller stores it back in the same transaction.
    "INSERT INTO lockkit_leases (key, token, fence, expires_at) "
    "VALUES (?1, ?2, (SELECT value + 1 FROM lockkit_meta WHERE name = 'fence'), ?3) "
    "ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, "
    "expires_at = excluded.expires_at WHERE lockkit_leases.expires_at <= ?4 "
    "RETURNING fence",
    "UPDATE lockkit_meta SET value = ?1 WHERE name = 'fence'",
    "DELETE FROM lockkit_leases WHERE expires_at <= ?1",
    // Deletes our lease, or an expired one (reclaimed either way); says whether it was ours.
    "DELETE FROM lockkit_leases WHERE key = ?1 AND (token = ?2 OR expires_at <= ?3) "
    "RETURNING token = ?2 AND expires_at > ?3",
    "UPDATE lockkit_leases SET expires_at = ?4 WHERE key = ?1 AND token = ?2 AND expires_at > ?3",
    "SELECT fence, expires_at FROM lockkit_leases WHERE key = ?1 AND expires_at > ?2",
    // Keys sort as memcmp, like std::string: the caller stops at the first key past the prefix.
    "SELECT key, fence, expires_at FROM lockkit_leases WHERE key >= ?1 AND expires_at > ?2 "
    "ORDER BY key",
};

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

void bind_blob(sqlite3_stmt* stmt, int index, std::string_view bytes) {
  // A null pointer would bind NULL, not an empty blob.
  sqlite3_bind_blob(stmt, index, bytes.empty() ? "" : bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_STATIC);
}

std::string_view column_blob(sqlite3_stmt* stmt, int index) {
  const void* data = sqlite3_column_blob(stmt, index);
  int size = sqlite3_column_bytes(stmt, index);
  return data ? std::string_view(static_cast<const char*>(data), static_cast<std::size_t>(size))
              : std::string_view();
}

milliseconds remaining(std::int64_t expires_at, std::int64_t now) {
  return std::chrono::ceil<milliseconds>(nanoseconds(expires_at - now));
}

std::string quoted(std::string_view key) {
  return "\"" + escape_key(key) + "\"";
}

}  // namespace

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
std::optional<FileId> file_id(const std::string& path) {
  struct statx st {};
  if (::statx(AT_FDCWD, path.c_str(), 0, STATX_INO | STATX_BTIME, &st) != 0) return std::nullopt;
  FileId id;
  id.dev = makedev(st.stx_dev_major, st.stx_dev_minor);
  id.ino = st.stx_ino;
  if (st.stx_mask & STATX_BTIME) {
    id.birth_sec = st.stx_btime.tv_sec;
    id.birth_nsec = st.stx_btime.tv_nsec;
  }
  return id;
}

// One sqlite3 connection with its prepared statements. Used by one thread at a time.
struct SqliteConn {
  FileId file;  // the file it opened; a call that finds another at the path drops it
  DbPtr db;
  std::array<StmtPtr, kStmtCount> stmts;
  // When the current call stops waiting for locks: its start + busy_timeout, for all of its
  // statements together (not per statement).
  steady_clock::time_point busy_deadline;
  unsigned fork_generation = 0;  // `fork_generation()` when opened
};

// What a failed SQLite call means, decided in one place: the kind, and a cause for the message.
struct Failure {
  ErrorKind kind;
  std::string cause;
};

namespace {

Failure classify(sqlite3* db, int rc, milliseconds busy_timeout, const std::string& path) {
  std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return {ErrorKind::kTimeout, msg +
                                       " (another connection held the write lock for over "
                                       "busy_timeout " +
                                       format_duration(busy_timeout) + ")"};
    case SQLITE_NOTADB:
      return {ErrorKind::kIo, "file is not a database"};
    case SQLITE_CORRUPT:
      return {ErrorKind::kIo, "database disk image is malformed"};
    case SQLITE_READONLY:
      return {ErrorKind::kIo, "file is read-only (" + msg + ")"};
    case SQLITE_CANTOPEN: {
      std::string dir = std::filesystem::path(path).parent_path().string();
      if (::access(dir.c_str(), W_OK) != 0) {
        return {ErrorKind::kIo, "cannot open (" + msg + "): directory \"" + dir +
                                    "\" is not writable (" + std::strerror(errno) + ")"};
      }
      return {ErrorKind::kIo, "cannot open (" + msg + ")"};
    }
    case SQLITE_FULL:
      return {ErrorKind::kIo, "disk full (" + msg + ")"};
    case SQLITE_IOERR:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_NOMEM:
      return {ErrorKind::kIo, msg};
    default:
      return {ErrorKind::kProtocol, msg};
  }
}

// Counts fork()s in this process's ancestry, so that a child can tell connections it inherited
// (unusable there) without a getpid() system call on every checkout.
std::atomic<unsigned> g_fork_generation{0};

unsigned fork_generation() noexcept {
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr,
                            [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }) == 0;
  }();
  (void)registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

// Waits for another connection's write lock: short sleeps first (transactions here last tens
// of microseconds), never more than 2 ms at a time, and never past the call's deadline.
int busy_handler(void* arg, int count) noexcept {
  auto* conn = static_cast<SqliteConn*>(arg);
  auto now = steady_clock::now();
  auto deadline = conn->busy_deadline;
  if (now >= deadline) return 0;
  steady_clock::duration delay = std::chrono::microseconds(20) * (1 << std::min(count, 7));
  delay = std::min<steady_clock::duration>({delay, std::chrono::milliseconds(2), deadline - now});
  std::this_thread::sleep_for(delay);
  return 1;
}

}  // namespace

// The shared state behind every `SqliteLockApi` and `Lock` of one opened file.
// Thread safety: safe to share; calls may run concurrently.
class SqliteStore final : public LeaseOps, public std::enable_shared_from_this<SqliteStore> {
 public:
  explicit SqliteStore(SqliteOptions options);
  ~SqliteStore() override;

  std::string_view backend() const noexcept override { return "sqlite"; }
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, milliseconds ttl) override;

  std::optional<Lock> try_acquire(std::string_view key, milliseconds ttl);
  std::optional<LockInfo> status(std::string_view key);
  std::vector<LockInfo> list(std::string_view prefix);
  const std::string& path() const noexcept { return path_; }

 private:
  class Session;

  // Creates missing parent directories (0700) and the file (0600).
  void ensure_file(std::string_view op, std::string_view key);
  // Opens, configures and checks a connection to the file now at the path, creating it if it
  // is missing (as a new process would); throws if that is not a usable lockkit database.
  std::unique_ptr<SqliteConn> open_connection(std::string_view op, std::string_view key);
  std::unique_ptr<SqliteConn> checkout(std::string_view op, std::string_view key);
  // Returns the start of an error message: `op "key": "/path": `, or `op "/path": `.
  std::string context(std::string_view op, std::string_view key) const;
  void checkin(std::unique_ptr<SqliteConn> conn) noexcept;
  void set_up(Session& s);
  // Returns the number of our tables present (0 or 2); throws for a foreign schema.
  int check_schema(Session& s);
  // Returns the boot id recorded in the file, if any.
  std::optional<std::string> stored_boot(Session& s);
  [[noreturn]] void fail(std::string_view op, std::string_view key, ErrorKind kind,
                         const std::string& cause) const;

  const SqliteOptions options_;
  std::string path_;
  std::mutex mu_;
  std::vector<std::unique_ptr<SqliteConn>> idle_;  // guarded by mu_
};

// A checked-out connection for one call; returns it to the pool unless the call broke it.
class SqliteStore::Session {
 public:
  Session(SqliteStore& store, std::string_view op, std::string_view key = {})
      : store_(store), op_(op), key_(key), conn_(store.checkout(op, key)) {
    conn_->busy_deadline = steady_clock::now() + store.options_.busy_timeout;
  }
  // Sets up a new connection: it is closed, not pooled, unless `take` hands it back.
  Session(SqliteStore& store, std::string_view op, std::string_view key,
          std::unique_ptr<SqliteConn> fresh)
      : store_(store), op_(op), key_(key), conn_(std::move(fresh)), fresh_(true) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    if (fresh_ || broken_) return;  // closes conn_, if still here
    if (conn_ && sqlite3_get_autocommit(conn_->db.get()) == 0) {
      // An exception left a transaction open: undo it before anyone reuses the connection.
      if (sqlite3_exec(conn_->db.get(), "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) {
        conn_.reset();
      }
    }
    if (conn_) store_.checkin(std::move(conn_));
  }

  sqlite3* db() const noexcept { return conn_->db.get(); }
  std::unique_ptr<SqliteConn> take() noexcept { return std::move(conn_); }
  // Closes the connection when the call ends instead of pooling it.
  void discard() noexcept { broken_ = true; }
  // Sleeps like the busy handler before retry `attempt`; false once the call's deadline passed.
  bool wait_busy(int attempt) noexcept { return busy_handler(conn_.get(), attempt) != 0; }

  sqlite3_stmt* stmt(StmtId id) {
    auto& slot = conn_->stmts[id];
    if (!slot) {
      sqlite3_stmt* raw = nullptr;
      int rc = sqlite3_prepare_v3(db(), kSql[id], -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
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

  // Translates a failed SQLite call into `BackendError`: the one place that does.
  [[noreturn]] void fail(int rc) {
    Failure f = classify(db(), rc, store_.options_.busy_timeout, store_.path_);
    throw_error(f.kind, f.cause);
  }

  // Returns the message `fail(rc)` would throw, without the backend prefix.
  std::string describe(int rc) const {
    return context() + classify(db(), rc, store_.options_.busy_timeout, store_.path_).cause;
  }

  [[noreturn]] void throw_error(ErrorKind kind, const std::string& cause) {
    // Contention leaves the connection fine; after anything else, start afresh next time.
    if (kind != ErrorKind::kTimeout) broken_ = true;
    throw BackendError("sqlite", kind, context() + cause);
  }

 private:
  std::string context() const { return store_.context(op_, key_); }

  SqliteStore& store_;
  std::string_view op_;
  std::string_view key_;
  std::unique_ptr<SqliteConn> conn_;
  bool fresh_ = false;
  bool broken_ = false;
};

SqliteStore::SqliteStore(SqliteOptions options) : options_(std::move(options)) {
  if (options_.path.empty()) throw std::invalid_argument("path: must not be empty");
  if (options_.path == ":memory:") {
    throw std::invalid_argument("path: \"" + options_.path +
                                "\" is not a file; in-memory databases cannot share locks");
  }
  if (options_.busy_timeout < milliseconds(1) || options_.busy_timeout > kMaxBusyTimeout) {
    throw std::invalid_argument("busy_timeout: must be 1ms..10m, got " +
                                format_duration(options_.busy_timeout));
  }
  if (options_.max_idle_connections < 1 || options_.max_idle_connections > 1024) {
    throw std::invalid_argument("max_idle_connections: must be 1..1024, got " +
                                std::to_string(options_.max_idle_connections));
  }
  if (sqlite3_threadsafe() == 0) {
    // Connections of one store run on many threads at once; that needs SQLite's locking.
    throw BackendError(
        "sqlite", ErrorKind::kUnsupported,
        "this SQLite library was built without thread support (SQLITE_THREADSAFE=0)");
  }
  std::filesystem::path file = std::filesystem::absolute(options_.path).lexically_normal();
  path_ = file.string();
  if (!file.has_filename()) fail("open", {}, ErrorKind::kIo, "names a directory, not a file");
  checkin(open_connection("open", {}));
}

SqliteStore::~SqliteStore() {
  for (auto& conn : idle_) {
    // A forked child must not close its parent's connections: closing may run the last-
    // connection clean-up (checkpoint, WAL removal) on a file the parent still uses.
    if (conn->fork_generation != fork_generation()) (void)conn.release();
  }
}

std::string SqliteStore::context(std::string_view op, std::string_view key) const {
  std::string what(op);
  if (!key.empty()) what += " " + quoted(key) + ":";
  return what + " \"" + path_ + "\": ";
}

void SqliteStore::fail(std::string_view op, std::string_view key, ErrorKind kind,
                       const std::string& cause) const {
  throw BackendError("sqlite", kind, context(op, key) + cause);
}

void SqliteStore::ensure_file(std::string_view op, std::string_view key) {
  // Our own create gives mode 0600 (SQLite would use 0644). Never open an existing file here:
  // closing our descriptor would drop the POSIX locks SQLite holds on it in this process, and
  // the mutex keeps another thread's connection from taking locks between create and close.
  static std::mutex create_mu;
  std::lock_guard<std::mutex> guard(create_mu);
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail(op, key, ErrorKind::kIo, "is a directory, not a database file");
    // A FIFO would block the first read forever; devices are not databases either.
    if (!S_ISREG(st.st_mode)) fail(op, key, ErrorKind::kIo, "is not a regular file");
    return;
  }
  if (errno != ENOENT && errno != ENOTDIR) {
    fail(op, key, ErrorKind::kIo, std::string("cannot stat: ") + std::strerror(errno));
  }
  // Parents with 0700, one level at a time, so that each failure names its directory.
  std::filesystem::path dir;
  for (const auto& part : std::filesystem::path(path_).parent_path()) {
    dir /= part;
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      fail(op, key, ErrorKind::kIo,
           "cannot create directory \"" + dir.string() + "\": " + std::strerror(errno));
    }
  }
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno != EEXIST) {
    fail(op, key, ErrorKind::kIo, std::string("cannot create file: ") + std::strerror(errno));
  }
  if (fd >= 0) ::close(fd);
}

std::unique_ptr<SqliteConn> SqliteStore::open_connection(std::string_view op,
                                                         std::string_view key) {
  for (int attempt = 0;; ++attempt) {
    ensure_file(op, key);
    auto conn = std::make_unique<SqliteConn>();
    conn->busy_deadline = steady_clock::now() + options_.busy_timeout;
    conn->fork_generation = fork_generation();
    // The same file before and after the open: then the connection has that file open.
    std::optional<FileId> before = file_id(path_);
    sqlite3* raw = nullptr;
    // No SQLITE_OPEN_CREATE: ensure_file made it with our mode; vanished since is retried.
    int rc =
        sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    conn->db.reset(raw);
    std::optional<FileId> after = file_id(path_);
    if (!before || before != after) {
      if (attempt < 3) continue;  // replaced while we opened it
      fail(op, key, ErrorKind::kUnavailable, "the file is being replaced repeatedly");
    }
    conn->file = *before;
    if (rc != SQLITE_OK) {
      Failure f = classify(raw, rc, options_.busy_timeout, path_);
      fail(op, key, f.kind, f.cause);
    }
    sqlite3_extended_result_codes(raw, 1);
    if (sqlite3_db_readonly(raw, "main") == 1) {
      fail(op, key, ErrorKind::kIo,
           std::string("file is read-only (") + std::strerror(EACCES) + ")");
    }
    sqlite3_busy_handler(raw, &busy_handler, conn.get());
    // Closing never deletes -wal and -shm by name: after the file was deleted and made anew,
    // those names belong to the new file, which a late close must not touch.
    int persist = 1;
    sqlite3_file_control(raw, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    Session s(*this, op, key, std::move(conn));
    s.exec_sql(options_.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // With a size limit set, the last close cuts the persistent WAL to nothing (otherwise every
    // first open would re-read all of it to rebuild its index). The limit itself stays above
    // what the 1000-page auto-checkpoint lets it reach: regrowing the file from zero after each
    // checkpoint would cost a quarter more per acquisition.
    s.exec_sql("PRAGMA journal_size_limit=16777216");
    set_up(s);
    return s.take();
  }
}

std::unique_ptr<SqliteConn> SqliteStore::checkout(std::string_view op, std::string_view key) {
  // One statx per call: a connection to a file that was deleted or replaced would keep
  // holding leases nobody else can see.
  std::optional<FileId> current = file_id(path_);
  std::vector<std::unique_ptr<SqliteConn>> stale;
  std::unique_ptr<SqliteConn> found;
  {
    std::lock_guard<std::mutex> guard(mu_);
    while (!idle_.empty() && !found) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->fork_generation != fork_generation()) {
        (void)conn.release();  // inherited through fork(): see ~SqliteStore
      } else if (current && conn->file == *current) {
        found = std::move(conn);
      } else {
        stale.push_back(std::move(conn));
      }
    }
  }
  stale.clear();  // closed outside the mutex; PERSIST_WAL keeps the new file's -wal safe
  if (found) return found;
  return open_connection(op, key);  // outside the mutex: opening touches the file system
}

void SqliteStore::checkin(std::unique_ptr<SqliteConn> conn) noexcept {
  if (conn->fork_generation != fork_generation()) {
    (void)conn.release();  // checked out before a fork(): see ~SqliteStore
    return;
  }
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (idle_.size() < options_.max_idle_connections) {
      idle_.push_back(std::move(conn));
      return;
    }
  }
  conn.reset();  // closed outside the mutex
}

int SqliteStore::check_schema(Session& s) {
  struct Column {
    const char* name;
    const char* type;
    int pk;
  };
  static const std::array<Column, 2> kMeta = {{{"name", "TEXT", 1}, {"value", "", 0}}};
  static const std::array<Column, 4> kLeases = {{{"key", "BLOB", 1},
                                                 {"token", "BLOB", 0},
                                                 {"fence", "INTEGER", 0},
                                                 {"expires_at", "INTEGER", 0}}};

  auto foreign = [&](const std::string& why) {
    s.throw_error(ErrorKind::kProtocol,
                  "foreign schema: " + why +
                      " (lockkit uses the tables lockkit_meta and lockkit_leases; "
                      "use another file)");
  };
  int found = 0;
  auto check_table = [&](const char* table, const auto& expected) {
    sqlite3_stmt* raw = nullptr;
    std::string sql = std::string("SELECT type FROM sqlite_schema WHERE name = '") + table + "'";
    int rc = sqlite3_prepare_v2(s.db(), sql.c_str(), -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    StmtPtr stmt(raw);
    if (!s.step(raw)) return;
    std::string type(column_blob(raw, 0));
    if (type != "table") foreign(std::string(table) + " is a " + type + ", not a table");
    ++found;
    sql = std::string("SELECT name, type, pk FROM pragma_table_info('") + table + "')";
    rc = sqlite3_prepare_v2(s.db(), sql.c_str(), -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    stmt.reset(raw);
    std::size_t i = 0;
    bool match = true;
    while (s.step(raw)) {
      if (i >= expected.size() || column_blob(raw, 0) != expected[i].name ||
          column_blob(raw, 1) != expected[i].type || sqlite3_column_int(raw, 2) != expected[i].pk) {
        match = false;
      }
      ++i;
    }
    if (!match || i != expected.size()) {
      foreign(std::string("table ") + table + " has other columns than lockkit's");
    }
  };
  check_table("lockkit_meta", kMeta);
  check_table("lockkit_leases", kLeases);
  if (found == 1) foreign("only one of lockkit_meta and lockkit_leases exists");
  if (found == 2) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(s.db(),
                                "SELECT (SELECT value FROM lockkit_meta WHERE name = "
                                "'schema_version'), (SELECT typeof(value) FROM lockkit_meta "
                                "WHERE name = 'fence')",
                                -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    StmtPtr stmt(raw);
    if (!s.step(raw) || sqlite3_column_type(raw, 0) != SQLITE_INTEGER) {
      foreign("lockkit_meta has no schema_version");
    }
    std::int64_t version = sqlite3_column_int64(raw, 0);
    if (version != kSchemaVersion) {
      s.throw_error(ErrorKind::kProtocol,
                    "schema version " + std::to_string(version) + ", this lockkit knows only " +
                        std::to_string(kSchemaVersion) +
                        (version > kSchemaVersion ? " (written by a newer lockkit)" : ""));
    }
    if (column_blob(raw, 1) != "integer") foreign("lockkit_meta has no fence counter");
  }
  return found;
}

void SqliteStore::set_up(Session& s) {
  // Read-only checks first: a foreign file is rejected before anything in it changes. One read
  // transaction, so that a schema another process is creating is seen whole or not at all.
  s.exec_sql("BEGIN");
  int found = check_schema(s);
  s.exec_sql("COMMIT");
  // Persistent, and a no-op when already set. Needs the directory writable (for -wal, -shm).
  // SQLite answers BUSY at once, without its busy handler, while another connection reads the
  // file in rollback mode (as processes racing to create it do): wait here instead.
  for (int attempt = 0;; ++attempt) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(s.db(), "PRAGMA journal_mode=WAL", -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    StmtPtr stmt(raw);
    rc = sqlite3_step(raw);
    if (rc == SQLITE_ROW) {
      std::string mode(column_blob(raw, 0));
      if (mode != "wal") {
        s.throw_error(ErrorKind::kIo, "cannot switch to WAL mode (journal mode is " + mode + ")");
      }
      break;
    }
    if ((rc & 0xff) != SQLITE_BUSY || !s.wait_busy(attempt)) s.fail(rc);
  }
  const std::string boot = read_boot_id();
  if (found == 2 && stored_boot(s) == boot) return;  // the common case: nothing to write
  s.exec(kBegin);
  if (check_schema(s) == 0) s.exec_sql(kCreateSchema);  // re-checked under the write lock
  // Leases from an earlier boot hold CLOCK_MONOTONIC values of a clock that restarted, and their
  // holders died with that boot: drop them, and move fences past any a power loss took back.
  std::optional<std::string> stored = stored_boot(s);
  if (stored != boot) {
    if (stored) {
      s.exec_sql("DELETE FROM lockkit_leases");
      s.exec_sql(("UPDATE lockkit_meta SET value = value + " + std::to_string(kRebootFenceJump) +
                  " WHERE name = 'fence'")
                     .c_str());
    }
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(s.db(),
                                "INSERT INTO lockkit_meta (name, value) VALUES ('boot_id', ?1) "
                                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    StmtPtr stmt(raw);
    sqlite3_bind_text(raw, 1, boot.data(), static_cast<int>(boot.size()), SQLITE_STATIC);
    if (s.step(raw)) s.unexpected_row();
  }
  s.exec(kCommit);
}

std::optional<std::string> SqliteStore::stored_boot(Session& s) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(s.db(), "SELECT value FROM lockkit_meta WHERE name = 'boot_id'", -1,
                              &raw, nullptr);
  if (rc != SQLITE_OK) s.fail(rc);
  StmtPtr stmt(raw);
  if (!s.step(raw)) return std::nullopt;
  return std::string(column_blob(raw, 0));
}

std::optional<Lock> SqliteStore::try_acquire(std::string_view key, milliseconds ttl) {
  std::string token = make_token();
  const auto start = steady_clock::now();  // validity counts from before the request
  std::uint64_t fence = 0;
  bool won = false;
  std::optional<std::string> in_doubt;
  {
    Session s(*this, "try_acquire", key);
    s.exec(kBegin);
    // Read after the write lock is ours: every earlier commit happened before this instant.
    const std::int64_t now = store_now();
    {
      sqlite3_stmt* acquire = s.stmt(kAcquire);
      ResetGuard reset(acquire);
      bind_blob(acquire, 1, key);
      bind_blob(acquire, 2, token);
      sqlite3_bind_int64(acquire, 3, now + to_ns(ttl));
      sqlite3_bind_int64(acquire, 4, now);
      if (s.step(acquire)) {
        won = true;
        fence = static_cast<std::uint64_t>(sqlite3_column_int64(acquire, 0));
        if (s.step(acquire)) s.unexpected_row();  // runs the statement to completion
      }
    }
    if (won) {
      sqlite3_stmt* set_fence = s.stmt(kSetFence);
      {
        ResetGuard reset(set_fence);
        sqlite3_bind_int64(set_fence, 1, static_cast<std::int64_t>(fence));
        if (s.step(set_fence)) s.unexpected_row();
      }
      if (fence % kSweepEvery == 0) {
        sqlite3_stmt* sweep = s.stmt(kSweep);
        ResetGuard reset(sweep);
        sqlite3_bind_int64(sweep, 1, now);
        if (s.step(sweep)) s.unexpected_row();
      }
    }
    sqlite3_stmt* commit = s.stmt(kCommit);
    ResetGuard reset(commit);
    int rc = sqlite3_step(commit);
    if (rc != SQLITE_DONE) {
      // BUSY leaves the transaction open (rolled back by the session): nothing was written.
      // Any other failure may come after the WAL frames reached the file, where a later
      // recovery would find them: our lease is in doubt, so try to delete it before saying so.
      if (!won || (rc & 0xff) == SQLITE_BUSY) s.fail(rc);
      in_doubt = s.describe(rc);
      s.discard();
    }
  }
  if (in_doubt) {
    try {
      (void)release(key, token);
    } catch (const BackendError&) {  // the store is failing; the lease ends with its TTL
    }
    throw BackendError("sqlite", ErrorKind::kInDoubt,
                       *in_doubt + " (the lease may exist until its TTL; release was attempted)");
  }
  if (!won) return std::nullopt;
  return Lock(shared_from_this(), std::string(key), std::move(token), fence, start + ttl);
}

bool SqliteStore::release(std::string_view key, std::string_view token) {
  Session s(*this, "release", key);
  sqlite3_stmt* stmt = s.stmt(kRelease);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, key);
  bind_blob(stmt, 2, token);
  sqlite3_bind_int64(stmt, 3, store_now());
  bool ours = false;
  while (s.step(stmt)) ours = sqlite3_column_int(stmt, 0) != 0;
  return ours;
}

bool SqliteStore::extend(std::string_view key, std::string_view token, milliseconds ttl) {
  Session s(*this, "extend", key);
  sqlite3_stmt* stmt = s.stmt(kExtend);
  ResetGuard reset(stmt);
  const std::int64_t now = store_now();
  bind_blob(stmt, 1, key);
  bind_blob(stmt, 2, token);
  sqlite3_bind_int64(stmt, 3, now);
  sqlite3_bind_int64(stmt, 4, now + to_ns(ttl));
  if (s.step(stmt)) s.unexpected_row();
  return sqlite3_changes(s.db()) > 0;
}

std::optional<LockInfo> SqliteStore::status(std::string_view key) {
  Session s(*this, "status", key);
  sqlite3_stmt* stmt = s.stmt(kStatus);
  ResetGuard reset(stmt);
  const std::int64_t now = store_now();
  bind_blob(stmt, 1, key);
  sqlite3_bind_int64(stmt, 2, now);
  if (!s.step(stmt)) return std::nullopt;
  return LockInfo{std::string(key), static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 0)),
                  remaining(sqlite3_column_int64(stmt, 1), now)};
}

std::vector<LockInfo> SqliteStore::list(std::string_view prefix) {
  Session s(*this, "list");
  sqlite3_stmt* stmt = s.stmt(kList);
  ResetGuard reset(stmt);
  const std::int64_t now = store_now();
  bind_blob(stmt, 1, prefix);
  sqlite3_bind_int64(stmt, 2, now);
  std::vector<LockInfo> out;
  while (s.step(stmt)) {
    std::string_view key = column_blob(stmt, 0);
    if (key.substr(0, prefix.size()) != prefix) break;  // sorted: past the prefix's range
    out.push_back(LockInfo{std::string(key),
                           static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 1)),
                           remaining(sqlite3_column_int64(stmt, 2), now)});
  }
  return out;
}

}  // namespace detail

SqliteLockApi::SqliteLockApi(SqliteOptions options)
    : store_(std::make_shared<detail::SqliteStore>(std::move(options))) {}

SqliteLockApi::~SqliteLockApi() = default;

std::optional<Lock> SqliteLockApi::try_acquire(std::string_view key,
                                               std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return store_->try_acquire(key, ttl);
}

bool SqliteLockApi::release(std::string_view key, std::string_view token) {
  validate_key(key);
  return store_->release(key, token);
}

bool SqliteLockApi::extend(std::string_view key, std::string_view token,
                           std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return store_->extend(key, token, ttl);
}

std::optional<LockInfo> SqliteLockApi::status(std::string_view key) {
  validate_key(key);
  return store_->status(key);
}

std::vector<LockInfo> SqliteLockApi::list(std::string_view prefix) {
  return store_->list(prefix);
}

const std::string& SqliteLockApi::path() const noexcept {
  return store_->path();
}

std::unique_ptr<LockApi> make_sqlite_lock_api(SqliteOptions options) {
  return std::make_unique<SqliteLockApi>(std::move(options));
}

}  // namespace lockkit
