// SPDX-License-Identifier: MIT
// Backoff delays and acquire's deadline.
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

#include "lockkit/noop.hpp"
#include "lockkit/retry.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

TEST(RetryPolicy, BackoffStaysWithinItsCap) {
  RetryPolicy policy{.max_wait = 10s, .initial_delay = 10ms, .max_delay = 80ms};
  for (unsigned attempt = 0; attempt < 40; ++attempt) {
    auto cap = std::min<std::chrono::milliseconds>(80ms, 10ms * (1LL << std::min(attempt, 10u)));
    for (int i = 0; i < 50; ++i) {
      auto d = backoff_delay(policy, attempt);
      EXPECT_GE(d, 0ms);
      EXPECT_LE(d, cap) << "attempt " << attempt;
    }
  }
}

TEST(RetryPolicy, BackoffIsJittered) {
  RetryPolicy policy{.max_wait = 10s, .initial_delay = 100ms, .max_delay = 100ms};
  std::set<long> seen;
  for (int i = 0; i < 100; ++i) seen.insert(static_cast<long>(backoff_delay(policy, 3).count()));
  EXPECT_GT(seen.size(), 20u) << "delays are not spread out";
}

TEST(RetryPolicy, InvalidPoliciesAreRejectedByField) {
  auto message = [](RetryPolicy p) -> std::string {
    try {
      validate_retry_policy(p);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message({.max_wait = -1ms}).rfind("max_wait", 0), 0u);
  EXPECT_EQ(message({.max_wait = 1s, .initial_delay = 0ms}).rfind("initial_delay", 0), 0u);
  EXPECT_EQ(
      message({.max_wait = 1s, .initial_delay = 50ms, .max_delay = 10ms}).rfind("max_delay", 0),
      0u);
  EXPECT_EQ(message({}), "");
}

TEST(RetryPolicy, AcquireNeverPassesItsDeadline) {
  auto locked_api = make_noop_lock_api(true);
  LockApi& locked = *locked_api;
  for (auto wait : {0ms, 30ms, 120ms}) {
    auto start = std::chrono::steady_clock::now();
    auto lock = locked.acquire(
        "k", 1s, RetryPolicy{.max_wait = wait, .initial_delay = 7ms, .max_delay = 1000ms});
    auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(lock);
    EXPECT_GE(elapsed, wait);
    EXPECT_LT(elapsed, wait + 500ms) << "slept past the deadline";
  }
}

TEST(RetryPolicy, AcquireWithZeroWaitTriesOnce) {
  auto unlocked_api = make_noop_lock_api(false);
  LockApi& unlocked = *unlocked_api;
  auto lock = unlocked.acquire("k", 1s, RetryPolicy{.max_wait = 0ms});
  EXPECT_TRUE(lock);
}

}  // namespace
}  // namespace lockkit
