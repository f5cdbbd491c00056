// SPDX-License-Identifier: MIT
// What only sqlite:// has: URLs, file creation and modes, bad files, busy timeout, reclaiming
// expired rows, fences across reopening and reboots.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/observer.hpp"
#include "lockkit/open.hpp"
#include "lockkit/sqlite.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// A raw connection to a test database, for looking under the hood and for holding locks.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      throw std::runtime_error("cannot open " + path);
    }
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() { sqlite3_close_v2(db_); }

  // Runs `sql`; returns SQLite's result code.
  int exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }

  // Returns the first column of the first row of `sql` as text ("" if none).
  std::string query(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("prepare failed: ") + sqlite3_errmsg(db_));
    }
    std::string out;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return out;
  }

  long count(const std::string& table) { return std::stol(query("SELECT count(*) FROM " + table)); }

 private:
  sqlite3* db_ = nullptr;
};

// Returns the BackendError thrown by `fn`; fails the test if it throws nothing or something else.
template <class F>
BackendError backend_error(F&& fn) {
  try {
    fn();
  } catch (const BackendError& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected BackendError, got: " << e.what();
    return BackendError("none", ErrorKind::kProtocol, "wrong exception");
  }
  ADD_FAILURE() << "expected BackendError, nothing was thrown";
  return BackendError("none", ErrorKind::kProtocol, "nothing thrown");
}

// Opens `path` and makes one call: the database is opened by the first call, not the factory.
void open_and_use(const std::string& path) {
  (void)make_sqlite_lock_api({.path = path})->status("probe");
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

// --- URLs ---------------------------------------------------------------------------------

TEST(SqliteUrl, ParsesAbsoluteAndRelativePathsAndOptions) {
  auto abs = parse_sqlite_url("sqlite:///var/lib/app/locks.db");
  EXPECT_EQ(abs.path, "/var/lib/app/locks.db");
  EXPECT_EQ(abs.busy_timeout, 2s);
  EXPECT_FALSE(abs.full_sync);
  EXPECT_EQ(parse_sqlite_url("sqlite:/var/locks.db").path, "/var/locks.db");
  EXPECT_EQ(parse_sqlite_url("sqlite:locks.db").path, "locks.db");
  EXPECT_EQ(parse_sqlite_url("sqlite:state/locks.db").path, "state/locks.db");
  EXPECT_EQ(parse_sqlite_url("sqlite://localhost/tmp/l.db").path, "/tmp/l.db");
  EXPECT_EQ(parse_sqlite_url("sqlite:///tmp/my%20locks.db").path, "/tmp/my locks.db");
  auto opts = parse_sqlite_url("SQLITE:///tmp/l.db?busy_timeout=250ms&sync=full&max_idle=2");
  EXPECT_EQ(opts.busy_timeout, 250ms);
  EXPECT_TRUE(opts.full_sync);
  EXPECT_EQ(opts.max_idle_connections, 2u);
}

TEST(SqliteUrl, RejectsMalformedUrlsByName) {
  struct Bad {
    const char* url;
    const char* mentions;
  };
  for (Bad bad : {
           Bad{"sqlite:", "missing file path"},
           Bad{"sqlite://", "missing file path"},
           Bad{"sqlite:///", "missing file path"},
           Bad{"sqlite://var/locks.db", "host position"},
           Bad{"sqlite://host:5/locks.db", "host position"},
           Bad{"sqlite://user:secret@/tmp/l.db", "no user"},
           Bad{"sqlite:///tmp/dir/", "directory"},
           Bad{"sqlite::memory:", "in-memory"},
           Bad{"sqlite:///tmp/l.db?busy_timeout=0ms", "busy_timeout"},
           Bad{"sqlite:///tmp/l.db?busy_timeout=11m", "busy_timeout"},
           Bad{"sqlite:///tmp/l.db?busy_timeout=2", "busy_timeout"},
           Bad{"sqlite:///tmp/l.db?busy_timeout=-1s", "busy_timeout"},
           Bad{"sqlite:///tmp/l.db?sync=maybe", "sync"},
           Bad{"sqlite:///tmp/l.db?max_idle=0", "max_idle"},
           Bad{"sqlite:///tmp/l.db?timeout=2s", "unknown option \"timeout\""},
           Bad{"sqlite:///tmp/l.db#frag", "fragment"},
           Bad{"redis://localhost/0", "not a sqlite"},
       }) {
    try {
      (void)parse_sqlite_url(bad.url);
      ADD_FAILURE() << bad.url << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr(bad.mentions)) << bad.url;
    }
  }
  try {
    (void)parse_sqlite_url("sqlite://user:hunter2@/tmp/l.db");
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), ::testing::Not(HasSubstr("hunter2")));
  }
}

