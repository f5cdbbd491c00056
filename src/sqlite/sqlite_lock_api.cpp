// SPDX-License-Identifier: MIT
// The sqlite:// backend: a lease table in a WAL-mode SQLite file, a connection pool, schema checks.
#include "lockkit/sqlite.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"

namespace lockkit {
namespace detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

// 2: leases carry the boot id of their writer and a wall-clock bound (expires_wall), and the
// expiry column is expires_mono. Files of version 1 are migrated on first open.
constexpr std::int64_t kSchemaVersion = 2;
// Every this many acquisitions (by fence), the acquiring transaction deletes all expired rows.
constexpr std::int64_t kSweepEvery = 64;
// When the file is first used under a boot id it has not seen, the fence counter jumps by this
// much: far more than the commits a power loss can take back with synchronous=NORMAL (those
// since the last checkpoint).
constexpr std::int64_t kRebootFenceJump = std::int64_t{1} << 32;
// Boot ids remembered in the file; an id seen again causes no new jump.
constexpr std::size_t kMaxBoots = 16;
constexpr milliseconds kMaxBusyTimeout = std::chrono::minutes(10);
// A commit that leaves at least this many frames (pages) in the WAL checkpoints it, as SQLite's
// own auto-checkpoint does: it bounds the WAL, and so what a power loss can take back with
// synchronous=NORMAL, to about 4 MiB of commits.
constexpr int kAutoCheckpointFrames = 1000;
// Closing a connection does not checkpoint (a `lockkit run` would pay two more fdatasyncs for
// every run), unless the WAL has grown past this: each process that opens the file first
// re-reads the whole WAL to rebuild its index, ~3 µs a frame, so a short-lived process leaves
// at most ~0.5 MiB behind (about 40 runs of `lockkit run`, 3 frames each).
constexpr int kCloseCheckpointFrames = 128;
// Added to a lease's wall-clock bound: how far the wall clock may step forward (or the host stay
// suspended) during a lease before a process with another boot id view could take it early.
constexpr nanoseconds kWallMargin = std::chrono::minutes(2);
// No lease lasts longer (the core refuses longer TTLs); a monotonic expiry further ahead than
// this comes from a clock that restarted, i.e. from another boot that reused the boot id.
constexpr nanoseconds kMaxLease = std::chrono::hours(24 * 7) + std::chrono::minutes(1);
constexpr const char* kBootIdPath = "/proc/sys/kernel/random/boot_id";

std::int64_t to_ns(nanoseconds d) {
  return d.count();
}

std::int64_t clock_ns(clockid_t id) {
  struct timespec ts {};
  ::clock_gettime(id, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The offsets of this process's time namespace (`/proc/self/timens_offsets`, Linux 5.6+): what
// its CLOCK_MONOTONIC and CLOCK_BOOTTIME read above the host's. No file: no time namespaces.
struct TimeOffsets {
  std::int64_t monotonic = 0;
  std::int64_t boottime = 0;
};

TimeOffsets read_time_offsets() {
  TimeOffsets out;
  std::ifstream in("/proc/self/timens_offsets");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string clock;
    long long secs = 0;
    long long nsecs = 0;
    if (!(fields >> clock >> secs >> nsecs)) continue;
    std::int64_t ns = secs * 1'000'000'000 + nsecs;
    if (clock == "monotonic" || clock == "1") out.monotonic = ns;
    if (clock == "boottime" || clock == "7") out.boottime = ns;
  }
  return out;
}

// A boot id is a UUID; anything else (a chroot without /proc, an empty bind mount) cannot tell
// this boot from another, and guessing would risk live leases.
bool is_boot_id(const std::string& id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? id[i] != '-' : !std::isxdigit(static_cast<unsigned char>(id[i]))) return false;
  }
  return true;
}

// SQLite keeps these texts verbatim in sqlite_schema: a table with exactly this text has
// exactly this shape (see fast_schema_check).
#define LOCKKIT_SQLITE_CREATE_META                                                               \
  "CREATE TABLE lockkit_meta (\n  name TEXT PRIMARY KEY NOT NULL,\n  value NOT NULL\n) WITHOUT " \
  "ROWID"
#define LOCKKIT_SQLITE_CREATE_LEASES                                                          \
  "CREATE TABLE lockkit_leases (\n  key BLOB PRIMARY KEY NOT NULL,\n  token BLOB NOT NULL,\n" \
  "  fence INTEGER NOT NULL,\n  expires_mono INTEGER NOT NULL,\n  boot TEXT NOT NULL,\n"      \
  "  expires_wall INTEGER NOT NULL\n) WITHOUT ROWID"

const char* kCreateMeta = LOCKKIT_SQLITE_CREATE_META;
const char* kCreateLeases = LOCKKIT_SQLITE_CREATE_LEASES;
const char* kCreateSchema =
    LOCKKIT_SQLITE_CREATE_META ";\n" LOCKKIT_SQLITE_CREATE_LEASES
                               ";\nINSERT INTO lockkit_meta (name, value) VALUES "
                               "('schema_version', 2), ('fence', 0);";

#undef LOCKKIT_SQLITE_CREATE_META
#undef LOCKKIT_SQLITE_CREATE_LEASES

// Version 1 -> 2. Renaming expires_at makes the statements of a version-1 process that still
// has the file open fail ("no such column") instead of writing rows without a boot id.
const char* kMigrateFrom1 = R"sql(
ALTER TABLE lockkit_leases RENAME COLUMN expires_at TO expires_mono;
ALTER TABLE lockkit_leases ADD COLUMN boot TEXT NOT NULL DEFAULT '';
ALTER TABLE lockkit_leases ADD COLUMN expires_wall INTEGER NOT NULL DEFAULT 0;
UPDATE lockkit_meta SET value = 2 WHERE name = 'schema_version';
)sql";

