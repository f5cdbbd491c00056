// SPDX-License-Identifier: MIT
// Keep-alive cases every real store runs (sqlite, redis, postgres), through the public API only.
#ifndef LOCKKIT_TESTS_SUPPORT_KEEP_ALIVE_CASES_HPP_
#define LOCKKIT_TESTS_SUPPORT_KEEP_ALIVE_CASES_HPP_

#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/lock_api.hpp"

namespace lockkit::testing::keep_alive {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// Lateness allowed to timers and thread wake-ups on a loaded machine.
inline constexpr auto kSchedulingSlack = 500ms;

template <class Pred>
bool await(Pred pred, Steady::duration limit) {
  const auto deadline = Steady::now() + limit;
  while (!pred()) {
    if (Steady::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

inline unsigned threads_of_this_process() {
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
                                },
                            .max_hold = max_hold,
                            .should_renew =
                                [this] {
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

 private:
  std::mutex mu_;
  int losses_ = 0;
  std::string reason_;
  Steady::time_point lost_at_{};
  std::vector<Steady::time_point> renewals_;
};

// Kept alive for 5 x ttl: nobody else can take the key, the fence stays, the stop never comes.
inline void KeptAliveForFiveTtls(LockApi& api, LockApi& other, const std::string& key,
                                 std::chrono::milliseconds ttl) {
  auto lock = api.try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  const auto fence = lock->fence();
  Probe probe;
  lock->keep_alive(probe.options());
  const auto end = Steady::now() + 5 * ttl;
  int tries = 0;
  while (Steady::now() < end) {
    ASSERT_FALSE(other.try_acquire(key, ttl))
        << "another client took a kept-alive lease; holder told: "
        << lock->stop_token().stop_requested() << " " << probe.reason();
    ++tries;
    std::this_thread::sleep_for(ttl / 4);
  }
  EXPECT_GE(tries, 10);
  EXPECT_TRUE(lock->held());
  EXPECT_FALSE(lock->stop_token().stop_requested());
  EXPECT_EQ(lock->fence(), fence);
  auto info = other.status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, fence);
  EXPECT_GE(probe.renewals().size(), 12u);  // every ttl/3
  EXPECT_EQ(probe.losses(), 0) << probe.reason();
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(other.try_acquire(key, ttl));
}

// The key deleted behind the holder's back: on_lost and the stop come within one renewal
// period (ttl/3) plus slack, once.
inline void DeletedBehindTheBackIsNoticed(LockApi& api, const std::string& key,
                                          std::chrono::milliseconds ttl,
                                          const std::function<void()>& delete_key) {
  auto lock = api.try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  Probe probe;
  lock->keep_alive(probe.options());
  auto token = lock->stop_token();
  delete_key();
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
inline void MaxHoldRunsOut(LockApi& api, LockApi& other, const std::string& key,
                           std::chrono::milliseconds ttl) {
  const auto start = Steady::now();
  auto lock = api.try_acquire(key, ttl);
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
        next = other.try_acquire(key, ttl);
        return next.has_value();
      },
      3 * ttl + kSchedulingSlack));
  const auto taken = Steady::now();
  EXPECT_GT(taken - start, ttl) << "taken before the renewed lease could have run out";
  for (auto at : probe.renewals()) EXPECT_LT(at - acquired, ttl) << "renewed after max_hold";
  ASSERT_NE(stopped_at.load(), 0) << "the holder was not told before the next owner took it";
  const auto stop = Steady::time_point(Steady::duration(stopped_at.load()));
  EXPECT_LT(stop, lock->valid_until());
  EXPECT_EQ(probe.losses(), 1);
  EXPECT_NE(probe.reason().find("max_hold"), std::string::npos) << probe.reason();
  EXPECT_GT(next->fence(), lock->fence());
}

// The store stops answering (SIGSTOP) while held: the stop comes before valid_until, by the
// local clock; no call blocks past its timeout; once the store answers again nothing is renewed
// and the key frees within a ttl. `api` must have short command timeouts (`call_limit`).
inline void PausedStoreSignalsBeforeTheDeadline(LockApi& api, LockApi& other,
                                                const std::string& key,
                                                std::chrono::milliseconds ttl,
                                                Steady::duration call_limit,
                                                const std::function<void()>& pause,
                                                const std::function<void()>& resume) {
  auto lock = api.try_acquire(key, ttl);
  ASSERT_TRUE(lock);
  Probe probe;
  lock->keep_alive(probe.options());
  std::atomic<long long> stopped_at{0};
  std::stop_callback on_stop(lock->stop_token(),
                             [&] { stopped_at = Steady::now().time_since_epoch().count(); });
  ASSERT_TRUE(await([&] { return probe.renewals().size() >= 1; }, ttl));
  pause();
  const auto paused = Steady::now();
  ASSERT_TRUE(await([&] { return stopped_at.load() != 0; }, 2 * ttl + kSchedulingSlack));
  const auto stop = Steady::time_point(Steady::duration(stopped_at.load()));
  EXPECT_LT(stop, lock->valid_until()) << "the stop came after valid_until";
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
  resume();
  std::optional<Lock> next;
  EXPECT_TRUE(await(
      [&] {
        next = other.try_acquire(key, ttl);
        return next.has_value();
      },
      ttl + call_limit + kSchedulingSlack))
      << "the lease declared lost lingered";
  for (auto at : probe.renewals()) EXPECT_LT(at, lost) << "a renewal sent after the loss";
  EXPECT_EQ(probe.losses(), 1);
}

// Many locks kept alive at once by one process: all stay held, the keeper uses a few threads.
// Returns the renewals per second.
inline double ManyLocksFewThreads(LockApi& api, const std::string& prefix, int count,
                                  std::chrono::milliseconds ttl, Steady::duration hold) {
  const unsigned before = threads_of_this_process();
  std::atomic<long> renewals{0};
  std::vector<Lock> locks;
  locks.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    auto lock = api.try_acquire(prefix + std::to_string(i), ttl);
    if (!lock) {
      ADD_FAILURE() << "could not take " << prefix << i;
      return 0;
    }
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
  const auto start = Steady::now();
  std::this_thread::sleep_for(hold);
  const double seconds = std::chrono::duration<double>(Steady::now() - start).count();
  const unsigned during = threads_of_this_process();
  int lost = 0;
  for (const auto& lock : locks) lost += !lock.held();
  EXPECT_EQ(lost, 0);
  EXPECT_LE(during, before + 7) << "one scheduler and at most six renewal workers";
  const double rate = static_cast<double>(renewals.load()) / seconds;
  std::printf("[ info ] %d kept-alive locks: %u more threads, %.0f renewals/s\n", count,
              during - before, rate);
  return rate;
}

}  // namespace lockkit::testing::keep_alive

#endif  // LOCKKIT_TESTS_SUPPORT_KEEP_ALIVE_CASES_HPP_