TEST(SqliteUrl, OpenKnowsTheSchemeWithoutRegistration) {
  auto schemes = registered_schemes();
  EXPECT_THAT(schemes, ::testing::Contains("sqlite"));
  TempDir dir;
  auto api = lockkit::open("sqlite://" + dir.file("locks.db") + "?busy_timeout=500ms");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->backend(), "sqlite");
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_GE(lock->fence(), 1u);
  EXPECT_THROW((void)lockkit::open("sqlite://relative/x.db"), std::invalid_argument);
}

TEST(SqliteUrl, RelativePathIsResolvedOnceAtOpen) {
  TempDir dir;
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  std::filesystem::create_directory("sub");
  auto api = make_sqlite_lock_api({.path = "sub/locks.db"});
  std::filesystem::current_path(cwd);
  EXPECT_TRUE(std::filesystem::exists(dir.file("sub/locks.db")));
  auto lock = api->try_acquire("k", 10s);  // new connections still find the file
  EXPECT_TRUE(lock);
  // The same file as its absolute path names: a lock taken through one is held in the other.
  EXPECT_FALSE(make_sqlite_lock_api({.path = dir.file("sub/locks.db")})->try_acquire("k", 10s));
}

TEST(SqliteOptions, BadOptionsAreRejectedByName) {
  TempDir dir;
  auto make = [&](SqliteOptions o) { (void)make_sqlite_lock_api(std::move(o)); };
  try {
    make({.path = ""});
    ADD_FAILURE() << "empty path accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("path"));
  }
  try {
    make({.path = dir.file("l.db"), .busy_timeout = 0ms});
    ADD_FAILURE() << "busy_timeout 0 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("busy_timeout"));
  }
  EXPECT_THROW(make({.path = dir.file("l.db"), .max_idle_connections = 0}), std::invalid_argument);
  EXPECT_THROW(make({.path = ":memory:"}), std::invalid_argument);
}

// --- Files --------------------------------------------------------------------------------

TEST(SqliteFile, CreatesFilePrivately) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  mode_t old_umask = ::umask(0);  // the modes must not depend on a lax umask
  auto api = make_sqlite_lock_api({.path = path});
  ::umask(old_umask);
  EXPECT_EQ(mode_of(path), 0600u);
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(mode_of(path + "-wal"), 0600u);
  RawDb raw(path);
  EXPECT_EQ(raw.query("PRAGMA journal_mode"), "wal");
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(SqliteFile, OnlyTheDefaultLocationGetsItsDirectoriesCreated) {
  TempDir dir;
  ScopedEnv state("XDG_STATE_HOME", dir.file("state"));
  const std::string path = dir.file("state/lockkit/locks.db");
  EXPECT_EQ(default_sqlite_path(), path);
  mode_t old_umask = ::umask(0);
  auto api = lockkit::open("sqlite://" + path);
  ::umask(old_umask);
  EXPECT_EQ(mode_of(dir.file("state")), 0700u);
  EXPECT_EQ(mode_of(dir.file("state/lockkit")), 0700u);
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_TRUE(api->try_acquire("k", 10s));
  // Anywhere else a missing directory is a typo until proven otherwise: two processes with
  // two spellings must not get two lock files.
  const std::string typo = dir.file("no/such/dir/locks.db");
  auto e = backend_error([&] { (void)lockkit::open("sqlite://" + typo); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_THAT(e.what(), HasSubstr("directory \"" + dir.file("no/such/dir") + "\" does not exist"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("no")));
}

TEST(SqliteFile, GroupOrWorldWritableFilesAreRefusedUnlessShared) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  open_and_use(path);
  for (mode_t mode : {0660, 0620, 0666, 0606}) {
    ::chmod(path.c_str(), mode);
    auto e = backend_error([&] { (void)lockkit::open("sqlite://" + path)->status("k"); });
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_THAT(e.what(), HasSubstr(path));
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode));
    EXPECT_THAT(e.what(), HasSubstr(text));
    EXPECT_THAT(e.what(), HasSubstr(mode & S_IWOTH ? "world-writable" : "share=group"));
  }
  ::chmod(path.c_str(), 0600);
  // The -wal and -shm count too (SQLite gives new ones the database's mode).
  for (const char* suffix : {"-wal", "-shm"}) {
    { std::ofstream(path + suffix, std::ios::app); }
    ::chmod((path + suffix).c_str(), 0666);
    EXPECT_THAT(backend_error([&] { (void)lockkit::open("sqlite://" + path)->status("k"); }).what(),
                HasSubstr(path + suffix + "\" is world-writable"));
    ::chmod((path + suffix).c_str(), 0600);
  }
}

