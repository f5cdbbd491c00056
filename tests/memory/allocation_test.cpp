// SPDX-License-Identifier: MIT
// memory: takes and releases a lock on a short key (an order id) without touching the heap.
// `Lock::key()` returns a std::string, so a key up to its in-object buffer (15 bytes in
// libstdc++) costs no allocation; a longer one costs one, made when the lock is.
#include <gtest/gtest.h>

#include <charconv>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

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

TEST(MemoryAllocations, AcquireAndReleaseOfAnOrderIdAllocateNothing) {
#if !LOCKKIT_TEST_COUNTS_ALLOCATIONS
  GTEST_SKIP() << "sanitizer build: operator new is the sanitizer's, allocations not counted";
#endif
  auto api = make_memory_lock_api();
  // The thread's first lock numbers it and keys its token generator.
  ASSERT_TRUE(api->try_acquire("warm-up", 1s));
  long allocations = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    // 11..13 bytes, within std::string's own buffer, each key new.
    char buf[32] = "o/";
    char* end = std::to_chars(buf + 2, buf + sizeof(buf), 1099511627 + i * 7919).ptr;
    const std::string_view key(buf, static_cast<std::size_t>(end - buf));
    t_allocations = 0;
    t_counting = true;
    std::optional<Lock> lock = api->try_acquire(key, 30s);
    const bool granted = lock.has_value();
    const bool released = granted && lock->release();
    lock.reset();
    t_counting = false;
    ASSERT_TRUE(granted);
    ASSERT_TRUE(released);
    allocations += t_allocations;
  }
  EXPECT_EQ(allocations, 0);
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
