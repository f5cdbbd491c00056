// SPDX-License-Identifier: MIT
// The lockkit contract, stated once; every backend's test binary (and a user's) instantiates it.
#include "lockkit/testing/conformance.hpp"

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "lockkit/errors.hpp"

namespace lockkit::testing {

void link_conformance_suite() noexcept {}

// A binary may run either suite alone (a store that grants everything runs LeaseStoreFaults).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LockApiConformance);

using std::chrono::milliseconds;
using namespace std::chrono_literals;

static_assert(!std::is_copy_constructible_v<Lock>);
static_assert(!std::is_copy_assignable_v<Lock>);
static_assert(std::is_nothrow_move_constructible_v<Lock>);
static_assert(std::is_nothrow_move_assignable_v<Lock>);
static_assert(std::is_nothrow_destructible_v<Lock>);

void LockApiConformance::SetUp() {
  api_ = GetParam().make();
  other_ = GetParam().make();
  ASSERT_NE(api_, nullptr);
  ASSERT_NE(other_, nullptr);
}

std::string LockApiConformance::Key(std::string_view suffix) const {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("conformance/") + info->name() + "/" + make_token().substr(0, 8) + "/" +
         std::string(suffix);
}

std::chrono::steady_clock::time_point LockApiConformance::Now() const {
  return GetParam().now ? GetParam().now() : std::chrono::steady_clock::now();
}

namespace {
constexpr milliseconds kLong = 30s;  // a TTL no test outlives
}  // namespace

TEST_P(LockApiConformance, SecondTryAcquireIsEmpty) {
  auto key = Key();
  auto first = api_->try_acquire(key, kLong);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->held());
  EXPECT_EQ(first->key(), key);
  EXPECT_FALSE(api_->try_acquire(key, kLong));
  EXPECT_FALSE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, DifferentKeysDoNotContend) {
  auto a = api_->try_acquire(Key("a"), kLong);
  auto b = other_->try_acquire(Key("b"), kLong);
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
}

TEST_P(LockApiConformance, TokensAreFresh128BitHex) {
  std::set<std::string> tokens;
  auto key = Key();
  for (int i = 0; i < 20; ++i) {
    auto lock = api_->try_acquire(key, kLong);
    ASSERT_TRUE(lock);
    ASSERT_EQ(lock->token().size(), 32u);
    EXPECT_EQ(lock->token().find_first_not_of("0123456789abcdef"), std::string::npos);
    tokens.insert(std::string(lock->token()));
    ASSERT_TRUE(lock->release());
  }
  EXPECT_EQ(tokens.size(), 20u);
}

TEST_P(LockApiConformance, EarlyReleaseFreesKeyAtOnce) {
  auto key = Key();
  auto lock = api_->try_acquire(key, kLong);
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->release());
  EXPECT_FALSE(lock->held());
  EXPECT_TRUE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, ReleaseIsIdempotent) {
  auto lock = api_->try_acquire(Key(), kLong);
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->release());
  EXPECT_FALSE(lock->release());
  EXPECT_FALSE(lock->release());
}

TEST_P(LockApiConformance, ExpiryFreesKey) {
  const auto ttl = GetParam().expiry_ttl;
  auto key = Key();
  auto lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  GetParam().advance(ttl + GetParam().slack + 1ms);
  EXPECT_FALSE(lock->held());
  EXPECT_TRUE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, LeaseHoldsUntilTtl) {
  const auto ttl = GetParam().expiry_ttl;
  auto key = Key();
  auto lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  GetParam().advance(ttl / 2);
  EXPECT_FALSE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, ReleaseAfterExpiryLeavesNextOwnerAlone) {
  const auto ttl = GetParam().expiry_ttl;
  auto key = Key();
  auto old_owner = api_->try_acquire(key, ttl);
  ASSERT_TRUE(old_owner);
  GetParam().advance(ttl + GetParam().slack + 1ms);
  auto next_owner = other_->try_acquire(key, kLong);
  ASSERT_TRUE(next_owner);
  EXPECT_FALSE(old_owner->release());
  EXPECT_FALSE(api_->try_acquire(key, kLong)) << "the old owner's release freed the new lock";
  EXPECT_TRUE(next_owner->held());
}