TEST(SqliteFile, GroupSharingCreates0660AndAcceptsGroupWritable) {
  TempDir dir;
  const std::string path = dir.file("shared.db");
  mode_t old_umask = ::umask(022);  // a usual umask must not take the group's write bit
  auto api = lockkit::open("sqlite://" + path + "?share=group");
  ::umask(old_umask);
  EXPECT_EQ(mode_of(path), 0660u);
  ASSERT_TRUE(api->try_acquire("k", 10s));
  EXPECT_EQ(mode_of(path + "-wal"), 0660u);
  EXPECT_EQ(mode_of(path + "-shm"), 0660u);
  // World-writable stays refused, shared or not.
  ::chmod(path.c_str(), 0666);
  EXPECT_THAT(backend_error([&] {
                (void)lockkit::open("sqlite://" + path + "?share=group")->status("k");
              }).what(),
              HasSubstr("world-writable"));
  EXPECT_THROW((void)lockkit::open("sqlite://" + path + "?share=everyone"), std::invalid_argument);
}

TEST(SqliteFile, HardLinkedDatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  const std::string link = dir.file("other-name.db");
  auto api = lockkit::open("sqlite://" + path);
  auto held = api->try_acquire("k", 30s);
  ASSERT_TRUE(held);
  ASSERT_EQ(::link(path.c_str(), link.c_str()), 0);
  // Through the second name SQLite would use other-name.db-wal/-shm: a second lock table.
  auto e = backend_error([&] {
    auto other = lockkit::open("sqlite://" + link);
    if (other->try_acquire("k", 30s)) ADD_FAILURE() << "two holders of one key";
  });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_THAT(e.what(), HasSubstr(link));
  EXPECT_THAT(e.what(), HasSubstr("2 hard links"));
  // A symbolic link is one file under one name: fine.
  const std::string sym = dir.file("symlink.db");
  ::unlink(link.c_str());
  ASSERT_EQ(::symlink(path.c_str(), sym.c_str()), 0);
  EXPECT_FALSE(lockkit::open("sqlite://" + sym)->try_acquire("k", 30s));
}

TEST(SqliteFile, ClosingLeavesAShortWalAndCutsALongOne) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  std::uint64_t fence = 0;
  {
    auto api = make_sqlite_lock_api({.path = path});
    for (int i = 0; i < 3; ++i) {
      auto lock = api->try_acquire("k", 10s);
      ASSERT_TRUE(lock);
      fence = lock->fence();
    }
  }
  // A short WAL is left as it is: no checkpoint (and no fdatasync) when the last connection
  // closes. The next open reads its commits from the WAL.
  ASSERT_GT(std::filesystem::file_size(path + "-wal"), 0u);
  {
    auto api = make_sqlite_lock_api({.path = path});
    auto lock = api->try_acquire("k", 10s);
    ASSERT_TRUE(lock);
    EXPECT_EQ(lock->fence(), fence + 1) << "the fence counter in the WAL was not seen";
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(api->try_acquire("k" + std::to_string(i), 10s));
  }
  // 150 frames and more: closing copies them into the database and cuts the WAL (kept, never
  // deleted by name), so that first opens never re-read a long one.
  ASSERT_TRUE(std::filesystem::exists(path + "-wal"));
  EXPECT_EQ(std::filesystem::file_size(path + "-wal"), 0u);
  RawDb raw(path);
  EXPECT_EQ(raw.query("SELECT value FROM lockkit_meta WHERE name = 'fence'"),
            std::to_string(fence + 51));
}

TEST(SqliteFile, FirstCommitCutsALongWalThatNoCloseCut) {
  // Processes that never close their connections (killed, or exiting while a kept-alive lease
  // still references the store) leave the WAL as it is: the next process's first commit cuts
  // it once it is long, so that no new process has to re-read up to 1000 frames at open.
  TempDir dir;
  const std::string path = dir.file("locks.db");
  std::vector<std::shared_ptr<LockApi>> never_closed;  // one connection each, open throughout
  std::uintmax_t largest = 0;
  for (int i = 0; i < 80; ++i) {
    never_closed.push_back(make_sqlite_lock_api({.path = path}));
    ASSERT_TRUE(never_closed.back()->try_acquire("k", 10s));  // 3 frames: acquire, release
    largest = std::max(largest, std::filesystem::file_size(path + "-wal"));
  }
  // 240 frames were written; cut at the first commit that found 48 or more.
  EXPECT_LE(largest, 51u * 4120u + 32u);
}

TEST(SqliteFile, WalStaysBoundedInALongRunningProcess) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  auto reader = make_sqlite_lock_api({.path = path});  // a second connection, open throughout
  (void)reader->status("k");
  std::uintmax_t largest = 0;
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(api->try_acquire("k", 10s));
    if (i % 50 == 0) largest = std::max(largest, std::filesystem::file_size(path + "-wal"));
  }
  // About 3 frames of 4 KiB + 24 bytes per pair; the auto-checkpoint at 1000 frames starts the
  // WAL over, so 6000 frames' worth never accumulates.
  EXPECT_LE(largest, 1100u * 4120u + 32u);
  EXPECT_LE(std::filesystem::file_size(path + "-wal"), 1100u * 4120u + 32u);
}

