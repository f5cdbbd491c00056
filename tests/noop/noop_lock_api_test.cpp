// SPDX-License-Identifier: MIT
// noop: always or never hands out a lock, and still validates arguments.
#include "lockkit/noop.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace lockkit {
namespace {

using namespace std::chrono_literals;

TEST(NoopLockApi, UnlockedHandsOutSeveralLocksOnOneKey) {
  auto api_ptr = make_noop_lock_api(false);
  LockApi& api = *api_ptr;
  auto a = api.try_acquire("k", 1s);
  auto b = api.try_acquire("k", 1s);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->token(), b->token());
  EXPECT_GT(b->fence(), a->fence());
  EXPECT_TRUE(a->held());
  EXPECT_TRUE(a->release());
  EXPECT_FALSE(a->release());
  EXPECT_TRUE(b->extend(2s));
}

TEST(NoopLockApi, LockedNeverHandsOutALock) {
  auto api_ptr = make_noop_lock_api(true);
  LockApi& api = *api_ptr;
  EXPECT_FALSE(api.try_acquire("k", 1s));
  EXPECT_FALSE(api.acquire("k", 1s, RetryPolicy{.max_wait = 20ms}));
  EXPECT_FALSE(with_lock(api, "k", 1s, [] {}));
  EXPECT_FALSE(api.status("k"));
  EXPECT_TRUE(api.list().empty());
}

TEST(NoopLockApi, StillValidatesArguments) {
  auto api_ptr = make_noop_lock_api(false);
  LockApi& api = *api_ptr;
  EXPECT_THROW((void)api.try_acquire("", 1s), std::invalid_argument);
  EXPECT_THROW((void)api.try_acquire("k", 0ms), std::invalid_argument);
  EXPECT_THROW((void)api.try_acquire(std::string(1025, 'k'), 1s), std::invalid_argument);
}

}  // namespace
}  // namespace lockkit
