// SPDX-License-Identifier: MIT
// A separate process for sqlite_process_test: contends for a key through lockkit::open, or
// takes a lock and holds it until killed.
//   sqlite_test_worker contend <url> <dir> <rounds> <key>   exit 0 ok, 2 overlap, 3 fence, 4 busy
//   sqlite_test_worker hold <url> <key> <ttl_ms>            prints the fence, then waits
//   sqlite_test_worker open <url>          waits for stdin to close, then opens the file and takes
//                                          and releases one lock (exit 0) or prints why not
//   sqlite_test_worker stall <path>        writes a lease row inside an open write transaction,
//                                          prints "ready", then waits (to be killed)
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
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

int stall(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) return 1;
  if (sqlite3_exec(db,
                   "BEGIN IMMEDIATE; INSERT INTO lockkit_leases (key, token, fence, expires_at) "
                   "VALUES (CAST('k' AS BLOB), CAST('t' AS BLOB), 1, 9000000000000000000)",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) ::pause();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
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
