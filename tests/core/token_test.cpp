// SPDX-License-Identifier: MIT
// Owner tokens: format, uniqueness across threads and across fork.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

TEST(MakeToken, Is32LowercaseHexCharacters) {
  for (int i = 0; i < 1000; ++i) {
    std::string t = make_token();
    ASSERT_EQ(t.size(), 32u);
    ASSERT_EQ(t.find_first_not_of("0123456789abcdef"), std::string::npos) << t;
  }
}

TEST(MakeToken, NeverRepeatsAcrossThreads) {
  std::mutex mu;
  std::set<std::string> all;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> mine;
      for (int i = 0; i < 5000; ++i) mine.push_back(make_token());
      std::lock_guard<std::mutex> guard(mu);
      all.insert(mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(all.size(), 8u * 5000u);
}

TEST(MakeToken, ForkedChildDrawsFreshTokens) {
  (void)make_token();  // fill this thread's batch so the child inherits it
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string t = make_token();
    (void)!write(fds[1], t.data(), t.size());
    _exit(0);
  }
  close(fds[1]);
  std::string parent = make_token();
  char buf[32];
  ASSERT_EQ(read(fds[0], buf, sizeof buf), 32);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_NE(std::string(buf, 32), parent) << "parent and child handed out the same token";
}

}  // namespace
}  // namespace lockkit
