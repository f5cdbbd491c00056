// SPDX-License-Identifier: MIT
// Many kept-alive locks in one process (thousands; the conformance kit's KeepAliveConformance
// holds the cases every store runs).
#ifndef LOCKKIT_TESTS_SUPPORT_KEEP_ALIVE_CASES_HPP_
#define LOCKKIT_TESTS_SUPPORT_KEEP_ALIVE_CASES_HPP_

#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/lock_api.hpp"

namespace lockkit::testing::keep_alive {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

template <class Pred>
bool await(Pred pred, Steady::duration limit) {
  const auto deadline = Steady::now() + limit;
  while (!pred()) {
    if (Steady::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

inline unsigned threads_of_this_process() {
  unsigned n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

// Many locks kept alive at once by one process: all stay held, the keeper uses a few threads.
// Returns the renewals per second.
inline double ManyLocksFewThreads(LockApi& api, const std::string& prefix, int count,
                                  std::chrono::milliseconds ttl, Steady::duration hold) {
  const unsigned before = threads_of_this_process();
  std::atomic<long> renewals{0};
  std::vector<Lock> locks;
  locks.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    auto lock = api.try_acquire(prefix + std::to_string(i), ttl);
    if (!lock) {
      ADD_FAILURE() << "could not take " << prefix << i;
      return 0;
    }
    lock->keep_alive({.on_lost = {},
                      .max_hold = 0ms,
                      .should_renew =
                          [&renewals] {
                            renewals.fetch_add(1, std::memory_order_relaxed);
                            return true;
                          },
                      .on_renewal_error = {}});
    locks.push_back(std::move(*lock));
  }
  const auto start = Steady::now();
  std::this_thread::sleep_for(hold);
  const double seconds = std::chrono::duration<double>(Steady::now() - start).count();
  const unsigned during = threads_of_this_process();
  int lost = 0;
  for (const auto& lock : locks) lost += !lock.held();
  EXPECT_EQ(lost, 0);
  EXPECT_LE(during, before + 7) << "one scheduler and at most six renewal workers";
  const double rate = static_cast<double>(renewals.load()) / seconds;
  std::printf("[ info ] %d kept-alive locks: %u more threads, %.0f renewals/s\n", count,
              during - before, rate);
  return rate;
}

}  // namespace lockkit::testing::keep_alive

#endif  // LOCKKIT_TESTS_SUPPORT_KEEP_ALIVE_CASES_HPP_