TEST_P(LockApiConformance, ExtendAfterTakeoverFails) {
  const auto ttl = GetParam().expiry_ttl;
  auto key = Key();
  auto old_owner = api_->try_acquire(key, ttl);
  ASSERT_TRUE(old_owner);
  GetParam().advance(ttl + GetParam().slack + 1ms);
  auto next_owner = other_->try_acquire(key, kLong);
  ASSERT_TRUE(next_owner);
  EXPECT_FALSE(old_owner->extend(kLong));
  EXPECT_FALSE(old_owner->held());
  EXPECT_FALSE(api_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, ExtendKeepsLeaseAlive) {
  const auto ttl = GetParam().expiry_ttl;
  auto key = Key();
  auto lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  auto before = lock->valid_until();
  GetParam().advance(ttl * 4 / 10);
  ASSERT_TRUE(lock->extend(ttl));
  EXPECT_GT(lock->valid_until(), before);
  GetParam().advance(ttl * 6 / 10);  // past the first expiry, well before the extended one
  EXPECT_FALSE(other_->try_acquire(key, kLong));
  EXPECT_TRUE(lock->release());
}

TEST_P(LockApiConformance, ExtendAfterReleaseFails) {
  auto lock = api_->try_acquire(Key(), kLong);
  ASSERT_TRUE(lock);
  ASSERT_TRUE(lock->release());
  EXPECT_FALSE(lock->extend(kLong));
}

TEST_P(LockApiConformance, ValidUntilIsNoLaterThanTtlFromRequestStart) {
  auto before = Now();
  auto lock = api_->try_acquire(Key(), kLong);
  auto after = Now();
  ASSERT_TRUE(lock);
  // The store's expiry is at least request start + ttl, and the request started after `before`
  // and before `after`; a valid_until later than `after + ttl` would outlast the store's lease.
  EXPECT_LE(lock->valid_until(), after + kLong);
  EXPECT_GT(lock->valid_until(), before + kLong - kLong / 10)
      << "drift margin is unreasonably large";
}

TEST_P(LockApiConformance, FenceIncreasesAcrossReleaseAndExpiry) {
  const auto ttl = GetParam().expiry_ttl;
  auto key = Key();
  auto first = api_->try_acquire(key, kLong);
  ASSERT_TRUE(first);
  auto f1 = first->fence();
  ASSERT_TRUE(first->release());
  auto second = other_->try_acquire(key, ttl);
  ASSERT_TRUE(second);
  auto f2 = second->fence();
  EXPECT_GT(f2, f1);
  GetParam().advance(ttl + GetParam().slack + 1ms);
  auto third = api_->try_acquire(key, kLong);
  ASSERT_TRUE(third);
  EXPECT_GT(third->fence(), f2);
  ASSERT_TRUE(third->release());
  auto fourth = api_->try_acquire(key, kLong);
  ASSERT_TRUE(fourth);
  EXPECT_GT(fourth->fence(), third->fence());
}

TEST_P(LockApiConformance, BinaryKeysRoundTrip) {
  std::string base = Key();
  std::string a = base + std::string("\0a\xff\xfe", 4);
  std::string b = base + std::string("\0b\xff\xfe", 4);
  auto la = api_->try_acquire(a, kLong);
  ASSERT_TRUE(la);
  EXPECT_EQ(la->key(), a);
  EXPECT_FALSE(other_->try_acquire(a, kLong));
  auto prefix_only = other_->try_acquire(base, kLong);
  EXPECT_TRUE(prefix_only) << "a key truncated at NUL collided";
  auto lb = other_->try_acquire(b, kLong);
  EXPECT_TRUE(lb) << "keys differing after a NUL byte collided";
  EXPECT_TRUE(la->release());
  EXPECT_TRUE(other_->try_acquire(a, kLong));
}

TEST_P(LockApiConformance, MaxLengthKeyWorks) {
  std::string key = Key();
  key.resize(kMaxKeyBytes, '\x01');
  auto lock = api_->try_acquire(key, kLong);
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->key(), key);
  EXPECT_FALSE(other_->try_acquire(key, kLong));
  EXPECT_TRUE(lock->release());
}

