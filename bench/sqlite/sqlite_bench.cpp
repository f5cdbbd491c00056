// SPDX-License-Identifier: MIT
// sqlite:// acquire+release pairs/s in 1 and N processes, side by side with a minimal raw-SQLite
// loop issuing the same transactions, and the ratio. A benchmark, not a test.
//   sqlite_bench [--seconds 2] [--repeat 3] [--procs 1,4] [--dir /tmp]
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/lockkit.hpp"
#include "lockkit/sqlite.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

enum class Mode { kLockkit, kRawStock, kRawSameHandler };

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "sqlite_bench: %s\n", what.c_str());
  std::exit(1);
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// The busy handler lockkit uses (src/sqlite), copied so the raw loop can be run with it too.
struct BusyState {
  Clock::time_point since;
};
int busy_handler(void* arg, int count) {
  auto* st = static_cast<BusyState*>(arg);
  auto now = Clock::now();
  if (count == 0) st->since = now;
  auto deadline = st->since + 2s;
  if (now >= deadline) return 0;
  Clock::duration delay = std::chrono::microseconds(20) * (1 << std::min(count, 7));
  delay = std::min<Clock::duration>({delay, std::chrono::milliseconds(2), deadline - now});
  std::this_thread::sleep_for(delay);
  return 1;
}

// The same statements as src/sqlite/sqlite_lock_api.cpp, without the library around them.
class RawLoop {
 public:
  RawLoop(const std::string& path, bool same_handler) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      die("raw open failed");
    }
    if (same_handler) {
      sqlite3_busy_handler(db_, &busy_handler, &busy_);
    } else {
      sqlite3_busy_timeout(db_, 2000);
    }
    exec("PRAGMA synchronous=NORMAL");
    begin_ = prepare("BEGIN IMMEDIATE");
    commit_ = prepare("COMMIT");
    acquire_ = prepare(
        "INSERT INTO lockkit_leases (key, token, fence, expires_at) "
        "VALUES (?1, ?2, (SELECT value + 1 FROM lockkit_meta WHERE name = 'fence'), ?3) "
        "ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, "
        "expires_at = excluded.expires_at WHERE lockkit_leases.expires_at <= ?4 "
        "RETURNING fence");
    set_fence_ = prepare("UPDATE lockkit_meta SET value = ?1 WHERE name = 'fence'");
    sweep_ = prepare("DELETE FROM lockkit_leases WHERE expires_at <= ?1");
    release_ = prepare(
        "DELETE FROM lockkit_leases WHERE key = ?1 AND (token = ?2 OR expires_at <= ?3) "
        "RETURNING token = ?2 AND expires_at > ?3");
  }
  RawLoop(const RawLoop&) = delete;
  RawLoop& operator=(const RawLoop&) = delete;
  ~RawLoop() {
    for (auto* s : {begin_, commit_, acquire_, set_fence_, sweep_, release_}) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  // One acquire (a BEGIN IMMEDIATE transaction) and one release (a single DELETE).
  void pair(const std::string& key, std::uint64_t n) {
    char token[33];
    std::snprintf(token, sizeof token, "%032llx", static_cast<unsigned long long>(n));
    step_done(begin_);
    std::int64_t now = now_ns();
    sqlite3_bind_blob(acquire_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(acquire_, 2, token, 32, SQLITE_STATIC);
    sqlite3_bind_int64(acquire_, 3, now + 30'000'000'000);
    sqlite3_bind_int64(acquire_, 4, now);
    if (sqlite3_step(acquire_) != SQLITE_ROW) die("raw acquire failed");
    std::int64_t fence = sqlite3_column_int64(acquire_, 0);
    step_done(acquire_);
    sqlite3_bind_int64(set_fence_, 1, fence);
    step_done(set_fence_);
    if (fence % 64 == 0) {
      sqlite3_bind_int64(sweep_, 1, now);
      step_done(sweep_);
    }
    step_done(commit_);
    sqlite3_bind_blob(release_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(release_, 2, token, 32, SQLITE_STATIC);
    sqlite3_bind_int64(release_, 3, now_ns());
    if (sqlite3_step(release_) != SQLITE_ROW || sqlite3_column_int(release_, 0) != 1) {
      die("raw release failed");
    }
    step_done(release_);
  }

 private:
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) die(sqlite3_errmsg(db_));
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
      die(std::string("prepare: ") + sqlite3_errmsg(db_));
    }
    return s;
  }
  void step_done(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) die(std::string("step: ") + sqlite3_errmsg(db_));
    sqlite3_reset(s);
  }

  sqlite3* db_ = nullptr;
  BusyState busy_;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* acquire_ = nullptr;
  sqlite3_stmt* set_fence_ = nullptr;
  sqlite3_stmt* sweep_ = nullptr;
  sqlite3_stmt* release_ = nullptr;
};

