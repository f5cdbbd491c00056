// SPDX-License-Identifier: MIT
// BackendError's fields and message.
#include "lockkit/errors.hpp"

#include <gtest/gtest.h>

#include <type_traits>

namespace lockkit {
namespace {

static_assert(std::is_nothrow_copy_constructible_v<BackendError>);

TEST(BackendError, CarriesBackendKindAndMessage) {
  BackendError e("redis", ErrorKind::kTimeout, "try_acquire \"k\": timed out after 2s");
  EXPECT_STREQ(e.backend(), "redis");
  EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
  EXPECT_STREQ(e.what(), "redis: try_acquire \"k\": timed out after 2s");
  BackendError copy = e;
  EXPECT_STREQ(copy.backend(), "redis");
}

TEST(BackendError, OnlyTransientKindsAreRetryable) {
  EXPECT_TRUE(BackendError("x", ErrorKind::kUnavailable, "").retryable());
  EXPECT_TRUE(BackendError("x", ErrorKind::kTimeout, "").retryable());
  EXPECT_TRUE(BackendError("x", ErrorKind::kInDoubt, "").retryable());
  EXPECT_FALSE(BackendError("x", ErrorKind::kAuth, "").retryable());
  EXPECT_FALSE(BackendError("x", ErrorKind::kProtocol, "").retryable());
  EXPECT_FALSE(BackendError("x", ErrorKind::kUnsupported, "").retryable());
  EXPECT_FALSE(BackendError("x", ErrorKind::kIo, "").retryable());
}

TEST(BackendError, KindsHaveNames) {
  EXPECT_STREQ(to_string(ErrorKind::kInDoubt), "in-doubt");
  EXPECT_STREQ(to_string(ErrorKind::kAuth), "auth");
}

}  // namespace
}  // namespace lockkit
