// SPDX-License-Identifier: MIT
// A second process for the postgres:// tests: first use of a schema, or contention on one key.
//   postgres_test_worker first-use URL KEY GOFILE
//   postgres_test_worker contend URL KEY ROUNDS LOGFILE GOFILE
// Each waits for GOFILE to exist (so all workers start together), then works; exit 0 = success.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include "lockkit/lock_api.hpp"
#include "lockkit/open.hpp"

namespace {

using namespace std::chrono_literals;

bool wait_for_file(const char* path) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (::access(path, F_OK) != 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);  // polling a condition with a deadline, not a sleep-sync
  }
  return true;
}

// One write(2) per line on an O_APPEND file: lines from several processes never interleave.
void log_line(int fd, const std::string& line) {
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::perror("write");
    std::_Exit(4);
  }
}

int first_use(const char* url, const std::string& key, const char* go) {
  if (!wait_for_file(go)) return 2;
  auto api = lockkit::open(url);
  auto lock = api->try_acquire(key + "/" + std::to_string(::getpid()), 10s);
  if (!lock) {
    std::fprintf(stderr, "worker: a fresh key was refused\n");
    return 3;
  }
  return lock->release() ? 0 : 3;
}

int contend(const char* url, const std::string& key, int rounds, const char* log, const char* go) {
  int fd = ::open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return 2;
  if (!wait_for_file(go)) return 2;
  auto api = lockkit::open(url);
  std::string pid = std::to_string(::getpid());
  for (int i = 0; i < rounds; ++i) {
    auto lock = api->acquire(
        key, 30s, lockkit::RetryPolicy{.max_wait = 60s, .initial_delay = 1ms, .max_delay = 10ms});
    if (!lock) {
      std::fprintf(stderr, "worker: acquire ran out of time\n");
      return 3;
    }
    std::string fence = std::to_string(lock->fence());
    log_line(fd, "B " + pid + " " + fence + "\n");
    std::this_thread::sleep_for(1ms);  // widen the window another holder would overlap in
    log_line(fd, "E " + pid + " " + fence + "\n");
    if (!lock->release()) {
      std::fprintf(stderr, "worker: release found the lease taken\n");
      return 3;
    }
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "first-use" && argc == 5) return first_use(argv[2], argv[3], argv[4]);
    if (mode == "contend" && argc == 7) {
      return contend(argv[2], argv[3], std::stoi(argv[4]), argv[5], argv[6]);
    }
    std::fprintf(stderr,
                 "usage: postgres_test_worker first-use URL KEY GOFILE | "
                 "contend URL KEY ROUNDS LOGFILE GOFILE\n");
    return 64;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: %s\n", e.what());
    return 1;
  }
}