// Whether a row's lease is over, seen by this process. ?10 our boot id, ?11 the host's
// CLOCK_MONOTONIC, ?12 the furthest monotonic expiry a live lease can have, ?13 CLOCK_REALTIME.
// A row written under our boot id compares on the monotonic clock; any other row (another boot,
// or another view of this one: a container or bind-mounted boot id) only by its wall-clock bound,
// which a live holder's lease never passes.
#define LOCKKIT_SQLITE_DEAD                                                      \
  "(CASE WHEN lockkit_leases.boot = ?10 AND lockkit_leases.expires_mono <= ?12 " \
  "THEN lockkit_leases.expires_mono <= ?11 ELSE lockkit_leases.expires_wall <= ?13 END)"
// Time left, by the same rule.
#define LOCKKIT_SQLITE_LEFT                                                      \
  "(CASE WHEN lockkit_leases.boot = ?10 AND lockkit_leases.expires_mono <= ?12 " \
  "THEN lockkit_leases.expires_mono - ?11 ELSE lockkit_leases.expires_wall - ?13 END)"

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
    // Takes a free or dead key; returns no row if it is held. The new fence is the counter + 1;
    // the caller stores it back in the same transaction. ?3 monotonic, ?4 wall-clock expiry.
    "INSERT INTO lockkit_leases (key, token, fence, expires_mono, boot, expires_wall) "
    "VALUES (?1, ?2, (SELECT value + 1 FROM lockkit_meta WHERE name = 'fence'), ?3, ?10, ?4) "
    "ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, "
    "expires_mono = excluded.expires_mono, boot = excluded.boot, "
    "expires_wall = excluded.expires_wall WHERE " LOCKKIT_SQLITE_DEAD " RETURNING fence",
    "UPDATE lockkit_meta SET value = ?1 WHERE name = 'fence'",
    "DELETE FROM lockkit_leases WHERE " LOCKKIT_SQLITE_DEAD,
    // Deletes our lease, or a dead one (reclaimed either way); says whether it was ours.
    "DELETE FROM lockkit_leases WHERE key = ?1 AND (token = ?2 OR " LOCKKIT_SQLITE_DEAD
    ") RETURNING token = ?2 AND NOT " LOCKKIT_SQLITE_DEAD,
    "UPDATE lockkit_leases SET expires_mono = ?3, boot = ?10, expires_wall = ?4 "
    "WHERE key = ?1 AND token = ?2 AND NOT " LOCKKIT_SQLITE_DEAD,
    "SELECT fence, " LOCKKIT_SQLITE_LEFT
    " FROM lockkit_leases WHERE key = ?1 AND NOT " LOCKKIT_SQLITE_DEAD,
    // Keys sort as memcmp, like std::string: the caller stops at the first key past the prefix.
    "SELECT key, fence, " LOCKKIT_SQLITE_LEFT
    " FROM lockkit_leases WHERE key >= ?1 AND NOT " LOCKKIT_SQLITE_DEAD " ORDER BY key",
};

#undef LOCKKIT_SQLITE_DEAD
#undef LOCKKIT_SQLITE_LEFT

// One reading of the clocks that decide expiry, taken inside the call's transaction.
struct Now {
  std::int64_t mono;  // the host's CLOCK_MONOTONIC (our namespace's offset taken off), ns
  std::int64_t wall;  // CLOCK_REALTIME, ns since the epoch
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

milliseconds remaining(std::int64_t left_ns) {
  return std::chrono::ceil<milliseconds>(nanoseconds(left_ns));
}

std::string quoted(std::string_view key) {
  return "\"" + escape_key(key) + "\"";
}

}  // namespace

