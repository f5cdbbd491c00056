// SPDX-License-Identifier: MIT
// AsyncLockApi in a forked child: store calls without a native path run on a blocking pool of
// the child's own (the parent's pool threads are not in the child), and the child exits cleanly.
#include <gtest/gtest.h>
#include <sys/types.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "async/blocking_pool.hpp"
#include "lockkit/async.hpp"
#include "lockkit/open.hpp"
#include "support/process.hpp"
#include "support/sanitizers.hpp"
#include "support/temp_dir.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

#ifdef LOCKKIT_ASYNC_FORK_TEST_SQLITE
constexpr bool kWithSqlite = true;
#else
constexpr bool kWithSqlite = false;
#endif

#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitizer = true;
#else
constexpr bool kThreadSanitizer = false;
#endif

// The child needs milliseconds; one whose operations have not completed by then hangs.
constexpr auto kChildLimit = 10s;

// Occupies every thread of the blocking pool with a task that waits until this is destroyed.
// While parked, no pool thread is inside the allocator or a store, so fork() copies the process
// in a state the sanitizer runtimes can follow (support/sanitizers.hpp), and the parent's pool
// certainly has all its threads, all of them busy, at the fork.
class ParkedPool {
 public:
  ParkedPool() {
    for (std::size_t i = 0; i < detail::kBlockingThreads; ++i) {
      asio::post(detail::blocking_pool(), [this] {
        std::unique_lock<std::mutex> lock(mu_);
        ++parked_;
        cv_.notify_all();
        cv_.wait(lock, [this] { return released_; });
        --parked_;
        cv_.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu_);
    all_parked_ =
        cv_.wait_for(lock, kChildLimit, [this] { return parked_ == detail::kBlockingThreads; });
  }
  ~ParkedPool() {
    std::unique_lock<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return parked_ == 0; });  // the tasks use `this`
  }
  ParkedPool(const ParkedPool&) = delete;
  ParkedPool& operator=(const ParkedPool&) = delete;

  bool all_parked() const { return all_parked_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t parked_ = 0;
  bool released_ = false;
  bool all_parked_ = false;
};

// Takes and releases `key` through an AsyncLockApi over `url` with callbacks, on an io_context
// run by this thread for at most kChildLimit. Returns "" on success, else what went wrong.
std::string AcquireAndRelease(const std::string& url, const std::string& key) {
  asio::io_context io;
  std::string outcome = "the handlers did not run within the limit (a hang)";
  std::optional<Lock> held;
  AsyncLockApi locks(io.get_executor(), lockkit::open(url));
  locks.async_try_acquire(key, 10s, [&](std::exception_ptr error, std::optional<Lock> lock) {
    if (error || !lock) {
      outcome = error ? "try_acquire failed" : "try_acquire found the key busy";
      return;
    }
    held = std::move(lock);
    locks.async_release(*held, [&](std::exception_ptr released_error, bool ours) {
      outcome = released_error ? "release failed" : ours ? "" : "release found the lease gone";
    });
  });
  io.run_for(kChildLimit);
  return outcome;
}

// A parent whose pool exists (all its threads busy) forks; the child's AsyncLockApi works on
// memory: and on an SQLite file of its own, then the child exits through exit(), whose static
// destructors must not wait for (or crash on) the parent's pool threads. The parent's pool works
// on.
TEST(AsyncFork, ChildsPoolPathCallsCompleteAndItExits) {
  if (kThreadSanitizer) {
    GTEST_SKIP() << "ThreadSanitizer cannot follow a forked child that starts threads";
  }
  testing::TempDir dir("lockkit-async-fork-");
  // The child opens a file of its own: one its parent had open is refused (docs/sqlite.md).
  const std::string parent_db = kWithSqlite ? "sqlite://" + dir.file("parent.db") : "memory:";
  const std::string child_db = kWithSqlite ? "sqlite://" + dir.file("child.db") : "memory:";
  ASSERT_EQ(AcquireAndRelease("memory:", "before"), "");
  ASSERT_EQ(AcquireAndRelease(parent_db, "before"), "");
  pid_t pid = -1;
  {
    ParkedPool parked;
    ASSERT_TRUE(parked.all_parked());
    std::fflush(nullptr);
    pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child: no GoogleTest here, the exit status says what went wrong.
      int code = 0;
      try {
        std::string memory = AcquireAndRelease("memory:", "child");
        std::string sqlite = memory.empty() ? AcquireAndRelease(child_db, "child") : "";
        if (!memory.empty() || !sqlite.empty()) {
          std::fprintf(stderr, "child: memory: %s; sqlite: %s\n", memory.c_str(), sqlite.c_str());
          code = 2;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        code = 3;
      }
      std::fflush(nullptr);
      // Static destructors run in exit(): they must leave the inherited pool alone. Not under
      // LeakSanitizer, which counts what the parent's threads held (their thread-local caches of
      // asio's recycled memory) as the child's leaks.
      if (testing::kSanitizerBuild) ::_exit(code);
      std::exit(code);
    }
  }
  const int status = testing::wait_exit(pid, 2 * kChildLimit);
  EXPECT_EQ(status, 0) << "-1: the child hung (killed), 2: an operation failed or timed out, "
                          "3: an exception";
  EXPECT_EQ(AcquireAndRelease("memory:", "after"), "");
  EXPECT_EQ(AcquireAndRelease(parent_db, "after"), "");
}

}  // namespace
}  // namespace lockkit
