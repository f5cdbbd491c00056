// SPDX-License-Identifier: MIT
// A separate process for sqlite_process_test: contends for a key through lockkit::open, or
// takes a lock and holds it until killed.
//   sqlite_test_worker contend <url> <dir> <rounds> <key>   exit 0 ok, 2 overlap, 3 fence, 4 busy
//   sqlite_test_worker hold <url> <key> <ttl_ms>            prints the fence, then waits
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
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
  bool overlap = false;
  bool fence_regressed = false;
  for (int i = 0; i < rounds; ++i) {
    auto lock = api->acquire(key, 10s, {.max_wait = 60s, .initial_delay = 1ms, .max_delay = 10ms});
    if (!lock) return 4;
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

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "contend" && argc == 6)
      return contend(argv[2], argv[3], std::stoi(argv[4]), argv[5]);
    if (mode == "hold" && argc == 5) return hold(argv[2], argv[3], std::stol(argv[4]));
    std::fprintf(stderr, "usage: sqlite_test_worker contend|hold ...\n");
    return 64;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sqlite_test_worker: %s\n", e.what());
    return 1;
  }
}