namespace {

// Counts fork()s in this process's ancestry, so that a child can tell connections it inherited
// (unusable there) without a getpid() system call on every call.
std::atomic<unsigned> g_fork_generation{0};

// lockkit's SQLite calls against fork(): a fork waits until no thread of this process is inside
// SQLite through lockkit, so a child never inherits one of SQLite's mutexes locked (its first
// SQLite call would wait for it forever) or a half-done transaction.
struct ForkGate {
  std::mutex forker;            // held from the prepare handler to the parent/child handler
  std::atomic<int> active{0};   // threads inside SQLite through lockkit
  std::atomic<int> forking{0};  // 1 while a fork waits for them: new entries wait
};

ForkGate& fork_gate() noexcept {
  static ForkGate* gate = new ForkGate;  // never destroyed: fork handlers may run at exit
  return *gate;
}

void fork_prepare() noexcept {
  ForkGate& g = fork_gate();
  g.forker.lock();
  g.forking.store(1);
  // Bounded: a call inside SQLite returns within its busy_timeout.
  for (int n = g.active.load(); n != 0; n = g.active.load()) g.active.wait(n);
}

void fork_parent() noexcept {
  ForkGate& g = fork_gate();
  g.forking.store(0);
  g.forking.notify_all();
  g.forker.unlock();
}

void fork_child() noexcept {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  ForkGate& g = fork_gate();
  g.active.store(0);  // it was 0 at the fork; no thread but this one exists here
  g.forking.store(0);
  g.forker.unlock();
}

unsigned fork_generation() noexcept {
  static const bool registered = [] {
    return ::pthread_atfork(&fork_prepare, &fork_parent, &fork_child) == 0;
  }();
  (void)registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

// Marks a thread as inside SQLite for fork_prepare(); waits while a fork is being prepared.
// Nested marks count once (an inner one must not wait for a fork the outer one holds up).
thread_local int t_inside_depth = 0;

class InsideSqlite {
 public:
  InsideSqlite() noexcept {
    if (t_inside_depth++ > 0) return;
    ForkGate& g = fork_gate();
    for (;;) {
      g.active.fetch_add(1);
      if (g.forking.load() == 0) return;
      leave();
      g.forking.wait(1);
    }
  }
  InsideSqlite(const InsideSqlite&) = delete;
  InsideSqlite& operator=(const InsideSqlite&) = delete;
  ~InsideSqlite() {
    if (--t_inside_depth == 0) leave();
  }

 private:
  static void leave() noexcept {
    ForkGate& g = fork_gate();
    if (g.active.fetch_sub(1) == 1 && g.forking.load() != 0) g.active.notify_all();
  }
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

// SQLite keeps one record per file (device, inode) per process with the POSIX locks it believes
// the process holds; a fork() child inherits the record but not the locks. So a child must not
// open a file its parent had open through lockkit when it forked: its connections would share
// the stale record, skip taking locks and read pages another process is rewriting.
struct OpenFiles {
  struct Entry {
    unsigned generation = 0;  // the fork generation of the process that opened them
    int connections = 0;      // still open there (inherited ones are never closed)
  };
  std::mutex mu;
  std::map<std::pair<dev_t, ino_t>, Entry> files;  // guarded by mu
};

OpenFiles& open_files() noexcept {
  static OpenFiles* files = new OpenFiles;  // never destroyed: connections may outlive statics
  return *files;
}

// Counts a connection to `file` about to be opened; false if a parent process had the file open
// when this one was forked from it.
bool register_connection(const FileId& file) {
  OpenFiles& o = open_files();
  std::lock_guard<std::mutex> guard(o.mu);
  auto& e = o.files[{file.dev, file.ino}];
  unsigned gen = fork_generation();
  if (e.generation != gen) {
    if (e.connections > 0) return false;
    e.generation = gen;
  }
  ++e.connections;
  return true;
}

void unregister_connection(const FileId& file) noexcept {
  OpenFiles& o = open_files();
  std::lock_guard<std::mutex> guard(o.mu);
  auto it = o.files.find({file.dev, file.ino});
  if (it != o.files.end() && it->second.generation == fork_generation() &&
      --it->second.connections == 0) {
    o.files.erase(it);
  }
}

}  // namespace

// One sqlite3 connection with its prepared statements. Used by one thread at a time.
struct SqliteConn {
  SqliteConn() = default;
  SqliteConn(const SqliteConn&) = delete;
  SqliteConn& operator=(const SqliteConn&) = delete;
  ~SqliteConn() {
    if (fork_generation != lockkit::detail::fork_generation()) {
      // Inherited through fork(): never touched in the child. Closing would run SQLite's
      // clean-up on its stale lock records (and could block on a mutex held at the fork).
      for (auto& stmt : stmts) (void)stmt.release();
      (void)db.release();
      return;
    }
    if (!db && !registered) return;
    InsideSqlite inside;
    for (auto& stmt : stmts) stmt.reset();
    if (db && wal_frames >= kCloseCheckpointFrames) {
      // Copies the WAL into the database and cuts it to zero bytes: a new process's first
      // open rebuilds the WAL's index from the frames, and learns nothing from it about which
      // were copied already, so without the cut the WAL would never start over. Best effort
      // and without waiting (the busy handler gives up at once): if another connection is
      // busy, the WAL stays for the next close or auto-checkpoint.
      busy_deadline = steady_clock::now();
      (void)sqlite3_wal_checkpoint_v2(db.get(), "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                      nullptr);
    }
    db.reset();
    if (registered) unregister_connection(file);
  }

  FileId file;              // the file it opened; a call that finds another at the path drops it
  bool registered = false;  // counted in open_files()
  DbPtr db;
  std::array<StmtPtr, kStmtCount> stmts;
  // When the current call stops waiting for locks: its start + busy_timeout, for all of its
  // statements together (not per statement).
  steady_clock::time_point busy_deadline;
  unsigned fork_generation = 0;  // `fork_generation()` when opened
  int wal_frames = 0;            // frames in the WAL after this connection's last commit
};

namespace {

// What a failed SQLite call means, decided in one place: the kind and a cause for the message
// (the caller puts the operation, key and path in front). `maybe_applied`: the call was a
// commit whose write may have reached the file. Contention leaves the connection fine; after
// anything else it is broken: the next call starts afresh.
StoreFailure classify(sqlite3* db, int rc, milliseconds busy_timeout, const std::string& path,
                      bool maybe_applied = false) {
  std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  auto failure = [&](ErrorKind kind, const std::string& cause) {
    return StoreFailure(kind, cause, maybe_applied, kind != ErrorKind::kTimeout || maybe_applied);
  };
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return failure(ErrorKind::kTimeout, msg +
                                              " (another connection held the write lock for over "
                                              "busy_timeout " +
                                              format_duration(busy_timeout) + ")");
    case SQLITE_NOTADB:
      return failure(ErrorKind::kIo, "file is not a database");
    case SQLITE_CORRUPT:
      return failure(ErrorKind::kIo, "database disk image is malformed");
    case SQLITE_READONLY:
      return failure(ErrorKind::kIo, "file is read-only (" + msg + ")");
    case SQLITE_CANTOPEN: {
      std::string dir = std::filesystem::path(path).parent_path().string();
      if (::access(dir.c_str(), W_OK) != 0) {
        return failure(ErrorKind::kIo, "cannot open (" + msg + "): directory \"" + dir +
                                           "\" is not writable (" + std::strerror(errno) + ")");
      }
      return failure(ErrorKind::kIo, "cannot open (" + msg + ")");
    }
    case SQLITE_FULL:
      return failure(ErrorKind::kIo, "disk full (" + msg + ")");
    case SQLITE_IOERR:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_NOMEM:
      return failure(ErrorKind::kIo, msg);
    default:
      return failure(ErrorKind::kProtocol, msg);
  }
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

// After each commit in WAL mode: remembers the WAL's length for the close, and checkpoints
// once it is long (what sqlite3_wal_autocheckpoint would do; that one cannot say how long).
int wal_hook(void* arg, sqlite3* db, const char* name, int frames) noexcept {
  static_cast<SqliteConn*>(arg)->wal_frames = frames;
  // The commit is done whatever happens here: a failed checkpoint is retried by the next one.
  if (frames >= kAutoCheckpointFrames) (void)sqlite3_wal_checkpoint(db, name);
  return SQLITE_OK;
}

}  // namespace

// The lease table of one SQLite file, behind every `LockApi` made by `make_sqlite_lock_api` on it.
// Thread safety: safe to share; calls may run concurrently.
class SqliteStore final : public LeaseStore {
 public:
  explicit SqliteStore(SqliteOptions options);
  ~SqliteStore() override = default;

  std::string_view backend() const noexcept override { return "sqlite"; }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       milliseconds ttl) override;
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, milliseconds ttl) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix) override;

