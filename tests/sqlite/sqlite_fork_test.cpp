// SPDX-License-Identifier: MIT
// sqlite:// and fork(): a child never hangs, never sees a corrupt file, never disturbs others.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/sqlite.hpp"
#include "support/process.hpp"
#include "support/sanitizers.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

// A child that has not exited by then is taken to hang (it needs milliseconds).
constexpr auto kWatchdog = 20s;

// Keeps one thread inside SQLite through `api` until stopped; counts its errors.
class BusyThread {
 public:
  explicit BusyThread(LockApi& api) : thread_([this, &api] { run(api); }) {}
  BusyThread(const BusyThread&) = delete;
  BusyThread& operator=(const BusyThread&) = delete;
  ~BusyThread() {
    stop_ = true;
    thread_.join();
  }
  long rounds() const { return rounds_; }
  long errors() const { return errors_; }

 private:
  void run(LockApi& api) {
    while (!stop_) {
      try {
        auto lock = api.try_acquire("busy", 10s);
        (void)api.status("busy");
        if (!lock || !lock->release()) ++errors_;
      } catch (const std::exception&) {
        ++errors_;
      }
      ++rounds_;
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<long> rounds_{0};
  std::atomic<long> errors_{0};
  std::thread thread_;
};

TEST(SqliteFork, ChildGetsOneClearErrorWhileAParentThreadIsInsideSqlite) {
  TempDir dir;
  auto api = make_sqlite_lock_api({.path = dir.file("locks.db")});
  std::optional<Lock> held = api->try_acquire("parent", 60s);
  ASSERT_TRUE(held);
  const std::uint64_t held_fence = held->fence();
  // Under sanitizers the parent forks from one thread only (see support/sanitizers.hpp): the
  // child then still gets the clear error, but no thread is inside SQLite at the fork.
  std::optional<BusyThread> busy;
  if (kForkWithBusyThreads) {
    busy.emplace(*api);
    while (busy->rounds() < 10) std::this_thread::yield();
  }
  constexpr int kForks = 40;
  for (int i = 0; i < kForks; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // 0 ok; 2 a call succeeded; 3 another error; 4 not the clear message.
      int code = 0;
      for (int call = 0; call < 3 && code == 0; ++call) {
        try {
          if (call == 0) (void)api->try_acquire("child", 10s);
          if (call == 1) (void)api->status("parent");
          if (call == 2) (void)held->extend(60s);
          code = 2;
        } catch (const BackendError& e) {
          if (e.kind() != ErrorKind::kUnsupported) code = 3;
          if (std::string(e.what()).find("fork()") == std::string::npos) code = 4;
        } catch (...) {
          code = 3;
        }
      }
      // Dropping inherited handles must not touch the parent's lease or connections either.
      held.reset();
      api.reset();
      ::_exit(code);
    }
    int status = wait_exit(pid, kWatchdog);
    ASSERT_NE(status, -1) << "fork " << i << ": the child hung";
    ASSERT_EQ(status, 0) << "fork " << i << ": 2 = a call worked, 3 = another error, 4 = unclear";
  }
  if (busy) {
    EXPECT_EQ(busy->errors(), 0) << "the parent's thread saw errors";
  }
  auto info = api->status("parent");
  ASSERT_TRUE(info) << "a child released the parent's lease";
  EXPECT_EQ(info->fence, held_fence);
  EXPECT_TRUE(held->release());
}

TEST(SqliteFork, ChildCannotReopenAFileItsParentHadOpen) {
  // Its SQLite would share the parent's per-file lock records, inherited without the locks.
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path});
  auto held = api->try_acquire("parent", 60s);
  ASSERT_TRUE(held);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 2;
    try {
      auto fresh = make_sqlite_lock_api({.path = path});
      (void)fresh->try_acquire("child", 10s);
    } catch (const BackendError& e) {
      code = e.kind() == ErrorKind::kUnsupported &&
                     std::string(e.what()).find("forked") != std::string::npos
                 ? 0
                 : 3;
    } catch (...) {
      code = 3;
    }
    ::_exit(code);
  }
  EXPECT_EQ(wait_exit(pid, kWatchdog), 0);
  EXPECT_TRUE(held->release());
}

TEST(SqliteFork, LockApiMadeButUnusedBeforeForkWorksInChildren) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  const std::string marker = dir.file("inside");
  auto api = make_sqlite_lock_api({.path = path});  // not used before the forks
  // Another LockApi, on another file, busy in SQLite while the children are forked (outside
  // sanitizers, see support/sanitizers.hpp).
  auto other = make_sqlite_lock_api({.path = dir.file("other.db")});
  std::optional<BusyThread> busy;
  if (kForkWithBusyThreads) {
    busy.emplace(*other);
    while (busy->rounds() < 10) std::this_thread::yield();
  }
  constexpr int kChildren = 6;
  constexpr int kRounds = 30;
  std::vector<pid_t> pids;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // 0 ok; 2 two holders at once; 3 an error; 4 never got the key.
      int code = 0;
      try {
        for (int r = 0; r < kRounds && code == 0; ++r) {
          auto lock =
              api->acquire("k", 10s, {.max_wait = 10s, .initial_delay = 1ms, .max_delay = 5ms});
          if (!lock) {
            code = 4;
            break;
          }
          int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
          if (fd < 0) code = 2;
          std::this_thread::sleep_for(50us);
          if (fd >= 0) {
            ::close(fd);
            ::unlink(marker.c_str());
          }
          if (!lock->release()) code = 3;
        }
      } catch (...) {
        code = 3;
      }
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = wait_exit(pid, kWatchdog);
    EXPECT_NE(status, -1) << "a child hung";
    EXPECT_EQ(status, 0) << "2 = overlap, 3 = error, 4 = starved";
  }
  // The parent's first use comes after the forks: it works too.
  EXPECT_TRUE(api->try_acquire("k", 10s));
  if (busy) {
    EXPECT_EQ(busy->errors(), 0);
  }
}

}  // namespace
}  // namespace lockkit::testing
