// SPDX-License-Identifier: MIT
// The sqlite:// backend's connections: the fork gate, the registry of files open in this
// process, opening and configuring a connection (busy handler, WAL hook), the pool, and the
// translation of SQLite's errors.
#include "sqlite/sqlite_connection.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/url.hpp"
#include "lockkit/duration.hpp"

namespace lockkit::detail::sqlite {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kMaxBusyTimeout = std::chrono::minutes(10);
// A commit that leaves at least this many frames (pages) in the WAL checkpoints it, as SQLite's
// own auto-checkpoint does: it bounds the WAL, and so what a power loss can take back with
// synchronous=NORMAL, to about 4 MiB of commits.
constexpr int kAutoCheckpointFrames = 1000;
// Closing a connection does not checkpoint (a `lockkit run` would pay two more fdatasyncs for
// every run), unless the WAL has grown past this: each process that opens the file first
// re-reads the whole WAL to rebuild its index, 3-5 µs a frame. Cutting the WAL costs two
// fdatasyncs (~1-2 ms), so for processes that come and go (3 frames per `lockkit run`) the
// sum of both per process is least at about this length (a cut every 16th run, 24 frames
// re-read on average); it leaves at most ~200 KiB behind. A connection's first commit that
// finds the WAL that long cuts it too: processes that never close their connections (killed,
// or exiting with a kept-alive lease's store still referenced) would otherwise let it grow to
// the 1000-frame checkpoint, and every new process re-read it all.
constexpr int kShortWalFrames = 48;

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

}  // namespace

