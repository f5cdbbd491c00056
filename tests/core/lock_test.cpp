// SPDX-License-Identifier: MIT
// The Lock handle on its own: release paths, failures, the error hook, extend's validity.
#include "lockkit/lock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>

#include "core/lease_ops.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

// Records calls; fails on demand. Stands in for the core's LeaseOps, not for a store.
class ScriptedOps final : public detail::LeaseOps {
 public:
  std::string_view backend() const noexcept override { return "scripted"; }
  bool release(std::string_view, std::string_view) override {
    ++releases;
    if (fail_release) throw BackendError("scripted", ErrorKind::kUnavailable, "down");
    return release_result;
  }
  bool extend(std::string_view, std::string_view, std::chrono::milliseconds) override {
    ++extends;
    return extend_result;
  }
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return ttl / 100;
  }
  int releases = 0;
  int extends = 0;
  bool fail_release = false;
  bool release_result = true;
  bool extend_result = true;
};

Lock MakeLock(const std::shared_ptr<ScriptedOps>& ops) {
  auto now = std::chrono::steady_clock::now();
  return Lock(detail::CoreLockTag{}, ops, "k", "t", 7, now + 10s, now, 10s);
}

TEST(Lock, ReleaseCallsTheStoreOnce) {
  auto ops = std::make_shared<ScriptedOps>();
  {
    Lock lock = MakeLock(ops);
    EXPECT_TRUE(lock.release());
    EXPECT_FALSE(lock.release());
  }
  EXPECT_EQ(ops->releases, 1) << "the destructor released again";
}

TEST(Lock, FailedReleaseThrowsAndStaysReleasable) {
  auto ops = std::make_shared<ScriptedOps>();
  Lock lock = MakeLock(ops);
  ops->fail_release = true;
  EXPECT_THROW(lock.release(), BackendError);
  EXPECT_TRUE(lock.held());
  ops->fail_release = false;
  EXPECT_TRUE(lock.release());
  EXPECT_EQ(ops->releases, 2);
}

TEST(Lock, DestructorSwallowsFailuresAndReportsThemToTheHook) {
  auto ops = std::make_shared<ScriptedOps>();
  std::atomic<int> reported{0};
  std::string reported_key;
  set_error_hook([&](std::string_view key, const std::exception& e) {
    reported_key = key;
    EXPECT_NE(std::string(e.what()).find("down"), std::string::npos);
    ++reported;
  });
  {
    Lock lock = MakeLock(ops);
    ops->fail_release = true;
  }
  set_error_hook(nullptr);
  EXPECT_EQ(reported.load(), 1);
  EXPECT_EQ(reported_key, "k");
}

TEST(Lock, HookThatThrowsDoesNotEscapeTheDestructor) {
  auto ops = std::make_shared<ScriptedOps>();
  set_error_hook([](std::string_view, const std::exception&) { throw std::runtime_error("bad"); });
  {
    Lock lock = MakeLock(ops);
    ops->fail_release = true;
  }
  set_error_hook(nullptr);
  SUCCEED();
}

TEST(Lock, ExtendMovesValidityFromRequestStartMinusDrift) {
  auto ops = std::make_shared<ScriptedOps>();
  Lock lock = MakeLock(ops);
  auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(lock.extend(100s));
  auto after = std::chrono::steady_clock::now();
  EXPECT_GE(lock.valid_until(), before + 100s - 1s);
  EXPECT_LE(lock.valid_until(), after + 100s - 1s);
}

TEST(Lock, LostExtendDropsTheLease) {
  auto ops = std::make_shared<ScriptedOps>();
  Lock lock = MakeLock(ops);
  ops->extend_result = false;
  EXPECT_FALSE(lock.extend(10s));
  EXPECT_FALSE(lock.held());
  EXPECT_FALSE(lock.release());
  EXPECT_EQ(ops->releases, 0) << "a lost lease needs no release";
}

TEST(Lock, KeepsItsOpsAlive) {
  std::weak_ptr<ScriptedOps> weak;
  std::optional<Lock> lock;
  {
    auto ops = std::make_shared<ScriptedOps>();
    weak = ops;
    lock.emplace(MakeLock(ops));
  }
  EXPECT_FALSE(weak.expired());
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(weak.expired()) << "a released lock still pins its backend";
}

}  // namespace
}  // namespace lockkit
