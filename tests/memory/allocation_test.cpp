// SPDX-License-Identifier: MIT
// memory: takes and releases a lock on a key of up to 48 bytes (an order id, a path) without
// touching the heap. `Lock::key()` returns a std::string: a key up to its in-object buffer (15
// bytes in libstdc++) is copied into it; a 16..48-byte key is held inline and its string made
// by the first `key()` call; a longer one costs one allocation, made when the lock is.
#include <gtest/gtest.h>

#include <charconv>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lockkit/memory.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOCKKIT_TEST_COUNTS_ALLOCATIONS 0  // the sanitizers own operator new
#else
#define LOCKKIT_TEST_COUNTS_ALLOCATIONS 1
#endif

namespace {
thread_local bool t_counting = false;
thread_local long t_allocations = 0;
}  // namespace

#if LOCKKIT_TEST_COUNTS_ALLOCATIONS
// Counts this thread's allocations while t_counting is set; the default operator delete frees
// what malloc returned.
void* operator new(std::size_t size) {
  if (t_counting) ++t_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
#endif

namespace lockkit {
namespace {

using namespace std::chrono_literals;

// Takes and releases 1000 fresh keys "<prefix><n>" (n from 1099511627 up: 10 to 13 digits),
// counting this thread's allocations.
long allocations_for_fresh_keys(LockApi& api, std::string_view prefix) {
  long allocations = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    char buf[80];
    prefix.copy(buf, prefix.size());
    char* end = std::to_chars(buf + prefix.size(), buf + sizeof(buf), 1099511627 + i * 7919).ptr;
    const std::string_view key(buf, static_cast<std::size_t>(end - buf));
    t_allocations = 0;
    t_counting = true;
    std::optional<Lock> lock = api.try_acquire(key, 30s);
    const bool granted = lock.has_value();
    const bool released = granted && lock->release();
    lock.reset();
    t_counting = false;
    EXPECT_TRUE(granted) << key;
    EXPECT_TRUE(released) << key;
    allocations += t_allocations;
  }
  return allocations;
}

TEST(MemoryAllocations, AcquireAndReleaseOfAnOrderIdAllocateNothing) {
#if !LOCKKIT_TEST_COUNTS_ALLOCATIONS
  GTEST_SKIP() << "sanitizer build: operator new is the sanitizer's, allocations not counted";
#endif
  auto api = make_memory_lock_api();
  // The thread's first lock numbers it and keys its token generator.
  ASSERT_TRUE(api->try_acquire("warm-up", 1s));
  // 12 bytes: within std::string's own buffer.
  EXPECT_EQ(allocations_for_fresh_keys(*api, "o/"), 0);
}

// Order ids and paths of 16..48 bytes are common keys; their Lock keeps them inline.
TEST(MemoryAllocations, AcquireAndReleaseOfKeysUpTo48BytesAllocateNothing) {
#if !LOCKKIT_TEST_COUNTS_ALLOCATIONS
  GTEST_SKIP() << "sanitizer build: operator new is the sanitizer's, allocations not counted";
#endif
  auto api = make_memory_lock_api();
  ASSERT_TRUE(api->try_acquire("warm-up", 1s));
  EXPECT_EQ(allocations_for_fresh_keys(*api, "o/0/10"), 0);                      // 16 bytes
  EXPECT_EQ(allocations_for_fresh_keys(*api, "orders/2026-11-30/eu-west/"), 0);  // 36
  EXPECT_EQ(allocations_for_fresh_keys(*api, "tenants/acme-corporation/orders/batch-"), 0);  // 48
}

// key() of a 16..48-byte key makes its string on the first call: many threads calling it on
// one Lock at once all get the same, whole key (TSan checks the handover).
TEST(MemoryAllocations, KeyOfAnInlineKeyIsSafeToReadFromManyThreadsAtOnce) {
  auto api = make_memory_lock_api();
  for (int round = 0; round < 200; ++round) {
    const std::string key = "orders/2026-11-30/" + std::to_string(1099511627 + round);
    auto lock = api->try_acquire(key, 30s);
    ASSERT_TRUE(lock);
    const Lock& shared = *lock;
    std::vector<std::thread> readers;
    std::vector<int> same(4, 0);
    for (int t = 0; t < 4; ++t) {
      readers.emplace_back([&shared, &key, &same, t] { same[t] = shared.key() == key; });
    }
    for (auto& r : readers) r.join();
    for (int t = 0; t < 4; ++t) EXPECT_EQ(same[t], 1) << round;
    Lock moved = std::move(*lock);
    EXPECT_EQ(moved.key(), key);
    EXPECT_TRUE(lock->key().empty());
    EXPECT_TRUE(moved.release());
  }
}

TEST(MemoryAllocations, KeysOfEveryLengthRoundTripThroughTheLock) {
  auto api = make_memory_lock_api();
  for (std::size_t n = 1; n <= 1024; n += (n < 80 ? 1 : 97)) {
    std::string key(n, '\0');
    for (std::size_t i = 0; i < n; ++i) key[i] = static_cast<char>((i * 31 + n) & 0xFF);
    auto lock = api->try_acquire(key, 30s);
    ASSERT_TRUE(lock) << n;
    EXPECT_FALSE(api->try_acquire(key, 30s)) << n;
    Lock moved = std::move(*lock);
    EXPECT_EQ(moved.key(), key) << n;
    ASSERT_TRUE(api->status(key)) << n;
    EXPECT_TRUE(moved.release()) << n;
    EXPECT_FALSE(api->status(key)) << n;
  }
}

}  // namespace
}  // namespace lockkit
