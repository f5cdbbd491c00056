// SPDX-License-Identifier: MIT
// Many threads on a handful of keys: no overlap, no lost update, fences in acquisition order.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <thread>
#include <vector>

#include "lockkit/memory.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

TEST(MemoryStress, EightThreadsTenThousandAcquisitionsNeverOverlap) {
  constexpr int kThreads = 8;
  constexpr int kAttempts = 10000;
  constexpr int kKeys = 4;
  auto api_ptr = make_memory_lock_api();
  LockApi& api = *api_ptr;
  struct PerKey {
    std::atomic<int> inside{0};
    long counter = 0;                   // plain: only the lock protects it
    std::vector<std::uint64_t> fences;  // appended inside the critical section
  };
  std::array<PerKey, kKeys> keys;
  std::atomic<int> overlaps{0};
  std::atomic<long> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAttempts; ++i) {
        int k = (t + i) % kKeys;
        auto lock = api.try_acquire("stress/" + std::to_string(k), 10s);
        if (!lock) continue;
        PerKey& pk = keys[static_cast<std::size_t>(k)];
        if (pk.inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++pk.counter;
        pk.fences.push_back(lock->fence());
        pk.inside.fetch_sub(1);
        granted.fetch_add(1);
        ASSERT_TRUE(lock->release());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  long total = 0;
  for (auto& pk : keys) {
    total += pk.counter;
    EXPECT_EQ(pk.fences.size(), static_cast<std::size_t>(pk.counter));
    for (std::size_t i = 1; i < pk.fences.size(); ++i) {
      ASSERT_GT(pk.fences[i], pk.fences[i - 1]) << "fences out of acquisition order at " << i;
    }
  }
  EXPECT_EQ(total, granted.load());
  EXPECT_GT(granted.load(), kThreads * kAttempts / 10) << "almost every attempt was refused";
}

}  // namespace
}  // namespace lockkit