// Runs one process's loop from `start_ns` for `seconds`; returns its pairs.
std::uint64_t run_worker(Mode mode, const std::string& path, int index, std::int64_t start_ns,
                         double seconds) {
  const std::string key = "bench/process/" + std::to_string(index);
  std::unique_ptr<RawLoop> raw;
  std::unique_ptr<lockkit::LockApi> api;
  if (mode == Mode::kLockkit) {
    api = lockkit::make_sqlite_lock_api({.path = path});
  } else {
    raw = std::make_unique<RawLoop>(path, mode == Mode::kRawSameHandler);
  }
  while (now_ns() < start_ns) std::this_thread::sleep_for(100us);
  const std::int64_t end_ns = start_ns + static_cast<std::int64_t>(seconds * 1e9);
  std::uint64_t pairs = 0;
  while (now_ns() < end_ns) {
    if (api) {
      auto lock = api->try_acquire(key, 30s);
      if (!lock || !lock->release()) die("lockkit pair failed");
    } else {
      raw->pair(key, pairs);
    }
    ++pairs;
  }
  return pairs;
}

// Runs `procs` processes of `mode` at once; returns pairs per second summed over them.
double run(Mode mode, const std::string& path, int procs, double seconds) {
  const std::int64_t start_ns = now_ns() + 300'000'000;  // everyone opens first, then starts
  std::vector<std::pair<pid_t, int>> children;
  for (int i = 0; i < procs; ++i) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe");
    pid_t pid = ::fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      ::close(fds[0]);
      std::uint64_t pairs = 0;
      try {
        pairs = run_worker(mode, path, i, start_ns, seconds);
      } catch (const std::exception& e) {
        die(e.what());
      }
      if (::write(fds[1], &pairs, sizeof pairs) != sizeof pairs) ::_exit(1);
      ::_exit(0);
    }
    ::close(fds[1]);
    children.emplace_back(pid, fds[0]);
  }
  std::uint64_t total = 0;
  for (auto [pid, fd] : children) {
    std::uint64_t pairs = 0;
    if (::read(fd, &pairs, sizeof pairs) != sizeof pairs) die("a worker failed");
    ::close(fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    total += pairs;
  }
  return static_cast<double>(total) / seconds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  int repeat = 3;
  std::vector<int> procs_list = {1, 4};
  std::string dir = std::filesystem::temp_directory_path().string();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--seconds") {
      seconds = std::stod(value());
    } else if (arg == "--repeat") {
      repeat = std::stoi(value());
    } else if (arg == "--dir") {
      dir = value();
    } else if (arg == "--procs") {
      procs_list.clear();
      std::string list = value();
      for (std::size_t pos = 0; pos <= list.size();) {
        std::size_t comma = list.find(',', pos);
        procs_list.push_back(std::stoi(list.substr(pos, comma - pos)));
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
    } else {
      die("usage: sqlite_bench [--seconds S] [--repeat N] [--procs 1,4] [--dir DIR]");
    }
  }
  std::string work = dir + "/lockkit-sqlite-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(work);
  const std::string path = work + "/locks.db";
  { auto setup = lockkit::make_sqlite_lock_api({.path = path}); }  // creates the schema

  std::printf("sqlite acquire+release pairs/s (median of %d runs of %.1fs, file %s, SQLite %s)\n",
              repeat, seconds, path.c_str(), sqlite3_libversion());
  std::printf(
      "| processes | raw, sqlite3_busy_timeout | raw, lockkit's busy handler | lockkit |"
      " lockkit / raw (stock) | lockkit / raw (same handler) |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (int procs : procs_list) {
    std::vector<double> results[3];
    for (int r = 0; r < repeat; ++r) {
      // Interleaved, so that load from elsewhere on the machine hits all three alike.
      for (Mode m : {Mode::kRawStock, Mode::kRawSameHandler, Mode::kLockkit}) {
        results[static_cast<int>(m)].push_back(run(m, path, procs, seconds));
      }
    }
    double lockkit = median(results[static_cast<int>(Mode::kLockkit)]);
    double stock = median(results[static_cast<int>(Mode::kRawStock)]);
    double same = median(results[static_cast<int>(Mode::kRawSameHandler)]);
    std::printf("| %d | %.0f | %.0f | %.0f | %.2fx | %.2fx |\n", procs, stock, same, lockkit,
                lockkit / stock, lockkit / same);
    std::fflush(stdout);
  }
  std::filesystem::remove_all(work);
  return 0;
}