 private:
  class Session;
  struct SchemaInfo {
    int tables = 0;  // ours present: 0 or 2
    std::int64_t version = 0;
  };

  // Makes sure the path names a regular file lockkit may use, creating it (0600, or 0660 when
  // shared with the group) if missing; creates missing directories only for the default
  // location. Checks modes and links of the file, its -wal and -shm. No SQLite call.
  void ensure_file(std::string_view op, std::string_view key);
  void check_file(std::string_view op, std::string_view key, const std::string& name,
                  const struct stat& st) const;
  // Throws in a fork() child of the process this store was first used in.
  void claim(std::string_view op, std::string_view key);
  // Opens, configures and checks a connection to the file now at the path, creating it if it
  // is missing (as a new process would); throws if that is not a usable lockkit database.
  std::unique_ptr<SqliteConn> open_connection(std::string_view op, std::string_view key);
  std::unique_ptr<SqliteConn> checkout(std::string_view op, std::string_view key);
  // Returns the start of an error message: `op "key": "/path": `, or `op "/path": `.
  std::string context(std::string_view op, std::string_view key) const;
  void checkin(std::unique_ptr<SqliteConn> conn) noexcept;
  void set_up(Session& s);
  // Returns which of our tables exist and the schema version; throws for a foreign schema.
  SchemaInfo check_schema(Session& s);
  // True if both tables are exactly as this version creates them, with a fence counter (one
  // statement); then `boots` is the boot id list, if any. False means: run check_schema.
  bool fast_schema_check(Session& s, std::optional<std::string>& boots);
  void migrate_from_1(Session& s);
  // Returns true if nothing wrote the file since this boot began (by the wall clock).
  bool untouched_this_boot() const;
  std::optional<std::string> meta_text(Session& s, const char* name);
  void set_meta_text(Session& s, const char* name, const std::string& value);
  Now clocks() const noexcept;
  void bind_clocks(sqlite3_stmt* stmt, const Now& now) const;
  [[noreturn]] void fail(std::string_view op, std::string_view key, ErrorKind kind,
                         const std::string& cause) const;

  const SqliteOptions options_;
  std::string path_;
  bool default_location_ = false;  // the only path whose missing directories are created
  std::string boot_;               // this process's boot id
  TimeOffsets offsets_;            // of this process's time namespace
  std::mutex mu_;
  std::vector<std::unique_ptr<SqliteConn>> idle_;  // guarded by mu_
  std::optional<unsigned> home_generation_;        // guarded by mu_; fork generation of first use
};

