// SPDX-License-Identifier: MIT
// The sqlite:// file: path resolution and file-system checks (modes, links, creation), the boot
// id and time namespace offsets, and the schema (check, creation, migration, boot ids).
#include "sqlite/sqlite_schema.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/escape.hpp"
#include "core/url.hpp"
#include "lockkit/errors.hpp"
#include "sqlite/sqlite_connection.hpp"

namespace lockkit {
namespace detail::sqlite {
namespace {

// 2: leases carry the boot id of their writer and a wall-clock bound (expires_wall), and the
// expiry column is expires_mono. Files of version 1 are migrated on first open.
constexpr std::int64_t kSchemaVersion = 2;
// When the file is first used under a boot id it has not seen, the fence counter jumps by this
// much: far more than the commits a power loss can take back with synchronous=NORMAL (those
// since the last checkpoint).
constexpr std::int64_t kRebootFenceJump = std::int64_t{1} << 32;
// Boot ids remembered in the file; an id seen again causes no new jump.
constexpr std::size_t kMaxBoots = 16;
constexpr const char* kBootIdPath = "/proc/sys/kernel/random/boot_id";

std::int64_t clock_ns(clockid_t id) {
  struct timespec ts {};
  ::clock_gettime(id, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

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

std::string quoted(std::string_view key) {
  return "\"" + escape_key(key) + "\"";
}

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

struct SchemaInfo {
  int tables = 0;  // ours present: 0 or 2
  std::int64_t version = 0;
};

// Returns which of our tables exist and the schema version; throws for a foreign schema.
SchemaInfo check_schema(SqliteSession& s) {
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

std::optional<std::string> meta_text(SqliteSession& s, const char* name) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(s.db(), "SELECT value FROM lockkit_meta WHERE name = ?1", -1, &raw,
                              nullptr);
  if (rc != SQLITE_OK) s.fail(rc);
  StmtPtr stmt(raw);
  sqlite3_bind_text(raw, 1, name, -1, SQLITE_STATIC);
  if (!s.step(raw)) return std::nullopt;
  return std::string(column_blob(raw, 0));
}

void set_meta_text(SqliteSession& s, const char* name, const std::string& value) {
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

// True if both tables are exactly as this version creates them, with a fence counter (one
// statement); then `boots` is the boot id list, if any. False means: run check_schema.
bool fast_schema_check(SqliteSession& s, std::optional<std::string>& boots) {
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

}  // namespace

SqliteFile::SqliteFile(const SqliteOptions& options) : share_with_group_(options.share_with_group) {
  std::filesystem::path file = std::filesystem::absolute(options.path).lexically_normal();
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
}

std::string SqliteFile::context(std::string_view op, std::string_view key) const {
  std::string what(op);
  if (!key.empty()) what += " " + quoted(key) + ":";
  return what + " \"" + path_ + "\": ";
}

void SqliteFile::fail(std::string_view op, std::string_view key, ErrorKind kind,
                      const std::string& cause) const {
  throw BackendError("sqlite", kind, context(op, key) + cause);
}

Now SqliteFile::clocks() const noexcept {
  return {clock_ns(CLOCK_MONOTONIC) - offsets_.monotonic, clock_ns(CLOCK_REALTIME)};
}

void SqliteFile::bind_clocks(sqlite3_stmt* stmt, const Now& now) const {
  sqlite3_bind_text(stmt, 10, boot_.data(), static_cast<int>(boot_.size()), SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 11, now.mono);
  sqlite3_bind_int64(stmt, 12, now.mono + to_ns(kMaxLease));
  sqlite3_bind_int64(stmt, 13, now.wall);
}

void SqliteFile::check_file(std::string_view op, std::string_view key, const std::string& name,
                            const struct stat& st) const {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (st.st_mode & S_IWOTH) {
    fail(op, key, ErrorKind::kIo,
         "\"" + name + "\" is world-writable (mode " + mode +
             "): any local user could forge or delete leases; chmod o-w it (only sharing within "
             "one group is possible, with ?share=group)");
  }
  if ((st.st_mode & S_IWGRP) && !share_with_group_) {
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

void SqliteFile::ensure_file(std::string_view op, std::string_view key) const {
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
  const mode_t mode = share_with_group_ ? 0660 : 0600;
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0 && errno != EEXIST) {
    fail(op, key, ErrorKind::kIo, std::string("cannot create file: ") + std::strerror(errno));
  }
  if (fd >= 0) {
    (void)::fchmod(fd, mode);  // whatever the umask: the group must be able to write
    ::close(fd);
  }
}

bool SqliteFile::untouched_this_boot() const {
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

void SqliteFile::migrate_from_1(SqliteSession& s) const {
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

void SqliteFile::set_up(SqliteSession& s) const {
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

}  // namespace detail::sqlite

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

}  // namespace lockkit
