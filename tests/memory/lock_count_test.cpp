// SPDX-License-Identifier: MIT
// The core's per-thread count of Locks: a Lock keeps its store alive without a reference count
// shared between threads per lock, also when it outlives its LockApi, moves to another thread,
// outlives the thread that took it, or is released while the api is being destroyed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/store_lock_api.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/memory.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

struct Api {
  std::weak_ptr<LeaseStore> store;
  std::shared_ptr<LockApi> api;
};

// An api over a memory: store that only the api (and its Locks) keep alive.
Api make_api() {
  auto store = make_memory_store();
  Api out{store, make_lock_api(store)};
  return out;
}

std::vector<Lock> take(LockApi& api, const std::string& prefix, int n) {
  std::vector<Lock> locks;
  for (int i = 0; i < n; ++i) {
    auto lock = api.try_acquire(prefix + std::to_string(i), 30s);
    EXPECT_TRUE(lock);
    if (lock) locks.push_back(std::move(*lock));
  }
  return locks;
}

// The "no shared reference count per acquire": a lock the core hands out on this thread
// leaves the reference count of the ops that all the thread's locks share as it was.
TEST(LockCount, AcquireLeavesTheSharedReferenceCountAlone) {
  auto [weak, api] = make_api();
  auto* grants = dynamic_cast<detail::NativeGrants*>(api.get());
  ASSERT_NE(grants, nullptr);
  auto warm = api->try_acquire("warm", 30s);  // this thread's count exists from here on
  ASSERT_TRUE(warm);
  const auto before = grants->grant_ops().use_count();
  std::vector<Lock> locks = take(*api, "k/", 100);
  EXPECT_EQ(grants->grant_ops().use_count(), before);
  for (Lock& lock : locks) EXPECT_TRUE(lock.release());
  EXPECT_EQ(grants->grant_ops().use_count(), before);
}

// Locks taken on one thread, the api dropped, then released on another thread: the store stays
// until the last one is gone, and goes with it.
TEST(LockCount, LocksMovedToAnotherThreadKeepTheStoreUntilTheLast) {
  auto [weak, api] = make_api();
  std::vector<Lock> locks = take(*api, "k/", 50);
  api.reset();
  ASSERT_FALSE(weak.expired());
  std::thread other([&] {
    for (std::size_t i = 0; i + 1 < locks.size(); ++i) {
      EXPECT_TRUE(locks[i].release());
      EXPECT_FALSE(weak.expired());
    }
  });
  other.join();
  EXPECT_FALSE(weak.expired());
  EXPECT_TRUE(locks.back().release());
  EXPECT_TRUE(weak.expired()) << "the store outlived its last lock";
}

// The thread that took the locks has exited (and its index may serve a new thread) before they
// are released, some by a new thread, the rest after the api is gone.
TEST(LockCount, LocksOutliveTheThreadThatTookThem) {
  auto [weak, api] = make_api();
  std::vector<Lock> locks;
  std::thread taker([&] { locks = take(*api, "k/", 20); });
  taker.join();
  std::thread releaser([&] {
    // Likely the taker's index again: its locks counted by their new holder of the index.
    auto own = api->try_acquire("own", 30s);
    EXPECT_TRUE(own);
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(locks[static_cast<std::size_t>(i)].release());
  });
  releaser.join();
  api.reset();
  EXPECT_FALSE(weak.expired());
  for (std::size_t i = 10; i < locks.size(); ++i) EXPECT_TRUE(locks[i].release());
  EXPECT_TRUE(weak.expired()) << "the store outlived its last lock";
}

// The api is destroyed while the threads that took locks release them (on their own thread and
// on others): no lock is counted twice or missed (the store goes exactly with the last one) and
// none touches a freed count (ASan, TSan).
TEST(LockCount, ApiDestroyedWhileItsLocksAreReleased) {
  constexpr int kThreads = 4;
  constexpr int kLocks = 200;
  for (int round = 0; round < 20; ++round) {
    auto [weak, api] = make_api();
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::vector<Lock>> moved(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::vector<Lock> locks = take(*api, std::to_string(t) + "/", kLocks);
        // Every other lock goes to the next thread, released there.
        std::vector<Lock> keep;
        for (std::size_t i = 0; i < locks.size(); ++i) {
          (i % 2 ? moved[static_cast<std::size_t>(t)] : keep).push_back(std::move(locks[i]));
        }
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        auto& theirs = moved[static_cast<std::size_t>((t + 1) % kThreads)];
        for (std::size_t i = 0; i < keep.size(); ++i) {
          EXPECT_TRUE(keep[i].release());
          EXPECT_TRUE(theirs[i].release());
        }
      });
    }
    while (ready.load() < kThreads) std::this_thread::yield();
    go.store(true);
    api.reset();  // meanwhile the threads release
    for (auto& thread : threads) thread.join();
    EXPECT_TRUE(weak.expired()) << "round " << round << ": the store outlived its last lock";
  }
}

// A forked child whose parent had another thread holding locks: the child may drop its api (the
// other thread's count is left to it: that thread is gone there) and its own thread's locks.
TEST(LockCount, ForkedChildDropsItsApi) {
  auto [weak, api] = make_api();
  std::atomic<bool> holding{false};
  std::atomic<bool> done{false};
  std::thread holder([&] {
    std::vector<Lock> locks = take(*api, "held/", 10);
    holding.store(true);
    while (!done.load()) {
      auto lock = api->try_acquire("churn", 30s);  // this thread's count, in use at the fork
      if (lock) (void)lock->release();
    }
  });
  while (!holding.load()) std::this_thread::yield();
  auto mine = api->try_acquire("mine", 30s);
  ASSERT_TRUE(mine);
  const pid_t pid = fork();
  if (pid == 0) {
    // No gtest in the child: the exit status says it all.
    const bool released = mine->release();
    api.reset();
    _exit(released ? 0 : 1);
  }
  done.store(true);
  holder.join();
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(mine->release());
  api.reset();
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace lockkit
