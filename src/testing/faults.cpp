// SPDX-License-Identifier: MIT
// The conformance kit's fault cases: a failing store is reported as BackendError, never as
// "busy" or "not ours", and an in-doubt acquire leaves no lease that nobody owns.
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/testing/conformance.hpp"

namespace lockkit::testing {

void link_fault_suite() noexcept {}

// A binary may run either suite alone (a backend that is not a LeaseStore runs LockApiConformance).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LeaseStoreFaults);

using namespace std::chrono_literals;

void FaultyStore::fail_if(bool condition) const {
  if (condition) {
    throw BackendError(inner_->backend(), ErrorKind::kUnavailable, "injected fault: unreachable");
  }
}

std::optional<std::uint64_t> FaultyStore::acquire(std::string_view key, std::string_view token,
                                                  std::chrono::milliseconds ttl) {
  Fault fault = fault_.load();
  fail_if(fault == Fault::kUnreachable);
  auto fence = inner_->acquire(key, token, ttl);
  if (fault == Fault::kInDoubtAcquire || fault == Fault::kInDoubtAcquireReleaseFails) {
    throw BackendError(inner_->backend(), ErrorKind::kInDoubt, "injected fault: reply lost");
  }
  return fence;
}

bool FaultyStore::release(std::string_view key, std::string_view token) {
  Fault fault = fault_.load();
  fail_if(fault == Fault::kUnreachable || fault == Fault::kInDoubtAcquireReleaseFails);
  releases_.fetch_add(1);
  return inner_->release(key, token);
}

bool FaultyStore::extend(std::string_view key, std::string_view token,
                         std::chrono::milliseconds ttl) {
  fail_if(fault_.load() == Fault::kUnreachable);
  return inner_->extend(key, token, ttl);
}

void FaultyStore::extend_many(std::span<const ExtendRequest> requests,
                              std::span<ExtendOutcome> out) {
  fail_if(fault_.load() == Fault::kUnreachable);
  inner_->extend_many(requests, out);
}

std::optional<LockInfo> FaultyStore::status(std::string_view key) {
  fail_if(fault_.load() == Fault::kUnreachable);
  return inner_->status(key);
}

std::vector<LockInfo> FaultyStore::list(std::string_view prefix) {
  fail_if(fault_.load() == Fault::kUnreachable);
  return inner_->list(prefix);
}

void LeaseStoreFaults::SetUp() {
  ASSERT_TRUE(GetParam().make_store) << "StoreCase::make_store is required";
  store_ = GetParam().make_store();
  ASSERT_NE(store_, nullptr);
}

std::string LeaseStoreFaults::Key(std::string_view suffix) const {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("faults/") + info->name() + "/" + make_token().substr(0, 8) + "/" +
         std::string(suffix);
}

namespace {
constexpr std::chrono::milliseconds kLong = 30s;

// Runs `call` and returns the BackendError it threw; fails the test if it threw nothing or
// something else.
template <class F>
std::optional<ErrorKind> ErrorKindOf(F&& call) {
  try {
    call();
  } catch (const BackendError& e) {
    return e.kind();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than BackendError: " << e.what();
    return std::nullopt;
  }
  ADD_FAILURE() << "a failing store's call returned instead of throwing BackendError";
  return std::nullopt;
}
}  // namespace

TEST_P(LeaseStoreFaults, StoreGrantsOnceAndChecksTokens) {
  if (!GetParam().exclusive) GTEST_SKIP() << GetParam().name << " grants every request";
  auto key = Key();
  auto a = make_token();
  auto b = make_token();
  auto first = store_->acquire(key, a, kLong);
  ASSERT_TRUE(first);
  EXPECT_FALSE(store_->acquire(key, b, kLong)) << "a held key was granted again";
  EXPECT_FALSE(store_->release(key, b)) << "released with someone else's token";
  EXPECT_FALSE(store_->extend(key, b, kLong)) << "extended with someone else's token";
  auto info = store_->status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, *first);
  EXPECT_TRUE(store_->extend(key, a, kLong));
  EXPECT_TRUE(store_->release(key, a));
  EXPECT_FALSE(store_->release(key, a)) << "release is not idempotent";
  EXPECT_FALSE(store_->status(key));
  auto second = store_->acquire(key, b, kLong);
  ASSERT_TRUE(second);
  EXPECT_GT(*second, *first) << "fences must increase across releases";
  EXPECT_TRUE(store_->release(key, b));
}