TEST(SqliteFile, ExistingFileModeIsLeftAlone) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE users (name TEXT)");
  }
  ::chmod(path.c_str(), 0640);
  auto api = make_sqlite_lock_api({.path = path});
  EXPECT_EQ(mode_of(path), 0640u);
}

TEST(SqliteFile, NotADatabaseIsReportedWithPath) {
  TempDir dir;
  const std::string path = dir.file("notes.txt");
  {
    std::ofstream out(path);
    for (int i = 0; i < 200; ++i) out << "these are my notes, not a database\n";
  }
  auto e = backend_error([&] { open_and_use(path); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_STREQ(e.backend(), "sqlite");
  EXPECT_THAT(e.what(), HasSubstr(path));
  EXPECT_THAT(e.what(), HasSubstr("not a database"));
}

TEST(SqliteFile, ForeignSchemaIsRejectedAndLeftUntouched) {
  TempDir dir;
  const std::string path = dir.file("app.db");
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("CREATE TABLE lockkit_leases (id INTEGER PRIMARY KEY, owner TEXT);"
                       "INSERT INTO lockkit_leases (owner) VALUES ('alice')"),
              SQLITE_OK);
  }
  auto e = backend_error([&] { open_and_use(path); });
  EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
  EXPECT_THAT(e.what(), HasSubstr(path));
  EXPECT_THAT(e.what(), HasSubstr("foreign schema"));
  EXPECT_THAT(e.what(), HasSubstr("lockkit_leases"));
  RawDb raw(path);
  EXPECT_EQ(raw.query("PRAGMA journal_mode"), "delete") << "switched a foreign file to WAL";
  EXPECT_EQ(raw.query("SELECT owner FROM lockkit_leases"), "alice");
  EXPECT_EQ(raw.count("sqlite_schema WHERE name = 'lockkit_meta'"), 0);
}

TEST(SqliteFile, HalfASchemaOrAViewIsForeign) {
  TempDir dir;
  const std::string half = dir.file("half.db");
  {
    RawDb raw(half);
    raw.exec(
        "CREATE TABLE lockkit_meta (name TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID");
  }
  EXPECT_THAT(backend_error([&] { open_and_use(half); }).what(), HasSubstr("only one of"));
  const std::string view = dir.file("view.db");
  {
    RawDb raw(view);
    raw.exec("CREATE VIEW lockkit_leases AS SELECT 1");
  }
  EXPECT_THAT(backend_error([&] { open_and_use(view); }).what(), HasSubstr("is a view"));
}

TEST(SqliteFile, NewerSchemaVersionIsRejected) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  open_and_use(path);
  {
    RawDb raw(path);
    raw.exec("UPDATE lockkit_meta SET value = 7 WHERE name = 'schema_version'");
  }
  auto e = backend_error([&] { open_and_use(path); });
  EXPECT_THAT(e.what(), HasSubstr("schema version 7"));
  EXPECT_THAT(e.what(), HasSubstr("newer lockkit"));
}

TEST(SqliteFile, MissingFenceCounterIsReported) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  open_and_use(path);
  {
    RawDb raw(path);
    raw.exec("DELETE FROM lockkit_meta WHERE name = 'fence'");
  }
  EXPECT_THAT(backend_error([&] { open_and_use(path); }).what(), HasSubstr("no fence counter"));
}

TEST(SqliteFile, UnrelatedTablesAreLeftAlone) {
  TempDir dir;
  const std::string path = dir.file("app.db");
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('alice'), ('bob')");
  }
  {
    auto api = make_sqlite_lock_api({.path = path});
    auto lock = api->try_acquire("k", 10s);
    ASSERT_TRUE(lock);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.count("users"), 2);
  EXPECT_EQ(raw.count("sqlite_schema WHERE type = 'table'"), 3);  // users + our two
}