TEST_P(LockApiConformance, BadKeysAreRejectedByName) {
  try {
    (void)api_->try_acquire("", kLong);
    FAIL() << "empty key accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("key"), std::string::npos) << e.what();
  }
  std::string too_long(kMaxKeyBytes + 1, 'k');
  EXPECT_THROW((void)api_->try_acquire(too_long, kLong), std::invalid_argument);
  EXPECT_THROW((void)api_->acquire(too_long, kLong, RetryPolicy{}), std::invalid_argument);
}

TEST_P(LockApiConformance, BadTtlsAreRejectedByName) {
  auto key = Key();
  for (milliseconds ttl : {0ms, -1ms, -5000ms, kMaxTtl + 1ms}) {
    try {
      (void)api_->try_acquire(key, ttl);
      FAIL() << "ttl " << ttl.count() << "ms accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("ttl"), std::string::npos) << e.what();
    }
  }
  auto lock = api_->try_acquire(key, kMaxTtl);
  ASSERT_TRUE(lock);
  EXPECT_THROW((void)lock->extend(0ms), std::invalid_argument);
  EXPECT_THROW((void)lock->extend(kMaxTtl + 1ms), std::invalid_argument);
  EXPECT_TRUE(lock->held());
}

TEST_P(LockApiConformance, DestructorReleases) {
  auto key = Key();
  {
    auto lock = api_->try_acquire(key, kLong);
    ASSERT_TRUE(lock);
  }
  EXPECT_TRUE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, MoveTransfersOwnership) {
  auto key = Key();
  auto original = api_->try_acquire(key, kLong);
  ASSERT_TRUE(original);
  auto fence = original->fence();
  Lock moved = std::move(*original);
  EXPECT_FALSE(original->held());
  EXPECT_FALSE(original->release()) << "a moved-from lock released the lease";
  EXPECT_TRUE(moved.held());
  EXPECT_EQ(moved.fence(), fence);
  EXPECT_FALSE(other_->try_acquire(key, kLong));
  original.reset();  // destroying the moved-from handle must not release either
  EXPECT_FALSE(other_->try_acquire(key, kLong));
  EXPECT_TRUE(moved.release());
}

TEST_P(LockApiConformance, MoveAssignmentReleasesTheOldLease) {
  auto k1 = Key("1");
  auto k2 = Key("2");
  auto a = api_->try_acquire(k1, kLong);
  auto b = api_->try_acquire(k2, kLong);
  ASSERT_TRUE(a && b);
  *a = std::move(*b);
  EXPECT_EQ(a->key(), k2);
  EXPECT_TRUE(other_->try_acquire(k1, kLong)) << "the overwritten lease was not released";
  EXPECT_FALSE(other_->try_acquire(k2, kLong));
}

