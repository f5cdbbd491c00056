// SPDX-License-Identifier: MIT
// A separate process for the multi-process test: takes an etcd:// lock `rounds` times and, while
// holding it, proves nobody else is inside (an O_EXCL marker file), bumps a shared counter and
// appends its fence to a shared file.
//   etcd_contender URL KEY ROUNDS DIR   -> exit 0, or 2 lock not taken, 3 overlap, 4 lost,
//                                          5 file error, 6 BackendError
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"

namespace {

int run(const char* url, const std::string& key, int rounds, const std::string& dir) {
  auto api = lockkit::open(url);
  const std::string marker = dir + "/inside";
  const std::string counter = dir + "/count";
  const int fences =
      ::open((dir + "/fences").c_str(), O_CREAT | O_APPEND | O_WRONLY | O_CLOEXEC, 0600);
  if (fences < 0) return 5;
  lockkit::RetryPolicy policy{.max_wait = std::chrono::seconds(60),
                              .initial_delay = std::chrono::milliseconds(5),
                              .max_delay = std::chrono::milliseconds(100)};
  for (int i = 0; i < rounds; ++i) {
    auto lock = api->acquire(key, std::chrono::seconds(10), policy);
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
    }
    const std::string line = std::to_string(lock->fence()) + "\n";
    if (::write(fences, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 5;
    ::close(fd);
    ::unlink(marker.c_str());
    if (!lock->release()) return 4;
  }
  ::close(fences);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: etcd_contender URL KEY ROUNDS DIR\n");
    return 64;
  }
  try {
    return run(argv[1], argv[2], std::atoi(argv[3]), argv[4]);
  } catch (const lockkit::BackendError& e) {
    std::fprintf(stderr, "etcd_contender: %s\n", e.what());
    return 6;
  }
}