// `extend_many` says per request what `extend` would have: a lease still ours is extended,
// while another holder's, an expired, a released and a free key are left alone.
TEST_P(LeaseStoreFaults, ExtendManyGivesEachRequestItsOwnOutcome) {
  if (!GetParam().exclusive) GTEST_SKIP() << GetParam().name << " grants every request";
  std::vector<ExtendOutcome> none;
  store_->extend_many({}, none);  // an empty round is no error
  // One lease runs out first, so that the others keep most of their ttl. Its ttl leaves room
  // for a slow acquire (a quorum of five nodes under a sanitizer on a loaded machine): a store
  // may refuse a lease whose validity would be over by the time its acquire returns.
  const auto expired = Key("expired");
  const auto expired_token = make_token();
  ASSERT_TRUE(store_->acquire(expired, expired_token, 300ms));
  // A store on a fake clock never gets there: its lease is released instead (also not ours).
  const auto wait_start = std::chrono::steady_clock::now();
  const auto store_start = store_->now();
  while (store_->status(expired)) {
    const auto waited = std::chrono::steady_clock::now() - wait_start;
    if (waited > 3s || (waited > 100ms && store_->now() == store_start)) {
      ASSERT_TRUE(store_->release(expired, expired_token));
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  constexpr auto kShort = 5s;
  const auto ours = Key("ours"), theirs = Key("theirs"), released = Key("released"),
             free = Key("free"), ours_too = Key("ours-too");
  const auto a = make_token(), b = make_token(), c = make_token(), d = make_token();
  ASSERT_TRUE(store_->acquire(ours, a, kShort));
  auto their_fence = store_->acquire(theirs, b, kShort);
  ASSERT_TRUE(their_fence);
  ASSERT_TRUE(store_->acquire(released, c, kShort));
  ASSERT_TRUE(store_->release(released, c));
  ASSERT_TRUE(store_->acquire(ours_too, d, kShort));
  const std::vector<ExtendRequest> requests = {
      {ours, a, kLong},     {theirs, a, kLong}, {expired, expired_token, kLong},
      {released, c, kLong}, {free, a, kLong},   {ours_too, d, kLong},
  };
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kFailed);
  store_->extend_many(requests, out);
  const std::vector<ExtendOutcome> expected = {
      ExtendOutcome::kExtended, ExtendOutcome::kNotOurs, ExtendOutcome::kNotOurs,
      ExtendOutcome::kNotOurs,  ExtendOutcome::kNotOurs, ExtendOutcome::kExtended,
  };
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(static_cast<int>(out[i]), static_cast<int>(expected[i]))
        << "request " << i << " (" << requests[i].key << ")";
  }
  auto info = store_->status(ours);
  ASSERT_TRUE(info);
  EXPECT_GT(info->remaining, kShort) << "reported extended but still on its old ttl";
  info = store_->status(theirs);
  ASSERT_TRUE(info) << "someone else's lease was touched";
  EXPECT_EQ(info->fence, *their_fence);
  EXPECT_LE(info->remaining, kShort) << "someone else's lease was extended";
  EXPECT_FALSE(store_->status(expired)) << "an expired lease came back";
  EXPECT_FALSE(store_->status(released)) << "a released lease came back";
  EXPECT_FALSE(store_->status(free));
  EXPECT_TRUE(store_->release(ours, a));
  EXPECT_TRUE(store_->release(theirs, b));
  EXPECT_TRUE(store_->release(ours_too, d));
}

