// SPDX-License-Identifier: MIT
// sqlite:// acquire+release pairs/s in 1 and N processes, side by side with a minimal raw-SQLite
// loop issuing the same transactions, and the ratio. A benchmark, not a test.
//   sqlite_bench [--seconds 2] [--repeat 3] [--procs 1,4] [--dir /tmp]
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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

// The same statements as src/sqlite/sqlite_store.cpp, without the library around them.
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
#define DEAD                                                                     \
  "(CASE WHEN lockkit_leases.boot = ?10 AND lockkit_leases.expires_mono <= ?12 " \
  "THEN lockkit_leases.expires_mono <= ?11 ELSE lockkit_leases.expires_wall <= ?13 END)"
    acquire_ = prepare(
        "INSERT INTO lockkit_leases (key, token, fence, expires_mono, boot, expires_wall) "
        "VALUES (?1, ?2, (SELECT value + 1 FROM lockkit_meta WHERE name = 'fence'), ?3, ?10, ?4) "
        "ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, "
        "expires_mono = excluded.expires_mono, boot = excluded.boot, "
        "expires_wall = excluded.expires_wall WHERE " DEAD " RETURNING fence");
    set_fence_ = prepare("UPDATE lockkit_meta SET value = ?1 WHERE name = 'fence'");
    sweep_ = prepare("DELETE FROM lockkit_leases WHERE " DEAD);
    release_ = prepare("DELETE FROM lockkit_leases WHERE key = ?1 AND (token = ?2 OR " DEAD
                       ") RETURNING token = ?2 AND NOT " DEAD);
#undef DEAD
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::getline(in, boot_);
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
    sqlite3_bind_int64(acquire_, 4, wall_ns() + 150'000'000'000);
    bind_clocks(acquire_, now);
    if (sqlite3_step(acquire_) != SQLITE_ROW) die("raw acquire failed");
    std::int64_t fence = sqlite3_column_int64(acquire_, 0);
    step_done(acquire_);
    sqlite3_bind_int64(set_fence_, 1, fence);
    step_done(set_fence_);
    if (fence % 64 == 0) {
      bind_clocks(sweep_, now);
      step_done(sweep_);
    }
    step_done(commit_);
    sqlite3_bind_blob(release_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(release_, 2, token, 32, SQLITE_STATIC);
    bind_clocks(release_, now_ns());
    if (sqlite3_step(release_) != SQLITE_ROW || sqlite3_column_int(release_, 0) != 1) {
      die("raw release failed");
    }
    step_done(release_);
  }

 private:
  // The library's clock parameters: boot id, monotonic now, furthest live expiry, wall now.
  void bind_clocks(sqlite3_stmt* s, std::int64_t now) {
    sqlite3_bind_text(s, 10, boot_.data(), static_cast<int>(boot_.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, now);
    sqlite3_bind_int64(s, 12, now + 605'000'000'000'000);
    sqlite3_bind_int64(s, 13, wall_ns());
  }
  static std::int64_t wall_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
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
  std::string boot_;  // this boot's id, as the library records it
};

// What one worker process reports back.
struct WorkerReport {
  std::uint64_t pairs = 0;
  double p99_us = 0;  // 99th percentile of one pair's duration in this process
};

// Runs one process's loop from `start_ns` for `seconds`.
WorkerReport run_worker(Mode mode, const std::string& path, int index, std::int64_t start_ns,
                        double seconds) {
  const std::string key = "bench/process/" + std::to_string(index);
  std::unique_ptr<RawLoop> raw;
  std::shared_ptr<lockkit::LockApi> api;
  if (mode == Mode::kLockkit) {
    api = lockkit::make_sqlite_lock_api({.path = path});
  } else {
    raw = std::make_unique<RawLoop>(path, mode == Mode::kRawSameHandler);
  }
  while (now_ns() < start_ns) std::this_thread::sleep_for(100us);
  const std::int64_t end_ns = start_ns + static_cast<std::int64_t>(seconds * 1e9);
  std::uint64_t pairs = 0;
  std::vector<std::int64_t> pair_ns;
  pair_ns.reserve(1 << 20);
  for (std::int64_t t = now_ns(); t < end_ns;) {
    if (api) {
      auto lock = api->try_acquire(key, 30s);
      if (!lock || !lock->release()) die("lockkit pair failed");
    } else {
      raw->pair(key, pairs);
    }
    ++pairs;
    std::int64_t done = now_ns();
    pair_ns.push_back(done - t);
    t = done;
  }
  std::sort(pair_ns.begin(), pair_ns.end());
  double p99 = pair_ns.empty() ? 0 : static_cast<double>(pair_ns[pair_ns.size() * 99 / 100]) / 1e3;
  return WorkerReport{pairs, p99};
}

struct Result {
  double pairs_per_s = 0;
  double cpu_us_per_pair = 0;  // user + system time of the workers, per pair
  double p99_us = 0;           // the worst process's 99th percentile pair duration
};

// Runs `procs` processes of `mode` at once; returns pairs per second summed over them.
Result run(Mode mode, const std::string& path, int procs, double seconds) {
  const std::int64_t start_ns = now_ns() + 300'000'000;  // everyone opens first, then starts
  std::vector<std::pair<pid_t, int>> children;
  for (int i = 0; i < procs; ++i) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe");
    pid_t pid = ::fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      ::close(fds[0]);
      WorkerReport report;
      try {
        report = run_worker(mode, path, i, start_ns, seconds);
      } catch (const std::exception& e) {
        die(e.what());
      }
      if (::write(fds[1], &report, sizeof report) != sizeof report) ::_exit(1);
      ::_exit(0);
    }
    ::close(fds[1]);
    children.emplace_back(pid, fds[0]);
  }
  std::uint64_t total = 0;
  double cpu_us = 0;
  double p99 = 0;
  for (auto [pid, fd] : children) {
    WorkerReport report;
    if (::read(fd, &report, sizeof report) != sizeof report) die("a worker failed");
    p99 = std::max(p99, report.p99_us);
    ::close(fd);
    int status = 0;
    struct rusage usage {};
    ::wait4(pid, &status, 0, &usage);
    cpu_us += static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 +
              static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
    total += report.pairs;
  }
  // CPU time includes opening (a few hundred microseconds per process): negligible here.
  return Result{static_cast<double>(total) / seconds, cpu_us / static_cast<double>(total), p99};
}

