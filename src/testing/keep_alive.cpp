// SPDX-License-Identifier: MIT
// The conformance kit's keep-alive cases: `Lock::keep_alive`, `Lock::stop_token` and `max_hold`
// on a real store, on real time, through the public API only.
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "lockkit/testing/conformance.hpp"

namespace lockkit::testing {

void link_keep_alive_suite() noexcept {}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(KeepAliveConformance);

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

namespace {

// Lateness allowed to timers and thread wake-ups on a loaded machine.
constexpr auto kSchedulingSlack = 500ms;
// Lateness allowed to the keeper's timer where a case checks when it fired: the stop is due at
// valid_until - loss_margin(ttl) (10 ms before it for short ttls), and a loaded machine (CI
// running sanitizer builds side by side) wakes a thread that much late now and then.
constexpr auto kTimerLateness = 100ms;

// Checks that the keeper requested the stop at its deadline, before valid_until, give or take a
// late timer.
void ExpectStopByTheDeadline(Steady::time_point stop, const Lock& lock,
                             std::chrono::milliseconds ttl) {
  EXPECT_LT(stop, lock.valid_until() - loss_margin(ttl) + kTimerLateness)
      << "the stop came after valid_until - loss_margin(ttl), later than a late timer explains";
}

template <class Pred>
bool await(Pred pred, Steady::duration limit) {
  const auto deadline = Steady::now() + limit;
  while (!pred()) {
    if (Steady::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

unsigned threads_of_this_process() {
  unsigned n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

// Watches one kept-alive lease: when it was declared lost, why, and when renewals were sent
// (`should_renew` is asked right before each one).
class Probe {
 public:
  KeepAliveOptions options(std::chrono::milliseconds max_hold = 0ms) {
    return KeepAliveOptions{.on_lost =
                                [this](std::string_view why) {
                                  std::lock_guard<std::mutex> guard(mu_);
                                  reason_ = why;
                                  lost_at_ = Steady::now();
                                  ++losses_;
                                  loss_count_.fetch_add(1);
                                },
                            .max_hold = max_hold,
                            .should_renew =
                                [this] {
                                  renewal_count_.fetch_add(1);
                                  std::lock_guard<std::mutex> guard(mu_);
                                  renewals_.push_back(Steady::now());
                                  return true;
                                },
                            .on_renewal_error = {}};
  }
  int losses() {
    std::lock_guard<std::mutex> guard(mu_);
    return losses_;
  }
  std::string reason() {
    std::lock_guard<std::mutex> guard(mu_);
    return reason_;
  }
  Steady::time_point lost_at() {
    std::lock_guard<std::mutex> guard(mu_);
    return lost_at_;
  }
  std::vector<Steady::time_point> renewals() {
    std::lock_guard<std::mutex> guard(mu_);
    return renewals_;
  }
  // Lock-free, for a forked child (a mutex may have been held by a thread it does not have).
  int renewal_count() const { return renewal_count_.load(); }
  int loss_count() const { return loss_count_.load(); }

 private:
  std::mutex mu_;
  int losses_ = 0;
  std::string reason_;
  Steady::time_point lost_at_{};
  std::vector<Steady::time_point> renewals_;
  std::atomic<int> renewal_count_{0};
  std::atomic<int> loss_count_{0};
};

}  // namespace

void KeepAliveConformance::SetUp() {
  ASSERT_TRUE(GetParam().make) << "KeepAliveCase::make is required";
  api_ = GetParam().make();
  other_ = GetParam().make();
  ASSERT_NE(api_, nullptr);
  ASSERT_NE(other_, nullptr);
}

std::string KeepAliveConformance::Key(std::string_view suffix) const {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("keep-alive/") + info->name() + "/" + make_token().substr(0, 8) + "/" +
         std::string(suffix);
}

// Kept alive for 5 x ttl: nobody else can take the key, the fence stays, the stop never comes.
TEST_P(KeepAliveConformance, KeptAliveForFiveTtlsNobodyElseTakesIt) {
  const auto ttl = GetParam().ttl;
  const auto key = Key();
  auto lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  const auto fence = lock->fence();
  Probe probe;
  lock->keep_alive(probe.options());
  const auto end = Steady::now() + 5 * ttl;
  int tries = 0;
  while (Steady::now() < end) {
    ASSERT_FALSE(other_->try_acquire(key, ttl))
        << "another client took a kept-alive lease; holder told: "
        << lock->stop_token().stop_requested() << " " << probe.reason();
    ++tries;
    std::this_thread::sleep_for(ttl / 4);
  }
  EXPECT_GE(tries, 10);
  EXPECT_TRUE(lock->held());
  EXPECT_FALSE(lock->stop_token().stop_requested());
  EXPECT_EQ(lock->fence(), fence);
  auto info = other_->status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, fence);
  EXPECT_GE(probe.renewals().size(), 12u);  // every ttl/3
  EXPECT_EQ(probe.losses(), 0) << probe.reason();
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(other_->try_acquire(key, ttl));
}

// The lease deleted behind the holder's back: on_lost and the stop come within one renewal
// period (ttl/3) plus slack, once.
TEST_P(KeepAliveConformance, RemovedBehindTheHoldersBackIsNoticedWithinARenewalPeriod) {
  const auto ttl = 2 * GetParam().ttl;  // a period long enough to tell "within one" apart
  const auto key = Key();
  auto lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  Probe probe;
  lock->keep_alive(probe.options());
  auto token = lock->stop_token();
  if (GetParam().remove) {
    GetParam().remove(key);
  } else {
    ASSERT_TRUE(other_->release(key, lock->token()));
  }
  const auto deleted = Steady::now();
  ASSERT_TRUE(await([&] { return token.stop_requested(); }, ttl / 3 + kSchedulingSlack))
      << "the loss went unnoticed for a renewal period";
  ASSERT_TRUE(await([&] { return probe.losses() == 1; }, kSchedulingSlack));
  EXPECT_LT(probe.lost_at() - deleted, ttl / 3 + kSchedulingSlack);
  EXPECT_NE(probe.reason().find("no longer ours"), std::string::npos) << probe.reason();
  EXPECT_FALSE(lock->held());
  std::this_thread::sleep_for(ttl / 2);
  EXPECT_EQ(probe.losses(), 1);
  EXPECT_FALSE(lock->release());
}

// max_hold: renewal stops, the holder is told before valid_until, and another client gets the
// key once the lease has run out.
TEST_P(KeepAliveConformance, MaxHoldStopsRenewalAndAnotherClientGetsTheKey) {
  const auto ttl = GetParam().ttl;
  const auto key = Key();
  const auto start = Steady::now();
  auto lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  const auto acquired = Steady::now();  // max_hold counts from no later than this
  Probe probe;
  lock->keep_alive(probe.options(ttl));  // renewed at ttl/3 and 2 ttl/3, never after ttl
  std::atomic<long long> stopped_at{0};
  std::stop_callback on_stop(lock->stop_token(),
                             [&] { stopped_at = Steady::now().time_since_epoch().count(); });
  std::optional<Lock> next;
  ASSERT_TRUE(await(
      [&] {
        next = other_->try_acquire(key, ttl);
        return next.has_value();
      },
      3 * ttl + GetParam().slack + kSchedulingSlack));
  const auto taken = Steady::now();
  EXPECT_GT(taken - start, ttl) << "taken before the renewed lease could have run out";
  // `should_renew` is asked right before a renewal, and the keeper reads its clock again after
  // the answer: an ask that a loaded machine delayed past max_hold is answered but not sent. So
  // asks get a late timer's slack, and what was sent shows in the lease's validity: the last
  // renewal, sent before max_hold (ttl here), ends no later than two ttls after the acquire.
  for (auto at : probe.renewals()) {
    EXPECT_LT(at - acquired, ttl + kTimerLateness) << "asked to renew long after max_hold";
  }
  EXPECT_LE(lock->valid_until(), acquired + 2 * ttl + kTimerLateness) << "renewed after max_hold";
  ASSERT_NE(stopped_at.load(), 0) << "the holder was not told before the next owner took it";
  const auto stop = Steady::time_point(Steady::duration(stopped_at.load()));
  ExpectStopByTheDeadline(stop, *lock, ttl);
  EXPECT_EQ(probe.losses(), 1);
  EXPECT_NE(probe.reason().find("max_hold"), std::string::npos) << probe.reason();
  EXPECT_GT(next->fence(), lock->fence());
}

// The store stops answering while held: the stop comes before valid_until, by the local clock;
// no call blocks past its timeout; once the store answers again nothing is renewed and the key
// frees within a ttl.
TEST_P(KeepAliveConformance, PausedStoreSignalsLossBeforeValidUntilAndNothingIsRenewedAfter) {
  const KeepAliveCase& c = GetParam();
  if (!c.pause || !c.resume || !c.make_impatient) {
    GTEST_SKIP() << c.name << " gives no KeepAliveCase::pause, resume and make_impatient";
  }
  const auto ttl = 3 * c.ttl;  // room for a retry or two before the deadline
  const auto call_limit = c.call_limit + kSchedulingSlack;
  auto api = c.make_impatient();
  const auto key = Key();
  auto lock = api->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  Probe probe;
  lock->keep_alive(probe.options());
  std::atomic<long long> stopped_at{0};
  std::stop_callback on_stop(lock->stop_token(),
                             [&] { stopped_at = Steady::now().time_since_epoch().count(); });
  ASSERT_TRUE(await([&] { return probe.renewals().size() >= 1; }, ttl));
  struct Resume {
    const KeepAliveCase& c;
    bool paused = false;
    ~Resume() {
      if (paused) c.resume();
    }
  } resume{c};
  c.pause();
  resume.paused = true;
  const auto paused = Steady::now();
  ASSERT_TRUE(await([&] { return stopped_at.load() != 0; }, 2 * ttl + kSchedulingSlack));
  const auto stop = Steady::time_point(Steady::duration(stopped_at.load()));
  ExpectStopByTheDeadline(stop, *lock, ttl);
  EXPECT_LT(stop - paused, ttl + kSchedulingSlack);
  EXPECT_FALSE(lock->held());
  ASSERT_TRUE(await([&] { return probe.losses() == 1; }, kSchedulingSlack));
  const auto lost = probe.lost_at();
  // Calls against the silent store end within their timeouts, with an error.
  const auto call = Steady::now();
  try {
    (void)lock->release();
  } catch (const std::exception&) {
  }
  EXPECT_LT(Steady::now() - call, call_limit) << "release blocked past its timeouts";
  c.resume();
  resume.paused = false;
  std::optional<Lock> next;
  EXPECT_TRUE(await(
      [&] {
        next = other_->try_acquire(key, ttl);
        return next.has_value();
      },
      ttl + c.slack + call_limit + kSchedulingSlack))
      << "the lease declared lost lingered";
  for (auto at : probe.renewals()) EXPECT_LT(at, lost) << "a renewal sent after the loss";
  EXPECT_EQ(probe.losses(), 1);
}

// Many leases kept alive at once: all stay held for two ttls, renewed by a few threads.
TEST_P(KeepAliveConformance, ManyLeasesAreKeptByAFewThreads) {
  constexpr int kMany = 100;
  const auto ttl = GetParam().ttl;
  const unsigned before = threads_of_this_process();
  std::atomic<long> renewals{0};
  std::vector<Lock> locks;
  const std::string prefix = Key("");
  for (int i = 0; i < kMany; ++i) {
    auto lock = api_->try_acquire(prefix + std::to_string(i), ttl);
    ASSERT_TRUE(lock) << "could not take " << prefix << i;
    lock->keep_alive({.on_lost = {},
                      .max_hold = 0ms,
                      .should_renew =
                          [&renewals] {
                            renewals.fetch_add(1, std::memory_order_relaxed);
                            return true;
                          },
                      .on_renewal_error = {}});
    locks.push_back(std::move(*lock));
  }
  std::this_thread::sleep_for(2 * ttl);
  const unsigned during = threads_of_this_process();
  int lost = 0;
  for (const auto& lock : locks) lost += !lock.held();
  EXPECT_EQ(lost, 0);
  EXPECT_LE(during, before + 7) << "one scheduler and at most six renewal workers";
  EXPECT_GE(renewals.load(), kMany) << "not every lease was renewed within two ttls";
}

// fork() while a lease is kept alive: the lease stays the parent's. The child's copy is not
// renewed, is signalled lost at its deadline, and is not released when the child drops it; the
// parent keeps the lease for at least three ttls after the fork.
TEST_P(KeepAliveConformance, ForkedChildNeitherRenewsNorReleasesTheParentsLease) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot follow a forked child that starts threads";
#else
  const auto ttl = GetParam().ttl;
  const auto key = Key();
  std::optional<Lock> lock = api_->try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  Probe probe;
  lock->keep_alive(probe.options());
  ASSERT_TRUE(await([&] { return probe.renewal_count() >= 1; }, ttl));
  const auto forked = Steady::now();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: no GoogleTest here, the exit status says what went wrong.
    int status = 0;
    const int renewed_before = probe.renewal_count();
    auto token = lock->stop_token();
    const auto limit = Steady::now() + ttl + kSchedulingSlack;
    while (!token.stop_requested() && Steady::now() < limit) std::this_thread::sleep_for(1ms);
    if (!token.stop_requested()) status |= 1;  // never told that its copy is not kept
    if (lock->held()) status |= 2;
    if (probe.renewal_count() != renewed_before) status |= 8;  // renewed in the child
    if (probe.loss_count() != 0) status |= 16;                 // the parent's on_lost ran here
    if (lock->release()) status |= 32;                         // released the parent's lease
    lock.reset();
    ::_exit(status);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of a signal";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "child: 1 no stop within a ttl, 2 still held, 8 renewed, 16 on_lost ran, 32 released "
         "the lease";
  while (Steady::now() < forked + 3 * ttl) {
    ASSERT_FALSE(other_->try_acquire(key, ttl)) << "the parent's lease was lost after the fork";
    std::this_thread::sleep_for(ttl / 4);
  }
  EXPECT_TRUE(lock->held());
  EXPECT_EQ(probe.losses(), 0) << probe.reason();
  EXPECT_TRUE(lock->release()) << "the lease was no longer the parent's";
#endif
}

}  // namespace lockkit::testing
