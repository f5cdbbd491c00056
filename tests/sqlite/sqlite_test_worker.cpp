// SPDX-License-Identifier: MIT
// A separate process for sqlite_process_test: contends for a key through lockkit::open, or
// takes a lock and holds it until killed.
//   sqlite_test_worker contend <url> <dir> <rounds> <key>   exit 0 ok, 2 overlap, 3 fence, 4 busy
//   sqlite_test_worker hold <url> <key> <ttl_ms>            prints the fence, then waits
//   sqlite_test_worker open <url>          waits for stdin to close, then opens the file and takes
//                                          and releases one lock (exit 0) or prints why not
//   sqlite_test_worker stall <path>        writes a lease row inside an open write transaction,
//                                          prints "ready", then waits (to be killed)
//   sqlite_test_worker try <url> <key> <ttl_ms>   tries once; prints "got <fence>" or "busy",
//                                          or "error: <what>" (exit 1) if it throws
//   sqlite_test_worker take <url> <key> <ttl_ms>  like try, but exits leaving the lease held
// Prefixes that change the process's view of the host first (root only), then run the rest:
//   sqlite_test_worker timens <secs> ...   in a new time namespace, CLOCK_MONOTONIC + secs
//   sqlite_test_worker bootid <file> ...   in a new mount namespace, with <file> bind-mounted
//                                          over /proc/sys/kernel/random/boot_id
// A prefix that cannot be set up exits 77 with the reason on stderr.
#include <fcntl.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "lockkit/lockkit.hpp"

namespace {

using namespace std::chrono_literals;

long read_number(const std::string& path) {
  std::ifstream in(path);
  long n = 0;
  in >> n;
  return n;
}

void write_number(const std::string& path, long n) {
  std::ofstream out(path, std::ios::trunc);
  out << n << "\n";
}

int contend(const std::string& url, const std::string& dir, int rounds, const std::string& key) {
  auto api = lockkit::open(url);
  // Start barrier: say we are ready, then wait until the parent closes our stdin.
  std::printf("ready\n");
  std::fflush(stdout);
  char c;
  while (::read(STDIN_FILENO, &c, 1) > 0) {
  }
  bool overlap = false;
  bool fence_regressed = false;
  long refused = 0;  // proof of contention: attempts that found the key held
  for (int i = 0; i < rounds; ++i) {
    std::optional<lockkit::Lock> lock;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!(lock = api->try_acquire(key, 10s))) {
      if (std::chrono::steady_clock::now() > deadline) return 4;
      ++refused;
      std::this_thread::sleep_for(50us);
    }
    // Overlap detector: a marker file that only one holder at a time may create.
    int fd = ::open((dir + "/inside").c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) overlap = true;
    // A fenced resource: rejects fences not above the highest it has seen.
    long last_fence = read_number(dir + "/fence");
    if (static_cast<long>(lock->fence()) <= last_fence) fence_regressed = true;
    write_number(dir + "/fence", static_cast<long>(lock->fence()));
    // Read-modify-write with a pause in the middle: a lost update shows as a short count.
    long counter = read_number(dir + "/counter");
    std::this_thread::sleep_for(100us);
    write_number(dir + "/counter", counter + 1);
    if (fd >= 0) {
      ::close(fd);
      ::unlink((dir + "/inside").c_str());
    }
    if (!lock->release()) return 5;
  }
  std::printf("refused %ld\n", refused);
  std::fflush(stdout);
  return overlap ? 2 : fence_regressed ? 3 : 0;
}

int hold(const std::string& url, const std::string& key, long ttl_ms) {
  auto api = lockkit::open(url);
  auto lock = api->try_acquire(key, std::chrono::milliseconds(ttl_ms));
  if (!lock) return 4;
  std::printf("%llu\n", static_cast<unsigned long long>(lock->fence()));
  std::fflush(stdout);
  for (;;) ::pause();
}

int open_once(const std::string& url) {
  char c;
  while (::read(STDIN_FILENO, &c, 1) > 0) {
  }
  auto api = lockkit::open(url);
  auto lock = api->acquire("k", 10s, {.max_wait = 30s, .initial_delay = 1ms, .max_delay = 10ms});
  return lock && lock->release() ? 0 : 4;
}

int try_once(const std::string& url, const std::string& key, long ttl_ms, bool keep) {
  std::optional<lockkit::Lock> lock;
  try {
    auto api = lockkit::open(url);
    lock = api->try_acquire(key, std::chrono::milliseconds(ttl_ms));
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    std::fflush(stdout);
    return 1;
  }
  if (lock) {
    std::printf("got %llu\n", static_cast<unsigned long long>(lock->fence()));
    std::fflush(stdout);
    if (keep) ::_exit(0);  // no destructor: the lease stays until its TTL
    (void)lock->release();
  } else {
    std::printf("busy\n");
  }
  std::fflush(stdout);
  return 0;
}

int setup_failed(const char* what) {
  std::fprintf(stderr, "sqlite_test_worker: cannot %s: %s\n", what, std::strerror(errno));
  return 77;
}

int stall(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) return 1;
  if (sqlite3_exec(db,
                   "BEGIN IMMEDIATE; INSERT INTO lockkit_leases (key, token, fence, expires_mono, "
                   "boot, expires_wall) VALUES (CAST('k' AS BLOB), CAST('t' AS BLOB), 1, "
                   "9000000000000000000, '', 9000000000000000000)",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) ::pause();
}

int run(int argc, char** argv);

// Runs the rest of the command line in a new time namespace whose CLOCK_MONOTONIC reads `secs`
// seconds ahead of the host's. Only children enter the namespace, hence the fork.
int in_time_namespace(const std::string& secs, int argc, char** argv) {
  if (::unshare(CLONE_NEWTIME) != 0) return setup_failed("unshare(CLONE_NEWTIME)");
  {
    std::ofstream offsets("/proc/self/timens_offsets");
    offsets << "monotonic " << secs << " 0\n";
    offsets.flush();
    if (!offsets) return setup_failed("write /proc/self/timens_offsets");
  }
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) return setup_failed("fork");
  if (pid == 0) ::_exit(run(argc, argv));
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return setup_failed("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs the rest of the command line with `file` seen as this boot's id.
int with_boot_id(const std::string& file, int argc, char** argv) {
  if (::unshare(CLONE_NEWNS) != 0) return setup_failed("unshare(CLONE_NEWNS)");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return setup_failed("make / private");
  }
  if (::mount(file.c_str(), "/proc/sys/kernel/random/boot_id", nullptr, MS_BIND, nullptr) != 0) {
    return setup_failed("bind-mount over /proc/sys/kernel/random/boot_id");
  }
  return run(argc, argv);
}

int run(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "timens" && argc > 3) return in_time_namespace(argv[2], argc - 2, argv + 2);
    if (mode == "bootid" && argc > 3) return with_boot_id(argv[2], argc - 2, argv + 2);
    if ((mode == "try" || mode == "take") && argc == 5) {
      return try_once(argv[2], argv[3], std::stol(argv[4]), mode == "take");
    }
    if (mode == "contend" && argc == 6)
      return contend(argv[2], argv[3], std::stoi(argv[4]), argv[5]);
    if (mode == "open" && argc == 3) return open_once(argv[2]);
    if (mode == "stall" && argc == 3) return stall(argv[2]);
    if (mode == "hold" && argc == 5) return hold(argv[2], argv[3], std::stol(argv[4]));
    std::fprintf(stderr, "usage: sqlite_test_worker contend|hold ...\n");
    return 64;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sqlite_test_worker: %s\n", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  return run(argc, argv);
}
