// SPDX-License-Identifier: MIT
// What only memory: has: exact expiry on a fake clock, bounded table, shard independence.
#include "lockkit/memory.hpp"

#include <gtest/gtest.h>

#include "memory/memory_store.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

class MemoryLockApiTest : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<LeaseStore> store_ = make_memory_store(MemoryOptions{.clock = clock_});
  std::shared_ptr<LockApi> api_ptr_ = make_lock_api(store_);
  LockApi& api_ = *api_ptr_;
};

TEST_F(MemoryLockApiTest, ExpiresExactlyAtTtlOnTheInjectedClock) {
  auto lock = api_.try_acquire("k", 1000ms);
  ASSERT_TRUE(lock);
  // The holder stops counting on it loss_margin(ttl) = 20 ms before the store's expiry.
  clock_->advance(979ms);
  EXPECT_TRUE(lock->held());
  clock_->advance(1ms);
  EXPECT_FALSE(lock->held());
  clock_->advance(19ms);
  EXPECT_FALSE(api_.try_acquire("k", 1s));
  clock_->advance(1ms);
  auto next = api_.try_acquire("k", 1s);
  ASSERT_TRUE(next);
  EXPECT_GT(next->fence(), lock->fence());
  EXPECT_FALSE(lock->release());
}

TEST_F(MemoryLockApiTest, ValidUntilIsTtlOnTheInjectedClock) {
  auto now = clock_->now();
  auto lock = api_.try_acquire("k", 5s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->valid_until(), now + 5s);
  clock_->advance(2s);
  ASSERT_TRUE(lock->extend(5s));
  EXPECT_EQ(lock->valid_until(), now + 7s);
}

TEST_F(MemoryLockApiTest, ReleasedKeysDoNotGrowTheTable) {
  for (int i = 0; i < 100000; ++i) {
    auto lock = api_.try_acquire("key/" + std::to_string(i), 10s);
    ASSERT_TRUE(lock);
  }
  // Nothing is live: every released entry left its shard at once.
  EXPECT_LE(detail::memory_table_size(*store_), 256u * 64u);
}

TEST_F(MemoryLockApiTest, ExpiredKeysAreReclaimed) {
  std::vector<Lock> live;
  for (int i = 0; i < 1000; ++i) {
    live.push_back(*api_.try_acquire("live/" + std::to_string(i), std::chrono::hours(100)));
  }
  for (int round = 0; round < 20; ++round) {
    std::vector<Lock> expiring;
    for (int i = 0; i < 5000; ++i) {
      expiring.push_back(
          *api_.try_acquire("r" + std::to_string(round) + "/" + std::to_string(i), 1s));
    }
    clock_->advance(2s);
    expiring.clear();  // their releases find expired leases
  }
  // 101,000 keys used, at most 6,000 live at once: expired entries are dropped before a shard
  // grows.
  EXPECT_LE(detail::memory_table_size(*store_), 256u * 64u + 2u * 6000u);
  EXPECT_EQ(api_.list("live/").size(), 1000u);
}

TEST_F(MemoryLockApiTest, FencesIncreasePerKeyWithoutPerKeyState) {
  std::uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    auto lock = api_.try_acquire("k", 1s);
    ASSERT_TRUE(lock);
    EXPECT_GT(lock->fence(), last);
    last = lock->fence();
    if (i % 2 == 0) {
      ASSERT_TRUE(lock->release());
    } else {
      clock_->advance(1s);  // expire instead of release
    }
  }
}

TEST_F(MemoryLockApiTest, ListIsSortedAndSkipsExpired) {
  auto b = api_.try_acquire("p/b", 10s);
  auto a = api_.try_acquire("p/a", 20s);
  auto other = api_.try_acquire("q/a", 20s);
  clock_->advance(15s);
  auto listed = api_.list("p/");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "p/a");
  EXPECT_EQ(listed[0].remaining, 5s);
  EXPECT_EQ(api_.list().size(), 2u);
}

TEST(MemoryLockApi, SeparateInstancesAreSeparateTables) {
  auto a = make_memory_lock_api();
  auto b = make_memory_lock_api();
  auto held = a->try_acquire("k", 1s);
  ASSERT_TRUE(held);
  EXPECT_TRUE(b->try_acquire("k", 1s));
}

}  // namespace
}  // namespace lockkit