class SqliteStore::Session {
 public:
  Session(SqliteStore& store, std::string_view op, std::string_view key = {})
      : store_(store),
        op_(op),
        key_(key),
        claimed_((store.claim(op, key), true)),
        conn_(store.checkout(op, key)) {
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

  // Throws the `BackendError` for a failed SQLite call; `maybe_applied` for a commit whose
  // write may have reached the file (then kind in-doubt).
  [[noreturn]] void fail(int rc, bool maybe_applied = false) {
    raise(classify(db(), rc, store_.options_.busy_timeout, store_.path_, maybe_applied));
  }

  [[noreturn]] void throw_error(ErrorKind kind, const std::string& cause) {
    raise(StoreFailure(kind, cause, false, kind != ErrorKind::kTimeout));
  }

  // Translates a failure into `BackendError`: the one place that does.
  [[noreturn]] void raise(const StoreFailure& f) {
    if (f.broken()) broken_ = true;  // closed when the call ends, never pooled
    if (f.maybe_applied()) {
      throw BackendError("sqlite", ErrorKind::kInDoubt,
                         context() + f.what() +
                             " (the lease may exist until its TTL unless released with its "
                             "token; through a LockApi, release was attempted)");
    }
    throw BackendError("sqlite", f.kind(), context() + f.what());
  }

 private:
  std::string context() const { return store_.context(op_, key_); }

  SqliteStore& store_;
  std::string_view op_;
  std::string_view key_;
  // From before claim() to after checkin, as seen by fork(): a child never inherits one of
  // our mutexes (the pool's, the file registry's) or SQLite's locked.
  InsideSqlite inside_;
  bool claimed_ = false;  // never a SQLite call in a fork() child of the store's process
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
  (void)fork_generation();  // installs the fork handlers before any connection exists
  std::filesystem::path file = std::filesystem::absolute(options_.path).lexically_normal();
  path_ = file.string();
  if (!file.has_filename()) fail("open", {}, ErrorKind::kIo, "names a directory, not a file");
  std::string def = default_sqlite_path();
  default_location_ = !def.empty() && def == path_;
  {
    std::ifstream in(kBootIdPath);
    std::getline(in, boot_);
    if (!is_boot_id(boot_)) {
      fail("open", {}, ErrorKind::kIo,
           std::string("cannot read the boot id from ") + kBootIdPath +
               (in ? " (not a UUID)" : " (" + std::string(std::strerror(errno)) + ")") +
               ": without it, leases of this boot cannot be told from those of another");
    }
  }
  offsets_ = read_time_offsets();
  // File system checks only: SQLite is first called by the first operation, so that a LockApi
  // made but not used before fork() works in the child. Gated: it holds a mutex a forked child
  // would otherwise inherit locked.
  InsideSqlite inside;
  ensure_file("open", {});
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

Now SqliteStore::clocks() const noexcept {
  return {clock_ns(CLOCK_MONOTONIC) - offsets_.monotonic, clock_ns(CLOCK_REALTIME)};
}

void SqliteStore::bind_clocks(sqlite3_stmt* stmt, const Now& now) const {
  sqlite3_bind_text(stmt, 10, boot_.data(), static_cast<int>(boot_.size()), SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 11, now.mono);
  sqlite3_bind_int64(stmt, 12, now.mono + to_ns(kMaxLease));
  sqlite3_bind_int64(stmt, 13, now.wall);
}

void SqliteStore::claim(std::string_view op, std::string_view key) {
  unsigned gen = fork_generation();
  std::lock_guard<std::mutex> guard(mu_);
  if (!home_generation_) {
    home_generation_ = gen;
  } else if (*home_generation_ != gen) {
    fail(op, key, ErrorKind::kUnsupported,
         "this LockApi was used before fork(), and SQLite connections do not survive fork(): "
         "in the child, use a LockApi created (but not used) before the fork, or exec a new "
         "program");
  }
}

void SqliteStore::check_file(std::string_view op, std::string_view key, const std::string& name,
                             const struct stat& st) const {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (st.st_mode & S_IWOTH) {
    fail(op, key, ErrorKind::kIo,
         "\"" + name + "\" is world-writable (mode " + mode +
             "): any local user could forge or delete leases; chmod o-w it (only sharing within "
             "one group is possible, with ?share=group)");
  }
  if ((st.st_mode & S_IWGRP) && !options_.share_with_group) {
    fail(op, key, ErrorKind::kIo,
         "\"" + name + "\" is group-writable (mode " + mode +
             "): other users could forge or delete leases; chmod g-w it, or, if the locks are "
             "meant to be shared by the file's group, open it with ?share=group "
             "(SqliteOptions::share_with_group)");
  }
  if (st.st_nlink > 1) {
    fail(op, key, ErrorKind::kIo,
         "\"" + name + "\" has " + std::to_string(st.st_nlink) +
             " hard links: SQLite keeps a separate -wal and -shm, and so a separate lock table, "
             "for each name, so two processes could hold one key; use a single name (symbolic "
             "links are fine)");
  }
}

void SqliteStore::ensure_file(std::string_view op, std::string_view key) {
  // Our own create sets the mode (SQLite would use 0644). Never open an existing file here:
  // closing our descriptor would drop the POSIX locks SQLite holds on it in this process, and
  // the mutex keeps another thread's connection from taking locks between create and close.
  static std::mutex create_mu;
  std::lock_guard<std::mutex> guard(create_mu);
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail(op, key, ErrorKind::kIo, "is a directory, not a database file");
    // A FIFO would block the first read forever; devices are not databases either.
    if (!S_ISREG(st.st_mode)) fail(op, key, ErrorKind::kIo, "is not a regular file");
    check_file(op, key, path_, st);
    // SQLite gives these the database's mode when it creates them; older ones may differ.
    for (const char* suffix : {"-wal", "-shm"}) {
      std::string side = path_ + suffix;
      if (::stat(side.c_str(), &st) == 0) check_file(op, key, side, st);
    }
    return;
  }
  if (errno != ENOENT && errno != ENOTDIR) {
    fail(op, key, ErrorKind::kIo, std::string("cannot stat: ") + std::strerror(errno));
  }
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  int err = 0;
  if (::stat(parent.c_str(), &st) != 0) {
    err = errno;
  } else if (!S_ISDIR(st.st_mode)) {
    err = ENOTDIR;
  }
  if (err != 0) {
    if (err != ENOENT || !default_location_) {
      // A typo must not give two processes two lock files: only the default is created.
      fail(op, key, ErrorKind::kIo,
           "directory \"" + parent.string() + "\" " +
               (err == ENOENT ? "does not exist"
                              : std::string("is unusable: ") + std::strerror(err)) +
               " (lockkit creates directories only for its default location; create it, or "
               "check the path)");
    }
    // The default location: parents with 0700 (XDG), one level at a time, so that each
    // failure names its directory.
    std::filesystem::path dir;
    for (const auto& part : parent) {
      dir /= part;
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        fail(op, key, ErrorKind::kIo,
             "cannot create directory \"" + dir.string() + "\": " + std::strerror(errno));
      }
    }
  }
  const mode_t mode = options_.share_with_group ? 0660 : 0600;
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0 && errno != EEXIST) {
    fail(op, key, ErrorKind::kIo, std::string("cannot create file: ") + std::strerror(errno));
  }
  if (fd >= 0) {
    (void)::fchmod(fd, mode);  // whatever the umask: the group must be able to write
    ::close(fd);
  }
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
    if (!before) {
      if (attempt < 3) continue;  // deleted since ensure_file
      fail(op, key, ErrorKind::kUnavailable, "the file is being replaced repeatedly");
    }
    if (!register_connection(*before)) {
      fail(op, key, ErrorKind::kUnsupported,
           "this process was forked while its parent had this file open through lockkit; "
           "SQLite's record of the parent's locks on it was inherited without the locks, so "
           "it cannot be used safely here: open it in a process that has not inherited it "
           "(before the parent's first use, or after exec)");
    }
    conn->file = *before;
    conn->registered = true;
    sqlite3* raw = nullptr;
    // No SQLITE_OPEN_CREATE: ensure_file made it with our mode; vanished since is retried.
    int rc =
        sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    conn->db.reset(raw);
    std::optional<FileId> after = file_id(path_);
    if (before != after) {
      if (attempt < 3) continue;  // replaced while we opened it
      fail(op, key, ErrorKind::kUnavailable, "the file is being replaced repeatedly");
    }
    if (rc != SQLITE_OK) {
      StoreFailure f = classify(raw, rc, options_.busy_timeout, path_);
      fail(op, key, f.kind(), f.what());
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
    // The last connection to close leaves the WAL as it is instead of copying it into the
    // database (two fdatasyncs, and the next writer a third to restart the WAL). A commit in
    // the WAL survives the crash of any process, as one in the database would; what a power
    // loss may take back with synchronous=NORMAL (the commits since the WAL was last flushed)
    // stays bounded by the checkpoints in wal_hook and ~SqliteConn.
    int no_checkpoint = 0;
    if (sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &no_checkpoint) != SQLITE_OK ||
        no_checkpoint != 1) {
      fail(op, key, ErrorKind::kUnsupported, "this SQLite cannot skip the checkpoint at close");
    }
    sqlite3_wal_hook(raw, &wal_hook, conn.get());
    Session s(*this, op, key, std::move(conn));
    s.exec_sql(options_.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // After a checkpoint, the next writer starts the WAL over from its beginning and cuts a
    // longer file to this size. The limit stays above what the 1000-frame auto-checkpoint lets
    // the WAL reach: regrowing the file from zero after each checkpoint would cost a quarter
    // more per acquisition. (Only the frames since the restart are re-read at open.)
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
      if (current && conn->file == *current) {
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
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (idle_.size() < options_.max_idle_connections) {
      idle_.push_back(std::move(conn));
      return;
    }
  }
  conn.reset();  // closed outside the mutex
}