TEST(SqliteFile, ParentThatIsNotADirectoryIsReported) {
  TempDir dir;
  { std::ofstream(dir.file("plain-file")) << "x"; }
  const std::string path = dir.file("plain-file/sub/locks.db");
  auto e = backend_error([&] { (void)make_sqlite_lock_api({.path = path}); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_THAT(e.what(), HasSubstr(path));
  EXPECT_THAT(e.what(), HasSubstr("Not a directory"));
}

TEST(SqliteFile, DirectoryIsNotADatabase) {
  TempDir dir;
  std::filesystem::create_directory(dir.file("d.db"));
  auto e = backend_error([&] { (void)make_sqlite_lock_api({.path = dir.file("d.db")}); });
  EXPECT_THAT(e.what(), HasSubstr("is a directory"));
}

TEST(SqliteFile, FifoOrDeviceIsRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo.db").c_str(), 0600), 0);
  auto e = backend_error([&] { (void)make_sqlite_lock_api({.path = dir.file("fifo.db")}); });
  EXPECT_THAT(e.what(), HasSubstr("not a regular file"));
  EXPECT_THAT(backend_error([] { (void)make_sqlite_lock_api({.path = "/dev/null"}); }).what(),
              HasSubstr("not a regular file"));
}

TEST(SqliteFile, ReadOnlyFileSystemIsReported) {
  // /proc refuses new files even for root.
  auto e = backend_error([] { (void)make_sqlite_lock_api({.path = "/proc/lockkit-test.db"}); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_THAT(e.what(), HasSubstr("/proc/lockkit-test.db"));
  EXPECT_THAT(e.what(), HasSubstr("cannot create file"));
}

// Runs `fn` as an unprivileged user (nobody) when running as root, so that file modes apply;
// returns what `fn` returned (a message) or "crash".
template <class F>
std::string as_unprivileged(F&& fn) {
  if (::geteuid() != 0) return fn();
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string out;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      out = "setuid failed";
    } else {
      out = fn();
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? out : "crash";
}

std::string open_error(const std::string& path) {
  try {
    open_and_use(path);
    return "opened";
  } catch (const BackendError& e) {
    return std::string(to_string(e.kind())) + "|" + e.what();
  } catch (const std::exception& e) {
    return std::string("other|") + e.what();
  }
}

TEST(SqliteFile, ReadOnlyDirectoryIsReported) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  std::filesystem::create_directory(dir.file("ro"));
  ::chmod(dir.file("ro").c_str(), 0555);
  const std::string path = dir.file("ro/locks.db");
  std::string out = as_unprivileged([&] { return open_error(path); });
  EXPECT_THAT(out, HasSubstr("io|"));
  EXPECT_THAT(out, HasSubstr(path));
  EXPECT_THAT(out, HasSubstr("Permission denied"));
}

TEST(SqliteFile, ReadOnlyDatabaseFileIsReported) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0777);  // the directory is writable: only the file is not
  const std::string path = dir.file("locks.db");
  open_and_use(path);
  ::chmod(path.c_str(), 0444);
  std::string out = as_unprivileged([&] { return open_error(path); });
  EXPECT_THAT(out, HasSubstr("io|"));
  EXPECT_THAT(out, HasSubstr(path));
  EXPECT_THAT(out, HasSubstr("read-only"));
}

void remove_database(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

TEST(SqliteFile, DeletedFileIsNoticedAtTheNextCall) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  auto held = api->try_acquire("k", 30s);
  ASSERT_TRUE(held);
  remove_database(path);  // a cleaner, or a user "resetting" the locks
  auto newcomer = make_sqlite_lock_api({.path = path});  // as a new process would
  auto taken = newcomer->try_acquire("k", 30s);
  ASSERT_TRUE(taken) << "the new file starts empty";
  // Without the check, the old connections would keep renewing a lease nobody else can see.
  EXPECT_FALSE(held->extend(30s)) << "renewed a lease in a deleted file";
  EXPECT_FALSE(api->try_acquire("k", 30s)) << "kept using the deleted file";
  auto info = api->status("k");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, taken->fence());
}

TEST(SqliteFile, DeletedFileIsMadeAnewByTheNextCall) {
  TempDir dir;
  std::filesystem::create_directory(dir.file("sub"));
  const std::string path = dir.file("sub/locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  { ASSERT_TRUE(api->try_acquire("k", 30s)); }
  remove_database(path);
  auto lock = api->try_acquire("k", 30s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(mode_of(path), 0600u);
  {
    RawDb raw(path);
    EXPECT_EQ(raw.count("lockkit_leases"), 1);
  }
  // Its directory deleted too: an error naming it, not a new directory.
  std::filesystem::remove_all(dir.file("sub"));
  EXPECT_THAT(backend_error([&] { (void)api->try_acquire("k", 30s); }).what(),
              HasSubstr("does not exist"));
}

// --- Busy timeout -------------------------------------------------------------------------

TEST(SqliteBusy, HeldWriteLockGivesTimeoutErrorWithinBusyTimeout) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = lockkit::open("sqlite://" + path + "?busy_timeout=300ms");  // the URL's option counts
  auto held = api->try_acquire("held", 30s);
  ASSERT_TRUE(held);
  RawDb blocker(path);
  ASSERT_EQ(blocker.exec("BEGIN IMMEDIATE"), SQLITE_OK);

  auto start = std::chrono::steady_clock::now();
  auto e = backend_error([&] { (void)api->try_acquire("k", 10s); });
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
  EXPECT_TRUE(e.retryable());
  EXPECT_THAT(e.what(), HasSubstr(path));
  EXPECT_THAT(e.what(), HasSubstr("try_acquire \"k\""));
  EXPECT_THAT(e.what(), HasSubstr("busy_timeout 300ms"));
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 300ms + 2s);

  EXPECT_EQ(backend_error([&] { (void)held->extend(30s); }).kind(), ErrorKind::kTimeout);
  EXPECT_EQ(backend_error([&] { (void)held->release(); }).kind(), ErrorKind::kTimeout);
  // WAL: readers are not blocked by a writer.
  auto info = api->status("held");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, held->fence());

  ASSERT_EQ(blocker.exec("ROLLBACK"), SQLITE_OK);
  EXPECT_TRUE(held->release()) << "a failed release must leave the lock releasable";
  EXPECT_TRUE(api->try_acquire("k", 10s)) << "the connection is usable after a timeout";
}

