// SPDX-License-Identifier: MIT
// A separate process for the multi-process redlock:// test: takes the lock `rounds` times and,
// while holding it, proves nobody else is inside (an O_EXCL marker file) and appends its fence
// to a shared log, so the log is in lock order.
//   redlock_contender URL KEY ROUNDS DIR   -> exit 0, or 2 lock not taken, 3 overlap, 4 lost
// With `once` instead of ROUNDS and DIR it is a short-lived process: it takes KEY for 60 s and
// exits the moment the acquire returns, without running any destructor (exit 0, 2 not taken).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "lockkit/open.hpp"

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[3], "once") == 0) {
    auto api = lockkit::open(argv[1]);
    auto lock = api->try_acquire(argv[2], std::chrono::seconds(60));
    std::_Exit(lock ? 0 : 2);
  }
  if (argc != 5) {
    std::fprintf(stderr, "usage: redlock_contender URL KEY ROUNDS DIR\n");
    return 64;
  }
  auto api = lockkit::open(argv[1]);
  const std::string key = argv[2];
  const int rounds = std::atoi(argv[3]);
  const std::string marker = std::string(argv[4]) + "/inside";
  const std::string log = std::string(argv[4]) + "/fences";
  lockkit::RetryPolicy policy{.max_wait = std::chrono::seconds(60),
                              .initial_delay = std::chrono::milliseconds(1),
                              .max_delay = std::chrono::milliseconds(10)};
  for (int i = 0; i < rounds; ++i) {
    auto lock = api->acquire(key, std::chrono::seconds(10), policy);
    if (!lock) return 2;
    int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return errno == EEXIST ? 3 : 5;
    int out = ::open(log.c_str(), O_CREAT | O_APPEND | O_WRONLY | O_CLOEXEC, 0600);
    if (out < 0) return 5;
    std::string line = std::to_string(lock->fence()) + "\n";
    if (::write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 5;
    ::close(out);
    std::this_thread::yield();  // widen the window a racing holder would need
    ::close(fd);
    ::unlink(marker.c_str());
    if (!lock->release()) return 4;
  }
  return 0;
}