// A round against a store that cannot be reached fails as a whole (`BackendError`) or request
// by request (`kFailed`), within the store's timeouts; never "not ours".
TEST_P(LeaseStoreFaults, ExtendManyOnUnreachableStoreFailsEveryRequest) {
  if (!GetParam().make_unreachable) {
    GTEST_SKIP() << GetParam().name << " gives no StoreCase::make_unreachable";
  }
  std::shared_ptr<LeaseStore> dead;
  try {
    dead = GetParam().make_unreachable();
  } catch (const BackendError&) {
    return;
  }
  ASSERT_NE(dead, nullptr);
  const auto k1 = Key("1"), k2 = Key("2"), k3 = Key("3");
  const auto token = make_token();
  const std::vector<ExtendRequest> requests = {
      {k1, token, kLong}, {k2, token, kLong}, {k3, token, kLong}};
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kExtended);
  const auto start = std::chrono::steady_clock::now();
  try {
    dead->extend_many(requests, out);
    for (std::size_t i = 0; i < out.size(); ++i) {
      EXPECT_EQ(static_cast<int>(out[i]), static_cast<int>(ExtendOutcome::kFailed))
          << "request " << i << ": a store that cannot be reached said something about it";
    }
  } catch (const BackendError&) {  // the round failed as a whole
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "blocked past the store's timeouts";
}

TEST_P(LeaseStoreFaults, UnreachableStoreThrowsBackendErrorNeverEmpty) {
  auto faulty = std::make_shared<FaultyStore>(store_);
  auto api = make_lock_api(faulty);
  auto key = Key();
  auto held = api->try_acquire(Key("held"), kLong);
  ASSERT_TRUE(held);
  faulty->inject(FaultyStore::Fault::kUnreachable);
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->try_acquire(key, kLong); }));
  EXPECT_TRUE(ErrorKindOf([&] {
    (void)api->acquire(key, kLong, RetryPolicy{.max_wait = 100ms, .initial_delay = 5ms});
  })) << "acquire on a dead store must not end as 'busy'";
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->release(key, held->token()); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->extend(key, held->token(), kLong); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->status(key); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->list(""); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)held->extend(kLong); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)held->release(); }));
  // A release that failed leaves the lock releasable.
  faulty->inject(FaultyStore::Fault::kNone);
  EXPECT_TRUE(held->release());
}

TEST_P(LeaseStoreFaults, UnreachableRealStoreThrowsBackendError) {
  if (!GetParam().make_unreachable) {
    GTEST_SKIP() << GetParam().name << " gives no StoreCase::make_unreachable";
  }
  std::shared_ptr<LeaseStore> dead;
  // Opening may already fail; that is reported as BackendError too.
  try {
    dead = GetParam().make_unreachable();
  } catch (const BackendError&) {
    return;
  }
  ASSERT_NE(dead, nullptr);
  auto api = make_lock_api(dead);
  auto key = Key();
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->try_acquire(key, kLong); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->release(key, make_token()); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->extend(key, make_token(), kLong); }));
  EXPECT_TRUE(ErrorKindOf([&] { (void)api->status(key); }));
}

TEST_P(LeaseStoreFaults, InDoubtAcquireLeavesNoLeaseThatNobodyOwns) {
  auto faulty = std::make_shared<FaultyStore>(store_);
  auto api = make_lock_api(faulty);
  auto key = Key();
  faulty->inject(FaultyStore::Fault::kInDoubtAcquire);
  EXPECT_EQ(ErrorKindOf([&] { (void)api->try_acquire(key, kLong); }), ErrorKind::kInDoubt);
  EXPECT_EQ(faulty->releases(), 1) << "the core did not release its own token";
  faulty->inject(FaultyStore::Fault::kNone);
  if (!GetParam().exclusive) return;
  EXPECT_FALSE(store_->status(key)) << "the in-doubt grant was left behind";
  auto lock = make_lock_api(store_)->try_acquire(key, kLong);
  EXPECT_TRUE(lock) << "the key stayed taken by a lease nobody owns";
}

TEST_P(LeaseStoreFaults, InDoubtAcquireStaysInDoubtWhenCleanupFails) {
  auto faulty = std::make_shared<FaultyStore>(store_);
  auto api = make_lock_api(faulty);
  auto key = Key();
  faulty->inject(FaultyStore::Fault::kInDoubtAcquireReleaseFails);
  EXPECT_EQ(ErrorKindOf([&] { (void)api->try_acquire(key, kLong); }), ErrorKind::kInDoubt)
      << "the cleanup's error replaced the in-doubt one";
}

}  // namespace lockkit::testing