// --- Fences and reclaiming ----------------------------------------------------------------

TEST(SqliteFence, IncreasesAcrossReopeningTheFile) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  std::uint64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    auto api = make_sqlite_lock_api({.path = path});
    for (const char* key : {"a", "b", "a"}) {
      auto lock = api->try_acquire(key, 10s);
      ASSERT_TRUE(lock);
      EXPECT_GT(lock->fence(), last);
      last = lock->fence();
    }
  }
}

std::string this_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string boot;
  std::getline(in, boot);
  return boot;
}

std::int64_t clock_ns(clockid_t id) {
  struct timespec ts {};
  ::clock_gettime(id, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

constexpr const char* kOtherBoot = "0badb007-0000-4000-8000-00000000f00d";

TEST(SqliteFence, RebootKeepsLiveLeasesAndJumpsFencesOnce) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  auto stale = api->try_acquire("stale", 1h);
  auto live = api->try_acquire("live", 1h);
  ASSERT_TRUE(stale && live);
  const std::uint64_t before = live->fence();
  {
    // Pretend both were written in an earlier boot (whose monotonic clock ran much further):
    // `stale`'s wall-clock bound has passed, `live`'s has not.
    RawDb raw(path);
    std::int64_t wall = clock_ns(CLOCK_REALTIME);
    ASSERT_EQ(raw.exec("UPDATE lockkit_meta SET value = '" + std::string(kOtherBoot) +
                       "' WHERE name = 'boots';"
                       "UPDATE lockkit_leases SET expires_mono = 9000000000000000000, boot = '" +
                       kOtherBoot + "', expires_wall = CASE key WHEN CAST('stale' AS BLOB) THEN " +
                       std::to_string(wall - 1) + " ELSE " +
                       std::to_string(wall + 3'600'000'000'000) + " END"),
              SQLITE_OK);
  }
  auto after_reboot = make_sqlite_lock_api({.path = path});
  EXPECT_FALSE(after_reboot->status("stale")) << "a lease past its wall-clock bound survived";
  EXPECT_TRUE(after_reboot->status("live")) << "a lease within its wall-clock bound was dropped";
  EXPECT_FALSE(after_reboot->try_acquire("live", 10s));
  auto next = after_reboot->try_acquire("stale", 10s);
  ASSERT_TRUE(next);
  EXPECT_GT(next->fence(), before + (std::uint64_t{1} << 32) - 1);
  EXPECT_FALSE(stale->release()) << "the pre-reboot token still owned the key";
  // The boot id is remembered: opening again from either boot id jumps no further.
  auto again = make_sqlite_lock_api({.path = path});
  auto later = again->try_acquire("other", 10s);
  ASSERT_TRUE(later);
  EXPECT_LT(later->fence(), next->fence() + 10);
  RawDb raw(path);
  EXPECT_EQ(raw.query("SELECT value FROM lockkit_meta WHERE name = 'boots'"),
            std::string(kOtherBoot) + " " + this_boot_id());
}

TEST(SqliteFence, SameBootIdWithARestartedClockFallsBackToTheWallClock) {
  // A fixed boot id that survives reboots (some containers): a monotonic expiry further ahead
  // than any lease can last comes from a clock that restarted.
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  auto old = api->try_acquire("k", 1h);
  ASSERT_TRUE(old);
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("UPDATE lockkit_leases SET expires_mono = 9000000000000000000, "
                       "expires_wall = " +
                       std::to_string(clock_ns(CLOCK_REALTIME) - 1)),
              SQLITE_OK);
  }
  EXPECT_TRUE(api->try_acquire("k", 10s));
}

