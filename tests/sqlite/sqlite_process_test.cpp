// SPDX-License-Identifier: MIT
// Several processes (fork + exec, not threads) sharing one sqlite:// file.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "lockkit/sqlite.hpp"
#include "sqlite/sqlite_test_util.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

// A started worker process; `out` reads its stdout when started with a pipe.
struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child spawn(std::vector<std::string> args, bool capture_stdout = false) {
  args.insert(args.begin(), LOCKKIT_SQLITE_WORKER);
  int fds[2] = {-1, -1};
  if (capture_stdout && ::pipe(fds) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    if (capture_stdout) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (capture_stdout) ::close(fds[1]);
  return Child{pid, fds[0]};
}

// Waits for `child`; returns its exit status, or 128 + signal.
int wait_for(const Child& child) {
  int status = 0;
  if (::waitpid(child.pid, &status, 0) != child.pid) return -1;
  if (child.out >= 0) ::close(child.out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  return line;
}

long read_number(const std::string& path) {
  std::ifstream in(path);
  long n = -1;
  in >> n;
  return n;
}

TEST(SqliteProcesses, NeverOverlapAndFencesIncrease) {
  TempDir dir;
  const std::string url = "sqlite://" + dir.file("locks.db") + "?busy_timeout=10s";
  constexpr int kProcesses = 4;
  constexpr int kRounds = 40;
  std::vector<Child> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(
        spawn({"contend", url, dir.path().string(), std::to_string(kRounds), "shared/key"}));
    ASSERT_GT(children.back().pid, 0);
  }
  for (auto& child : children) {
    // 2: two holders at once; 3: a fence did not increase; 4: gave up waiting.
    EXPECT_EQ(wait_for(child), 0) << "worker " << child.pid;
  }
  EXPECT_EQ(read_number(dir.file("counter")), kProcesses * kRounds) << "lost updates";
  auto api = make_sqlite_lock_api({.path = dir.file("locks.db")});
  auto lock = api->try_acquire("shared/key", 10s);
  ASSERT_TRUE(lock) << "the key was left held";
  EXPECT_GT(static_cast<long>(lock->fence()), read_number(dir.file("fence")));
}

TEST(SqliteProcesses, KilledHolderFreesKeyWhenItsLeaseExpires) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  constexpr auto kTtl = 1500ms;
  Child holder = spawn({"hold", "sqlite://" + path, "k", std::to_string(kTtl.count())}, true);
  ASSERT_GT(holder.pid, 0);
  std::string fence_text = read_line(holder.out);
  auto acquired_by = std::chrono::steady_clock::now();  // the holder took it before this
  ASSERT_FALSE(fence_text.empty()) << "the holder did not start";
  ::kill(holder.pid, SIGKILL);
  EXPECT_EQ(wait_for(holder), 128 + SIGKILL);

  auto api = make_sqlite_lock_api({.path = path});
  EXPECT_FALSE(api->try_acquire("k", 10s)) << "the lease ended with its process, not its TTL";
  auto lock =
      api->acquire("k", 10s, {.max_wait = kTtl + 5s, .initial_delay = 5ms, .max_delay = 20ms});
  auto waited = std::chrono::steady_clock::now() - acquired_by;
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), std::stoull(fence_text));
  EXPECT_LT(waited, kTtl + 1s);
}

}  // namespace
}  // namespace lockkit::testing