namespace {

struct Column {
  const char* name;
  const char* type;
  int pk;
};
const std::array<Column, 2> kMetaColumns = {{{"name", "TEXT", 1}, {"value", "", 0}}};
const std::array<Column, 4> kLeasesV1 = {{{"key", "BLOB", 1},
                                          {"token", "BLOB", 0},
                                          {"fence", "INTEGER", 0},
                                          {"expires_at", "INTEGER", 0}}};
const std::array<Column, 6> kLeasesV2 = {{{"key", "BLOB", 1},
                                          {"token", "BLOB", 0},
                                          {"fence", "INTEGER", 0},
                                          {"expires_mono", "INTEGER", 0},
                                          {"boot", "TEXT", 0},
                                          {"expires_wall", "INTEGER", 0}}};

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

SqliteStore::SchemaInfo SqliteStore::check_schema(Session& s) {
  auto foreign = [&](const std::string& why) {
    s.throw_error(ErrorKind::kProtocol,
                  "foreign schema: " + why +
                      " (lockkit uses the tables lockkit_meta and lockkit_leases; "
                      "use another file)");
  };
  auto exists = [&](const char* table) {
    sqlite3_stmt* raw = nullptr;
    std::string sql = std::string("SELECT type FROM sqlite_schema WHERE name = '") + table + "'";
    int rc = sqlite3_prepare_v2(s.db(), sql.c_str(), -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    StmtPtr stmt(raw);
    if (!s.step(raw)) return false;
    std::string type(column_blob(raw, 0));
    if (type != "table") foreign(std::string(table) + " is a " + type + ", not a table");
    return true;
  };
  auto check_columns = [&](const char* table, const auto& expected) {
    sqlite3_stmt* raw = nullptr;
    std::string sql = std::string("SELECT name, type, pk FROM pragma_table_info('") + table + "')";
    int rc = sqlite3_prepare_v2(s.db(), sql.c_str(), -1, &raw, nullptr);
    if (rc != SQLITE_OK) s.fail(rc);
    StmtPtr stmt(raw);
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
  SchemaInfo info;
  bool meta = exists("lockkit_meta");
  if (meta) check_columns("lockkit_meta", kMetaColumns);
  bool leases = exists("lockkit_leases");
  info.tables = int{meta} + int{leases};
  if (info.tables == 1) foreign("only one of lockkit_meta and lockkit_leases exists");
  if (info.tables == 0) return info;
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
  info.version = sqlite3_column_int64(raw, 0);
  if (info.version > kSchemaVersion || info.version < 1) {
    s.throw_error(ErrorKind::kProtocol,
                  "schema version " + std::to_string(info.version) + ", this lockkit knows 1.." +
                      std::to_string(kSchemaVersion) +
                      (info.version > kSchemaVersion ? " (written by a newer lockkit)" : ""));
  }
  if (info.version == 1) {
    check_columns("lockkit_leases", kLeasesV1);
  } else {
    check_columns("lockkit_leases", kLeasesV2);
  }
  if (column_blob(raw, 1) != "integer") foreign("lockkit_meta has no fence counter");
  return info;
}

std::optional<std::string> SqliteStore::meta_text(Session& s, const char* name) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(s.db(), "SELECT value FROM lockkit_meta WHERE name = ?1", -1, &raw,
                              nullptr);
  if (rc != SQLITE_OK) s.fail(rc);
  StmtPtr stmt(raw);
  sqlite3_bind_text(raw, 1, name, -1, SQLITE_STATIC);
  if (!s.step(raw)) return std::nullopt;
  return std::string(column_blob(raw, 0));
}

void SqliteStore::set_meta_text(Session& s, const char* name, const std::string& value) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(s.db(),
                              "INSERT INTO lockkit_meta (name, value) VALUES (?1, ?2) "
                              "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                              -1, &raw, nullptr);
  if (rc != SQLITE_OK) s.fail(rc);
  StmtPtr stmt(raw);
  sqlite3_bind_text(raw, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(raw, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  if (s.step(raw)) s.unexpected_row();
}

bool SqliteStore::untouched_this_boot() const {
  // The host's boot, on the wall clock: now minus the time since boot (suspend included).
  const std::int64_t boot_began =
      clock_ns(CLOCK_REALTIME) - (clock_ns(CLOCK_BOOTTIME) - offsets_.boottime);
  for (const std::string& name : {path_, path_ + "-wal"}) {
    struct stat st;
    // An empty -wal holds nothing written (opening the file creates one).
    if (::stat(name.c_str(), &st) != 0 || st.st_size == 0) continue;
    std::int64_t mtime = std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    if (mtime >= boot_began - to_ns(std::chrono::seconds(1))) return false;
  }
  return true;
}

void SqliteStore::migrate_from_1(Session& s) {
  // Version 1 recorded one boot id for the file, and its leases' monotonic expiries.
  std::optional<std::string> old_boot = meta_text(s, "boot_id");
  const bool dead = old_boot != boot_ && untouched_this_boot();
  const Now now = clocks();
  s.exec_sql(kMigrateFrom1);
  sqlite3_stmt* raw = nullptr;
  int rc;
  if (old_boot == boot_) {
    // Same clock: the wall bound follows from the time left.
    rc = sqlite3_prepare_v2(s.db(),
                            "UPDATE lockkit_leases SET boot = ?1, expires_wall = ?2 + "
                            "min(max(expires_mono - ?3, 0), ?4) + ?5",
                            -1, &raw, nullptr);
  } else if (dead) {
    // Nothing wrote the file in this boot: every holder died with an earlier one.
    rc = sqlite3_prepare_v2(s.db(), "DELETE FROM lockkit_leases", -1, &raw, nullptr);
  } else {
    // Written in this boot under another boot id view: the time left cannot be known, so
    // assume the longest lease.
    rc = sqlite3_prepare_v2(s.db(),
                            "UPDATE lockkit_leases SET boot = ?1, expires_wall = ?2 + ?4 + ?5", -1,
                            &raw, nullptr);
  }
  if (rc != SQLITE_OK) s.fail(rc);
  StmtPtr stmt(raw);
  const std::string& row_boot = old_boot ? *old_boot : std::string("unknown");
  if (!dead) {
    sqlite3_bind_text(raw, 1, (old_boot == boot_ ? boot_ : row_boot).c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(raw, 2, now.wall);
    sqlite3_bind_int64(raw, 3, now.mono);
    sqlite3_bind_int64(raw, 4, to_ns(kMaxLease));
    sqlite3_bind_int64(raw, 5, to_ns(kWallMargin));
  }
  if (s.step(raw)) s.unexpected_row();
  s.exec_sql("DELETE FROM lockkit_meta WHERE name = 'boot_id'");
  if (old_boot && is_boot_id(*old_boot)) set_meta_text(s, "boots", *old_boot);
}

bool SqliteStore::fast_schema_check(Session& s, std::optional<std::string>& boots) {
  sqlite3_stmt* raw = nullptr;
  // Fails to prepare if lockkit_meta is missing or has other columns: the full check says why.
  int rc = sqlite3_prepare_v2(
      s.db(),
      "SELECT (SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'lockkit_meta'), "
      "(SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'lockkit_leases'), "
      "(SELECT value FROM lockkit_meta WHERE name = 'schema_version'), "
      "(SELECT typeof(value) FROM lockkit_meta WHERE name = 'fence'), "
      "(SELECT value FROM lockkit_meta WHERE name = 'boots')",
      -1, &raw, nullptr);
  if (rc != SQLITE_OK) return false;
  StmtPtr stmt(raw);
  if (!s.step(raw)) return false;
  if (column_blob(raw, 0) != kCreateMeta || column_blob(raw, 1) != kCreateLeases ||
      sqlite3_column_type(raw, 2) != SQLITE_INTEGER ||
      sqlite3_column_int64(raw, 2) != kSchemaVersion || column_blob(raw, 3) != "integer") {
    return false;
  }
  if (sqlite3_column_type(raw, 4) != SQLITE_NULL) boots = std::string(column_blob(raw, 4));
  return true;
}

void SqliteStore::set_up(Session& s) {
  // Read-only checks first: a foreign file is rejected before anything in it changes. The
  // common case (our tables as this version makes them) takes one statement; anything else
  // gets the full check, in one read transaction, so that a schema another process is
  // creating is seen whole or not at all.
  std::optional<std::string> boots;
  if (!fast_schema_check(s, boots)) {
    s.exec_sql("BEGIN");
    SchemaInfo info = check_schema(s);
    if (info.tables == 2 && info.version == kSchemaVersion) boots = meta_text(s, "boots");
    s.exec_sql("COMMIT");
  }
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
  auto known = [&](const std::optional<std::string>& list) {
    if (!list) return false;
    auto ids = split_words(*list);
    return std::find(ids.begin(), ids.end(), boot_) != ids.end();
  };
  if (known(boots)) return;  // the common case: nothing to write
  s.exec(kBegin);
  SchemaInfo info = check_schema(s);  // re-checked under the write lock
  if (info.tables == 0) s.exec_sql(kCreateSchema);
  if (info.version == 1) migrate_from_1(s);
  // A boot id the file has not seen is a reboot or another view of this boot (a container, a
  // bind-mounted boot id): nothing can tell which. Leases stay (each is judged by its own
  // bounds); fences jump past any a power loss took back, once per boot id, so views that take
  // turns do not jump on every open.
  std::vector<std::string> ids = split_words(meta_text(s, "boots").value_or(""));
  if (std::find(ids.begin(), ids.end(), boot_) == ids.end()) {
    if (!ids.empty()) {
      s.exec_sql(("UPDATE lockkit_meta SET value = value + " + std::to_string(kRebootFenceJump) +
                  " WHERE name = 'fence'")
                     .c_str());
    }
    ids.push_back(boot_);
    if (ids.size() > kMaxBoots) ids.erase(ids.begin(), ids.end() - kMaxBoots);
    std::string joined;
    for (const auto& id : ids) joined += (joined.empty() ? "" : " ") + id;
    set_meta_text(s, "boots", joined);
  }
  s.exec(kCommit);
}

std::optional<std::uint64_t> SqliteStore::acquire(std::string_view key, std::string_view token,
                                                  milliseconds ttl) {
  Session s(*this, "try_acquire", key);
  s.exec(kBegin);
  // Read after the write lock is ours: every earlier commit happened before this instant.
  const Now now = clocks();
  std::optional<std::uint64_t> fence;
  {
    sqlite3_stmt* acquire = s.stmt(kAcquire);
    ResetGuard reset(acquire);
    bind_blob(acquire, 1, key);
    bind_blob(acquire, 2, token);
    sqlite3_bind_int64(acquire, 3, now.mono + to_ns(ttl));
    sqlite3_bind_int64(acquire, 4, now.wall + to_ns(ttl) + to_ns(kWallMargin));
    bind_clocks(acquire, now);
    if (s.step(acquire)) {
      fence = static_cast<std::uint64_t>(sqlite3_column_int64(acquire, 0));
      if (s.step(acquire)) s.unexpected_row();  // runs the statement to completion
    }
  }
  if (fence) {
    sqlite3_stmt* set_fence = s.stmt(kSetFence);
    {
      ResetGuard reset(set_fence);
      sqlite3_bind_int64(set_fence, 1, static_cast<std::int64_t>(*fence));
      if (s.step(set_fence)) s.unexpected_row();
    }
    if (*fence % kSweepEvery == 0) {
      sqlite3_stmt* sweep = s.stmt(kSweep);
      ResetGuard reset(sweep);
      bind_clocks(sweep, now);
      if (s.step(sweep)) s.unexpected_row();
    }
  }
  sqlite3_stmt* commit = s.stmt(kCommit);
  ResetGuard reset(commit);
  int rc = sqlite3_step(commit);
  if (rc != SQLITE_DONE) {
    // BUSY leaves the transaction open (rolled back by the session): nothing was written.
    // Any other failure may come after the WAL frames reached the file, where a later
    // recovery would find them: our lease is in doubt, and the core deletes it with our token
    // (on a new connection: this one is dropped) before passing the error on.
    s.fail(rc, fence && (rc & 0xff) != SQLITE_BUSY);
  }
  return fence;
}

bool SqliteStore::release(std::string_view key, std::string_view token) {
  Session s(*this, "release", key);
  sqlite3_stmt* stmt = s.stmt(kRelease);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, key);
  bind_blob(stmt, 2, token);
  bind_clocks(stmt, clocks());
  bool ours = false;
  while (s.step(stmt)) ours = sqlite3_column_int(stmt, 0) != 0;
  return ours;
}

bool SqliteStore::extend(std::string_view key, std::string_view token, milliseconds ttl) {
  Session s(*this, "extend", key);
  sqlite3_stmt* stmt = s.stmt(kExtend);
  ResetGuard reset(stmt);
  const Now now = clocks();
  bind_blob(stmt, 1, key);
  bind_blob(stmt, 2, token);
  sqlite3_bind_int64(stmt, 3, now.mono + to_ns(ttl));
  sqlite3_bind_int64(stmt, 4, now.wall + to_ns(ttl) + to_ns(kWallMargin));
  bind_clocks(stmt, now);
  if (s.step(stmt)) s.unexpected_row();
  return sqlite3_changes(s.db()) > 0;
}

std::optional<LockInfo> SqliteStore::status(std::string_view key) {
  Session s(*this, "status", key);
  sqlite3_stmt* stmt = s.stmt(kStatus);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, key);
  bind_clocks(stmt, clocks());
  if (!s.step(stmt)) return std::nullopt;
  return LockInfo{std::string(key), static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 0)),
                  remaining(sqlite3_column_int64(stmt, 1))};
}

std::vector<LockInfo> SqliteStore::list(std::string_view prefix) {
  Session s(*this, "list");
  sqlite3_stmt* stmt = s.stmt(kList);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, prefix);
  bind_clocks(stmt, clocks());
  std::vector<LockInfo> out;
  while (s.step(stmt)) {
    std::string_view key = column_blob(stmt, 0);
    if (key.substr(0, prefix.size()) != prefix) break;  // sorted: past the prefix's range
    out.push_back(LockInfo{std::string(key),
                           static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 1)),
                           remaining(sqlite3_column_int64(stmt, 2))});
  }
  return out;
}

}  // namespace detail

std::string default_sqlite_path() {
  // XDG: a relative XDG_STATE_HOME is invalid and must be ignored.
  std::string dir;
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/') {
    dir = state;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    dir = std::string(home) + "/.local/state";
  } else if (const passwd* pw = ::getpwuid(::getuid());
             pw != nullptr && pw->pw_dir != nullptr && pw->pw_dir[0] == '/') {
    dir = std::string(pw->pw_dir) + "/.local/state";
  } else {
    return {};
  }
  return (std::filesystem::path(dir) / "lockkit" / "locks.db").lexically_normal().string();
}

std::shared_ptr<LeaseStore> make_sqlite_store(SqliteOptions options) {
  return std::make_shared<detail::SqliteStore>(std::move(options));
}

std::shared_ptr<LockApi> make_sqlite_lock_api(SqliteOptions options) {
  return make_lock_api(make_sqlite_store(std::move(options)));
}

}  // namespace lockkit