TEST(SqliteSchema, Version1FilesAreMigratedKeepingLiveLeases) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  const std::int64_t mono = clock_ns(CLOCK_MONOTONIC);
  {
    RawDb raw(path);
    ASSERT_EQ(
        raw.exec("PRAGMA journal_mode=WAL;"
                 "CREATE TABLE lockkit_meta (name TEXT PRIMARY KEY NOT NULL, value NOT NULL) "
                 "WITHOUT ROWID;"
                 "CREATE TABLE lockkit_leases (key BLOB PRIMARY KEY NOT NULL, token BLOB NOT "
                 "NULL, fence INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;"
                 "INSERT INTO lockkit_meta (name, value) VALUES ('schema_version', 1), "
                 "('fence', 7), ('boot_id', '" +
                 this_boot_id() +
                 "');"
                 "INSERT INTO lockkit_leases VALUES (CAST('live' AS BLOB), CAST('t' AS BLOB), "
                 "7, " +
                 std::to_string(mono + 60'000'000'000) +
                 "), (CAST('gone' AS BLOB), CAST('u' AS BLOB), 6, " + std::to_string(mono - 1) +
                 ")"),
        SQLITE_OK);
  }
  auto api = make_sqlite_lock_api({.path = path});
  auto info = api->status("live");
  ASSERT_TRUE(info) << "a live version-1 lease was lost in the migration";
  EXPECT_EQ(info->fence, 7u);
  EXPECT_LE(info->remaining, 60s);
  EXPECT_GT(info->remaining, 50s);
  EXPECT_FALSE(api->try_acquire("live", 10s));
  auto lock = api->try_acquire("gone", 10s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->fence(), 8u) << "same boot: no fence jump";
  RawDb raw(path);
  EXPECT_EQ(raw.query("SELECT value FROM lockkit_meta WHERE name = 'schema_version'"), "2");
  // A version-1 process still holding the file open now fails instead of misreading rows.
  EXPECT_NE(raw.exec("UPDATE lockkit_leases SET expires_at = 0"), SQLITE_OK);
}

TEST(SqliteSchema, Version1FileFromAnEarlierBootDropsItsLeases) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  {
    RawDb raw(path);
    ASSERT_EQ(
        raw.exec("PRAGMA journal_mode=WAL;"
                 "CREATE TABLE lockkit_meta (name TEXT PRIMARY KEY NOT NULL, value NOT NULL) "
                 "WITHOUT ROWID;"
                 "CREATE TABLE lockkit_leases (key BLOB PRIMARY KEY NOT NULL, token BLOB NOT "
                 "NULL, fence INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;"
                 "INSERT INTO lockkit_meta (name, value) VALUES ('schema_version', 1), "
                 "('fence', 7), ('boot_id', '" +
                 std::string(kOtherBoot) +
                 "');"
                 "INSERT INTO lockkit_leases VALUES (CAST('k' AS BLOB), CAST('t' AS BLOB), 7, "
                 "9000000000000000000)"),
        SQLITE_OK);
  }
  // Last written long before this boot began: its holders died with their boot.
  for (const char* suffix : {"", "-wal"}) {
    struct timespec times[2] = {{946684800, 0}, {946684800, 0}};  // 2000-01-01
    ::utimensat(AT_FDCWD, (path + suffix).c_str(), times, 0);
  }
  auto api = make_sqlite_lock_api({.path = path});
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), std::uint64_t{1} << 32);
}

TEST(SqliteReclaim, ReleasedRowsAreDeletedAtOnce) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  for (int i = 0; i < 100; ++i) {
    auto lock = api->try_acquire("key/" + std::to_string(i), 10s);
    ASSERT_TRUE(lock);
  }  // each released by its destructor
  RawDb raw(path);
  EXPECT_EQ(raw.count("lockkit_leases"), 0);
}

TEST(SqliteReclaim, ExpiredRowsDoNotAccumulateWithDistinctKeys) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  RawDb raw(path);
  const std::string padding(200, 'p');  // big rows, so that growth would show in the page count
  long max_rows = 0;
  std::vector<Lock> abandoned;  // never released while the loop runs: only expiry reclaims them
  constexpr int kBatch = 32;
  for (int i = 0; i < 3000; ++i) {
    auto lock = api->try_acquire(padding + std::to_string(i), 1ms);
    ASSERT_TRUE(lock);
    abandoned.push_back(std::move(*lock));
    if (i % kBatch == kBatch - 1) {
      std::this_thread::sleep_for(2ms);  // everything so far has expired
      max_rows = std::max(max_rows, raw.count("lockkit_leases"));
    }
  }
  // At a sweep at most one batch is live; at most 63 more rows come before the next sweep.
  EXPECT_LE(max_rows, kBatch + 64);
  EXPECT_LT(std::stol(raw.query("PRAGMA page_count")), 150)
      << "3000 rows of 200+ bytes would need ~170 pages";
}

TEST(SqliteReclaim, ExpiredLeasesAreNotShown) {
  TempDir dir;
  auto api = make_sqlite_lock_api({.path = dir.file("locks.db")});
  auto lock = api->try_acquire("short", 50ms);
  auto other = api->try_acquire("long", 30s);
  ASSERT_TRUE(lock && other);
  ASSERT_TRUE(api->status("short"));
  std::this_thread::sleep_for(60ms);
  EXPECT_FALSE(api->status("short"));
  auto listed = api->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "long");
  EXPECT_GT(listed[0].remaining, 29s);
  EXPECT_FALSE(lock->release()) << "an expired lease was reported as released";
}