// One process opening the file, doing one pair and closing it, as `lockkit run` does: returns
// microseconds per round (median of `rounds`).
double cold_round_us(Mode mode, const std::string& path, int rounds) {
  std::vector<double> us;
  for (int i = 0; i < rounds; ++i) {
    auto start = Clock::now();
    if (mode == Mode::kLockkit) {
      auto api = lockkit::make_sqlite_lock_api({.path = path});
      auto lock = api->try_acquire("bench/cold", 30s);
      if (!lock || !lock->release()) die("lockkit cold pair failed");
    } else {
      RawLoop raw(path, mode == Mode::kRawSameHandler);
      raw.pair("bench/cold", static_cast<std::uint64_t>(i));
    }
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
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
  // The first call creates the schema.
  { (void)lockkit::make_sqlite_lock_api({.path = path})->status("bench/setup"); }

  double load[3] = {0, 0, 0};
  (void)::getloadavg(load, 3);
  std::printf(
      "sqlite acquire+release pairs/s, median of %d interleaved runs of %.1fs (file %s, SQLite "
      "%s, %u CPUs, load average %.1f)\n",
      repeat, seconds, path.c_str(), sqlite3_libversion(), std::thread::hardware_concurrency(),
      load[0]);
  std::printf(
      "| processes | raw, sqlite3_busy_timeout | raw, lockkit's busy handler | lockkit | "
      "lockkit / raw (stock) | lockkit / raw (same handler) | CPU us/pair raw (same) / lockkit "
      "| p99 us/pair raw (stock) / raw (same) / lockkit |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int procs : procs_list) {
    std::vector<double> rate[3];
    std::vector<double> cpu[3];
    std::vector<double> p99[3];
    for (int r = 0; r < repeat; ++r) {
      // Interleaved, so that load from elsewhere on the machine hits all three alike.
      for (Mode m : {Mode::kRawStock, Mode::kRawSameHandler, Mode::kLockkit}) {
        Result res = run(m, path, procs, seconds);
        rate[static_cast<int>(m)].push_back(res.pairs_per_s);
        cpu[static_cast<int>(m)].push_back(res.cpu_us_per_pair);
        p99[static_cast<int>(m)].push_back(res.p99_us);
      }
    }
    auto med = [&](std::vector<double>* v, Mode m) { return median(v[static_cast<int>(m)]); };
    double lockkit = med(rate, Mode::kLockkit);
    double stock = med(rate, Mode::kRawStock);
    double same = med(rate, Mode::kRawSameHandler);
    std::printf("| %d | %.0f | %.0f | %.0f | %.2fx | %.2fx | %.1f / %.1f | %.0f / %.0f / %.0f |\n",
                procs, stock, same, lockkit, lockkit / stock, lockkit / same,
                med(cpu, Mode::kRawSameHandler), med(cpu, Mode::kLockkit),
                med(p99, Mode::kRawStock), med(p99, Mode::kRawSameHandler),
                med(p99, Mode::kLockkit));
    std::fflush(stdout);
  }
  std::vector<double> cold[3];
  for (int r = 0; r < repeat; ++r) {
    for (Mode m : {Mode::kRawStock, Mode::kLockkit}) {
      cold[static_cast<int>(m)].push_back(cold_round_us(m, path, 200));
    }
  }
  double raw_cold = median(cold[static_cast<int>(Mode::kRawStock)]);
  double lockkit_cold = median(cold[static_cast<int>(Mode::kLockkit)]);
  std::printf(
      "\nopen + acquire + release + close in one process (what each `lockkit run` pays), median "
      "us\n| raw (open, prepare, same statements, close) | lockkit (open with schema check, "
      "pair, close) | lockkit / raw time |\n|---:|---:|---:|\n| %.0f | %.0f | %.2fx |\n",
      raw_cold, lockkit_cold, lockkit_cold / raw_cold);
  std::filesystem::remove_all(work);
  return 0;
}
