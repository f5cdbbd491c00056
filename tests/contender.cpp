// SPDX-License-Identifier: MIT
// A separate process for the multi-process tests of any URL (redis://, redlock://, etcd://):
// takes the lock `rounds` times and, while holding it, proves nobody else is inside (an O_EXCL
// marker file), bumps a shared counter (read, then written back: an overlap loses an update) and
// appends its fence to a shared log, so the log is in lock order. Exec'd, never forked (gRPC
// does not survive fork).
//   lockkit_test_contender URL KEY ROUNDS DIR
//     -> exit 0, or 2 lock not taken, 3 overlap, 4 lost, 5 file error, 6 BackendError
// With `once` instead of ROUNDS and DIR it is a short-lived process: it takes KEY for 60 s and
// exits the moment the acquire returns, without running any destructor (exit 0, 2 not taken).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// What this program checks is exclusion and fence order, not latency: on a loaded machine (a
// sanitizer build next to other tests, contenders that retry every few ms) a wait may be long
// and a call may run into its timeout. Retryable store errors are waited out like contention.
std::optional<lockkit::Lock> take(lockkit::LockApi& api, const std::string& key,
                                  Clock::time_point give_up) {
  const lockkit::RetryPolicy policy{.max_wait = std::chrono::seconds(120),
                                    .initial_delay = std::chrono::milliseconds(1),
                                    .max_delay = std::chrono::milliseconds(10)};
  for (;;) {
    try {
      return api.acquire(key, std::chrono::seconds(10), policy);
    } catch (const lockkit::BackendError& e) {
      if (!e.retryable() || Clock::now() >= give_up) throw;
      std::fprintf(stderr, "contender: retrying after: %s\n", e.what());
    }
  }
}

int run(const char* url, const std::string& key, int rounds, const std::string& dir) {
  auto api = lockkit::open(url);
  const std::string marker = dir + "/inside";
  const std::string counter = dir + "/count";
  const std::string log = dir + "/fences";
  const auto give_up = Clock::now() + std::chrono::seconds(120);
  for (int i = 0; i < rounds; ++i) {
    auto lock = take(*api, key, give_up);
    if (!lock) return 2;
    int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return errno == EEXIST ? 3 : 5;
    long n = 0;
    {
      std::ifstream in(counter);
      in >> n;
    }
    std::this_thread::yield();  // widen the window a racing holder would need
    {
      std::ofstream out(counter, std::ios::trunc);
      out << n + 1 << '\n';
      if (!out.flush()) return 5;
    }
    int out = ::open(log.c_str(), O_CREAT | O_APPEND | O_WRONLY | O_CLOEXEC, 0600);
    if (out < 0) return 5;
    const std::string line = std::to_string(lock->fence()) + "\n";
    if (::write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 5;
    ::close(out);
    ::close(fd);
    ::unlink(marker.c_str());
    try {
      if (!lock->release()) return 4;
    } catch (const lockkit::BackendError& e) {
      // Timed out or in doubt: nobody uses the lease any more, and it runs out by its ttl.
      if (!e.retryable()) throw;
      std::fprintf(stderr, "contender: release: %s\n", e.what());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[3], "once") == 0) {
    auto api = lockkit::open(argv[1]);
    auto lock = api->try_acquire(argv[2], std::chrono::seconds(60));
    std::_Exit(lock ? 0 : 2);
  }
  if (argc != 5) {
    std::fprintf(stderr, "usage: lockkit_test_contender URL KEY ROUNDS DIR | URL KEY once\n");
    return 64;
  }
  try {
    return run(argv[1], argv[2], std::atoi(argv[3]), argv[4]);
  } catch (const lockkit::BackendError& e) {
    std::fprintf(stderr, "contender: %s\n", e.what());
    return 6;
  }
}