TEST(SqliteKeys, ListHandlesPrefixesWithHighBytes) {
  TempDir dir;
  auto api = make_sqlite_lock_api({.path = dir.file("locks.db")});
  std::string p("a\xff", 2);
  auto l1 = api->try_acquire(p, 10s);
  auto l2 = api->try_acquire(p + std::string("\x00", 1), 10s);
  auto l3 = api->try_acquire(p + "\xff\xff", 10s);
  auto l4 = api->try_acquire("b", 10s);
  auto l5 = api->try_acquire("a", 10s);
  ASSERT_TRUE(l1 && l2 && l3 && l4 && l5);
  auto listed = api->list(p);
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].key, p);
  EXPECT_EQ(listed[1].key, p + std::string("\x00", 1));
  EXPECT_EQ(listed[2].key, p + "\xff\xff");
  EXPECT_EQ(api->list().size(), 5u);
}

TEST(SqliteThreads, ShareOneApiThroughASmallPool) {
  TempDir dir;
  // Fewer idle slots than threads: connections are opened and closed while others run.
  std::shared_ptr<LockApi> api =
      make_sqlite_lock_api({.path = dir.file("locks.db"), .max_idle_connections = 2});
  constexpr int kThreads = 8;
  constexpr int kRounds = 30;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> errors{0};
  long counter = 0;  // plain: guarded only by the lock under test
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kRounds; ++i) {
          auto own = api->try_acquire("own/" + std::to_string(t), 10s);
          if (!own) errors.fetch_add(1);
          auto lock = api->acquire("shared", 10s,
                                   {.max_wait = 30s, .initial_delay = 1ms, .max_delay = 2ms});
          if (!lock) {
            errors.fetch_add(1);
            continue;
          }
          if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
          ++counter;
          inside.fetch_sub(1);
          if (!lock->release()) errors.fetch_add(1);
        }
      } catch (const std::exception&) {
        errors.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(counter, kThreads * kRounds);
}

// --- Observer -----------------------------------------------------------------------------

// Keeps every event it is given, with its backend and key copied.
class Recorder final : public LockObserver {
 public:
  struct Seen {
    LockEvent event;
    std::string backend;
    std::string key;
  };
  void on_event(const LockEvent& event) override {
    std::lock_guard<std::mutex> guard(mu_);
    seen_.push_back({event, std::string(event.backend), std::string(event.key)});
  }
  std::vector<Seen> take() {
    std::lock_guard<std::mutex> guard(mu_);
    return std::exchange(seen_, {});
  }

 private:
  std::mutex mu_;
  std::vector<Seen> seen_;
};

TEST(SqliteObserver, SeesAcquireReleaseExtendAndErrorsNamedSqlite) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path, .busy_timeout = 100ms});
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);

  auto lock = api->try_acquire("obs/k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_FALSE(api->try_acquire("obs/k", 10s));
  EXPECT_TRUE(lock->extend(20s));
  EXPECT_TRUE(lock->release());
  auto again = api->acquire("obs/k", 10s, {.max_wait = 1s, .initial_delay = 1ms, .max_delay = 2ms});
  ASSERT_TRUE(again);
  {
    // Another connection holds the write lock past busy_timeout: the acquire fails.
    RawDb holder(path);
    ASSERT_EQ(holder.exec("BEGIN IMMEDIATE"), SQLITE_OK);
    EXPECT_THROW((void)api->try_acquire("obs/other", 10s), BackendError);
    holder.exec("ROLLBACK");
  }

  auto seen = recorder->take();
  for (const auto& s : seen) {
    EXPECT_EQ(s.backend, "sqlite");
    EXPECT_EQ(s.key, s.event.outcome == LockOutcome::kError ? "obs/other" : "obs/k");
  }
  auto find = [&](LockOperation op, LockOutcome outcome) -> const Recorder::Seen* {
    for (const auto& s : seen) {
      if (s.event.operation == op && s.event.outcome == outcome) return &s;
    }
    ADD_FAILURE() << "no " << to_string(op) << " event with outcome " << to_string(outcome);
    return nullptr;
  };
  if (auto* granted = find(LockOperation::kTryAcquire, LockOutcome::kOk)) {
    EXPECT_EQ(granted->event.fence, lock->fence());
    EXPECT_GT(granted->event.latency.count(), 0);
  }
  (void)find(LockOperation::kTryAcquire, LockOutcome::kBusy);
  (void)find(LockOperation::kExtend, LockOutcome::kOk);
  if (auto* released = find(LockOperation::kRelease, LockOutcome::kOk)) {
    EXPECT_GT(released->event.held.count(), 0);
  }
  if (auto* acquired = find(LockOperation::kAcquire, LockOutcome::kOk)) {
    EXPECT_GE(acquired->event.attempts, 1u);
    EXPECT_EQ(acquired->event.fence, again->fence());
  }
  if (auto* failed = find(LockOperation::kTryAcquire, LockOutcome::kError)) {
    EXPECT_EQ(failed->event.error, ErrorKind::kTimeout);
  }
}

}  // namespace
}  // namespace lockkit::testing