TEST_P(LockApiConformance, LockOutlivesItsApi) {
  auto key = Key();
  auto api = GetParam().make();
  auto lock = api->try_acquire(key, kLong);
  ASSERT_TRUE(lock);
  api.reset();
  EXPECT_TRUE(lock->held());
  EXPECT_TRUE(lock->extend(kLong));
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, WithLockRunsAndReleases) {
  auto key = Key();
  auto result = with_lock(*api_, key, kLong, [&] {
    EXPECT_FALSE(other_->try_acquire(key, kLong)) << "fn ran without the lock";
    return 42;
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, 42);
  EXPECT_TRUE(other_->try_acquire(key, kLong));
}

TEST_P(LockApiConformance, WithLockSkipsWhenBusy) {
  auto key = Key();
  auto holder = other_->try_acquire(key, kLong);
  ASSERT_TRUE(holder);
  bool ran = false;
  auto result = with_lock(*api_, key, kLong, [&] {
    ran = true;
    return 1;
  });
  EXPECT_FALSE(result);
  EXPECT_FALSE(ran);
  bool void_result = with_lock(*api_, key, kLong, [&] { ran = true; });
  EXPECT_FALSE(void_result);
  EXPECT_FALSE(ran);
}

TEST_P(LockApiConformance, WithLockReleasesWhenFunctionThrows) {
  auto key = Key();
  EXPECT_THROW(with_lock(*api_, key, kLong, []() -> int { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_TRUE(other_->try_acquire(key, kLong));
  bool ran = with_lock(*api_, key, kLong, [] {});
  EXPECT_TRUE(ran);
}

TEST_P(LockApiConformance, AcquireGivesUpAtItsDeadline) {
  auto key = Key();
  auto holder = other_->try_acquire(key, kLong);
  ASSERT_TRUE(holder);
  RetryPolicy policy{.max_wait = 200ms, .initial_delay = 5ms, .max_delay = 50ms};
  auto start = std::chrono::steady_clock::now();
  auto lock = api_->acquire(key, kLong, policy);
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(lock);
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 200ms + 2s) << "acquire slept far past its deadline";
}

TEST_P(LockApiConformance, AcquireSucceedsWhenHolderReleases) {
  auto key = Key();
  auto holder = other_->try_acquire(key, kLong);
  ASSERT_TRUE(holder);
  auto fence = holder->fence();
  std::atomic<bool> released{false};
  std::thread releaser([&] {
    std::this_thread::sleep_for(100ms);  // makes acquire retry at least once
    released = holder->release();
  });
  auto lock = api_->acquire(key, kLong, RetryPolicy{.max_wait = 10s});
  releaser.join();
  EXPECT_TRUE(released);
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), fence);
}

TEST_P(LockApiConformance, ReleaseAndExtendByTokenCheckTheToken) {
  auto key = Key();
  auto lock = api_->try_acquire(key, kLong);
  ASSERT_TRUE(lock);
  std::string wrong = make_token();
  EXPECT_FALSE(other_->release(key, wrong));
  EXPECT_FALSE(other_->extend(key, wrong, kLong));
  EXPECT_FALSE(other_->try_acquire(key, kLong));
  EXPECT_TRUE(other_->extend(key, lock->token(), kLong));
  EXPECT_TRUE(other_->release(key, lock->token()));
  EXPECT_TRUE(other_->try_acquire(key, kLong));
  EXPECT_FALSE(lock->release()) << "released by token already";
}

TEST_P(LockApiConformance, StatusAndListShowHoldersWithoutTokens) {
  auto prefix = Key("");
  auto held = api_->try_acquire(prefix + "a", kLong);
  auto also = api_->try_acquire(prefix + "b", kLong);
  ASSERT_TRUE(held && also);
  auto info = other_->status(prefix + "a");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->key, prefix + "a");
  EXPECT_EQ(info->fence, held->fence());
  EXPECT_GT(info->remaining, 0ms);
  EXPECT_LE(info->remaining, kLong);
  EXPECT_FALSE(other_->status(prefix + "free"));
  auto listed = other_->list(prefix);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].key, prefix + "a");
  EXPECT_EQ(listed[1].key, prefix + "b");
  ASSERT_TRUE(also->release());
  EXPECT_EQ(other_->list(prefix).size(), 1u);
}

TEST_P(LockApiConformance, ThreadsNeverOverlap) {
  auto key = Key();
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> granted{0};
  long counter = 0;  // plain: a data race here is exactly what the lock must prevent
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto api = GetParam().make();
      for (int i = 0; i < kRounds; ++i) {
        auto lock = api->acquire(
            key, kLong, RetryPolicy{.max_wait = 30s, .initial_delay = 1ms, .max_delay = 5ms});
        if (!lock) continue;
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counter;
        granted.fetch_add(1);
        inside.fetch_sub(1);
        EXPECT_TRUE(lock->release());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(granted.load(), kThreads * kRounds);
  EXPECT_EQ(counter, granted.load());
}

}  // namespace lockkit::testing