unsigned fork_generation() noexcept {
  static const bool registered = [] {
    return ::pthread_atfork(&fork_prepare, &fork_parent, &fork_child) == 0;
  }();
  (void)registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

namespace {

// Threads inside SQLite through lockkit count once per thread, however deeply nested.
thread_local int t_inside_depth = 0;

void leave_sqlite() noexcept {
  ForkGate& g = fork_gate();
  if (g.active.fetch_sub(1) == 1 && g.forking.load() != 0) g.active.notify_all();
}

}  // namespace

InsideSqlite::InsideSqlite() noexcept {
  if (t_inside_depth++ > 0) return;
  ForkGate& g = fork_gate();
  for (;;) {
    g.active.fetch_add(1);
    if (g.forking.load() == 0) return;
    leave_sqlite();
    g.forking.wait(1);
  }
}

InsideSqlite::~InsideSqlite() {
  if (--t_inside_depth == 0) leave_sqlite();
}

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

namespace {

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

// Waits for another connection's write lock: short sleeps first (transactions here last tens
// of microseconds), never more than 2 ms at a time, and never past the call's deadline.
int busy_handler(void* arg, int count) noexcept {
  auto* conn = static_cast<SqliteConnection*>(arg);
  auto now = steady_clock::now();
  auto deadline = conn->busy_deadline;
  if (now >= deadline) return 0;
  steady_clock::duration delay = std::chrono::microseconds(20) * (1 << std::min(count, 7));
  delay = std::min<steady_clock::duration>({delay, std::chrono::milliseconds(2), deadline - now});
  std::this_thread::sleep_for(delay);
  return 1;
}

// Copies the WAL into the database and cuts it to zero bytes: a new process's first open
// rebuilds the WAL's index from the frames, and learns nothing from it about which were copied
// already, so without the cut the WAL would never start over. Best effort and without waiting
// (the busy handler gives up at once): if another connection is busy, the WAL stays for the
// next attempt or the auto-checkpoint.
void cut_wal(SqliteConnection& conn, const char* name) noexcept {
  const auto deadline = conn.busy_deadline;
  conn.busy_deadline = steady_clock::now();
  if (sqlite3_wal_checkpoint_v2(conn.db.get(), name, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                nullptr) == SQLITE_OK) {
    conn.wal_frames = 0;
  }
  conn.busy_deadline = deadline;
}

// After each commit in WAL mode: remembers the WAL's length for the close, cuts a long WAL at
// the connection's first commit, and checkpoints once it is very long (what
// sqlite3_wal_autocheckpoint would do; that one cannot say how long). The commit is done
// whatever happens here: a failed checkpoint is retried by a later one.
int wal_hook(void* arg, sqlite3* db, const char* name, int frames) noexcept {
  auto* conn = static_cast<SqliteConnection*>(arg);
  const bool first = !conn->committed;
  conn->committed = true;
  conn->wal_frames = frames;
  if (frames >= kAutoCheckpointFrames) {
    (void)sqlite3_wal_checkpoint(db, name);
  } else if (first && frames >= kShortWalFrames) {
    cut_wal(*conn, name);
  }
  return SQLITE_OK;
}

// Checks what `SqlitePool`'s constructor promises to check, before anything else happens.
SqliteOptions checked(SqliteOptions options) {
  if (options.path.empty()) throw std::invalid_argument("path: must not be empty");
  if (options.path == ":memory:") {
    throw std::invalid_argument("path: \"" + options.path +
                                "\" is not a file; in-memory databases cannot share locks");
  }
  if (options.busy_timeout < milliseconds(1) || options.busy_timeout > kMaxBusyTimeout) {
    throw std::invalid_argument("busy_timeout: must be 1ms..10m, got " +
                                format_duration(options.busy_timeout));
  }
  if (options.max_idle_connections < 1 || options.max_idle_connections > 1024) {
    throw std::invalid_argument("max_idle_connections: must be 1..1024, got " +
                                std::to_string(options.max_idle_connections));
  }
  if (sqlite3_threadsafe() == 0) {
    // Connections of one store run on many threads at once; that needs SQLite's locking.
    throw BackendError(
        "sqlite", ErrorKind::kUnsupported,
        "this SQLite library was built without thread support (SQLITE_THREADSAFE=0)");
  }
  (void)fork_generation();  // installs the fork handlers before any connection exists
  return options;
}

}  // namespace

StoreFailure classify(sqlite3* db, int rc, milliseconds busy_timeout, const std::string& path,
                      bool maybe_applied) {
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

SqliteConnection::~SqliteConnection() {
  if (fork_generation != sqlite::fork_generation()) {
    // Inherited through fork(): never touched in the child. Closing would run SQLite's
    // clean-up on its stale lock records (and could block on a mutex held at the fork).
    for (auto& stmt : stmts) (void)stmt.release();
    (void)db.release();
    return;
  }
  if (!db && !registered) return;
  InsideSqlite inside;
  for (auto& stmt : stmts) stmt.reset();
  if (db && wal_frames >= kShortWalFrames) cut_wal(*this, "main");
  db.reset();
  if (registered) unregister_connection(file);
}

bool SqliteSession::wait_busy(int attempt) noexcept {
  return busy_handler(conn_.get(), attempt) != 0;
}

void SqliteSession::raise(const StoreFailure& f) {
  if (f.broken()) broken_ = true;  // closed when the call ends, never pooled
  if (f.maybe_applied()) {
    throw BackendError("sqlite", ErrorKind::kInDoubt,
                       context() + f.what() +
                           " (the lease may exist until its TTL unless released with its "
                           "token; through a LockApi, release was attempted)");
  }
  throw BackendError("sqlite", f.kind(), context() + f.what());
}

SqlitePool::SqlitePool(SqliteOptions options)
    : options_(checked(std::move(options))), file_(options_) {
  // File system checks only: SQLite is first called by the first operation, so that a LockApi
  // made but not used before fork() works in the child. Gated: it holds a mutex a forked child
  // would otherwise inherit locked.
  InsideSqlite inside;
  file_.ensure_file("open", {});
}

void SqlitePool::claim(std::string_view op, std::string_view key) {
  unsigned gen = fork_generation();
  std::lock_guard<std::mutex> guard(mu_);
  if (!home_generation_) {
    home_generation_ = gen;
  } else if (*home_generation_ != gen) {
    file_.fail(op, key, ErrorKind::kUnsupported,
               "this LockApi was used before fork(), and SQLite connections do not survive fork(): "
               "in the child, use a LockApi created (but not used) before the fork, or exec a new "
               "program");
  }
}

std::unique_ptr<SqliteConnection> SqlitePool::open_connection(std::string_view op,
                                                              std::string_view key) {
  for (int attempt = 0;; ++attempt) {
    file_.ensure_file(op, key);
    auto conn = std::make_unique<SqliteConnection>();
    conn->busy_deadline = steady_clock::now() + options_.busy_timeout;
    conn->fork_generation = fork_generation();
    // The same file before and after the open: then the connection has that file open.
    std::optional<FileId> before = file_id(file_.path());
    if (!before) {
      if (attempt < 3) continue;  // deleted since ensure_file
      file_.fail(op, key, ErrorKind::kUnavailable, "the file is being replaced repeatedly");
    }
    if (!register_connection(*before)) {
      file_.fail(op, key, ErrorKind::kUnsupported,
                 "this process was forked while its parent had this file open through lockkit; "
                 "SQLite's record of the parent's locks on it was inherited without the locks, so "
                 "it cannot be used safely here: open it in a process that has not inherited it "
                 "(before the parent's first use, or after exec)");
    }
    conn->file = *before;
    conn->registered = true;
    sqlite3* raw = nullptr;
    // No SQLITE_OPEN_CREATE: ensure_file made it with our mode; vanished since is retried.
    int rc = sqlite3_open_v2(file_.path().c_str(), &raw,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    conn->db.reset(raw);
    std::optional<FileId> after = file_id(file_.path());
    if (before != after) {
      if (attempt < 3) continue;  // replaced while we opened it
      file_.fail(op, key, ErrorKind::kUnavailable, "the file is being replaced repeatedly");
    }
    if (rc != SQLITE_OK) {
      StoreFailure f = classify(raw, rc, options_.busy_timeout, file_.path());
      file_.fail(op, key, f.kind(), f.what());
    }
    sqlite3_extended_result_codes(raw, 1);
    if (sqlite3_db_readonly(raw, "main") == 1) {
      file_.fail(op, key, ErrorKind::kIo,
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
    // stays bounded by the checkpoints in wal_hook and ~SqliteConnection.
    int no_checkpoint = 0;
    if (sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &no_checkpoint) != SQLITE_OK ||
        no_checkpoint != 1) {
      file_.fail(op, key, ErrorKind::kUnsupported,
                 "this SQLite cannot skip the checkpoint at close");
    }
    sqlite3_wal_hook(raw, &wal_hook, conn.get());
    SqliteSession s(*this, op, key, std::move(conn));
    s.exec_sql(options_.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // After a checkpoint, the next writer starts the WAL over from its beginning and cuts a
    // longer file to this size. The limit stays above what the 1000-frame auto-checkpoint lets
    // the WAL reach: regrowing the file from zero after each checkpoint would cost a quarter
    // more per acquisition. (Only the frames since the restart are re-read at open.)
    s.exec_sql("PRAGMA journal_size_limit=16777216");
    file_.set_up(s);
    return s.take();
  }
}

std::unique_ptr<SqliteConnection> SqlitePool::checkout(std::string_view op, std::string_view key) {
  // One statx per call: a connection to a file that was deleted or replaced would keep
  // holding leases nobody else can see.
  std::optional<FileId> current = file_id(file_.path());
  std::vector<std::unique_ptr<SqliteConnection>> stale;
  std::unique_ptr<SqliteConnection> found;
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

void SqlitePool::checkin(std::unique_ptr<SqliteConnection> conn) noexcept {
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (idle_.size() < options_.max_idle_connections) {
      idle_.push_back(std::move(conn));
      return;
    }
  }
  conn.reset();  // closed outside the mutex
}

}  // namespace lockkit::detail::sqlite
