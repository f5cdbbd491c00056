// SPDX-License-Identifier: MIT
// etcd:// on a 3-member cluster while members hang, die and come back: calls move on to
// another member within their timeouts, there is never a second holder, fences keep increasing.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/etcd.hpp"
#include "lockkit/open.hpp"
#include "support/etcd_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kTimeout = 1s;  // connect_timeout and command_timeout alike
// A call makes at most three requests (an acquire whose answer was lost reads the key and
// revokes its lease), each bounded by connect_timeout + command_timeout; plus scheduling.
constexpr auto kCallBound = 3 * (kTimeout + kTimeout) + 1s;

// Retries `call` until it returns without BackendError or `within` has passed.
template <class F>
bool EventuallySucceeds(F&& call, milliseconds within, std::string* error) {
  auto deadline = Steady::now() + within;
  while (true) {
    try {
      call();
      return true;
    } catch (const BackendError& e) {
      *error = e.what();
    }
    if (Steady::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

// Threads taking and releasing one key in a loop through one LockApi, checking that nobody else
// is inside, recording fences in grant order and the longest call.
class Workers {
 public:
  Workers(std::shared_ptr<LockApi> api, std::string key, int threads)
      : api_(std::move(api)), key_(std::move(key)) {
    for (int t = 0; t < threads; ++t) threads_.emplace_back([this] { run(); });
  }
  ~Workers() { stop(); }

  void stop() {
    done_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  // Waits until `more` grants beyond the current count have happened; false after `within`.
  bool await_grants(int more, milliseconds within) {
    const int target = grants_.load() + more;
    const auto deadline = Steady::now() + within;
    while (grants_.load() < target) {
      if (Steady::now() >= deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

  int overlaps() const { return overlaps_.load(); }
  milliseconds longest() const { return milliseconds(longest_.load()); }
  std::vector<std::uint64_t> fences() {
    std::lock_guard<std::mutex> guard(mu_);
    return fences_;
  }
  std::string last_error() {
    std::lock_guard<std::mutex> guard(mu_);
    return error_;
  }

 private:
  template <class F>
  void timed(F&& f) {
    const auto start = Steady::now();
    try {
      f();
    } catch (const BackendError& e) {
      std::lock_guard<std::mutex> guard(mu_);
      error_ = e.what();
    }
    const auto took = std::chrono::duration_cast<milliseconds>(Steady::now() - start).count();
    auto seen = longest_.load();
    while (took > seen && !longest_.compare_exchange_weak(seen, took)) {
    }
  }

  void run() {
    while (!done_) {
      std::optional<Lock> lock;
      // A short TTL: a lock whose release was lost with its member frees itself soon.
      timed([&] { lock = api_->try_acquire(key_, 2s); });
      if (!lock) {
        std::this_thread::sleep_for(5ms);
        continue;
      }
      if (inside_.fetch_add(1) != 0) overlaps_.fetch_add(1);
      {
        std::lock_guard<std::mutex> guard(mu_);
        fences_.push_back(lock->fence());
      }
      inside_.fetch_sub(1);
      grants_.fetch_add(1);
      timed([&] { (void)lock->release(); });
    }
  }

  const std::shared_ptr<LockApi> api_;
  const std::string key_;
  std::atomic<bool> done_{false};
  std::atomic<int> inside_{0};
  std::atomic<int> overlaps_{0};
  std::atomic<int> grants_{0};
  std::atomic<long long> longest_{0};
  std::mutex mu_;
  std::vector<std::uint64_t> fences_;  // guarded by mu_
  std::string error_;                  // guarded by mu_
  std::vector<std::thread> threads_;
};

TEST(EtcdCluster, HungMemberKilledLeaderAndLostMajorityNeverMakeTwoHolders) {
  EtcdServer cluster(3);
  auto api = lockkit::open(cluster.url("?connect_timeout=1s&command_timeout=1s"));
  std::string error;
  std::optional<Lock> held;
  // A cluster that just started on a loaded machine may take more than a second at first.
  ASSERT_TRUE(
      EventuallySucceeds([&] { held = api->try_acquire("failover/held", 30s); }, 10s, &error))
      << error;
  ASSERT_TRUE(held);
  {
    Workers workers(api, "failover/busy", 6);
    ASSERT_TRUE(workers.await_grants(10, 10s)) << workers.last_error();

    // The member the client talks to hangs (SIGSTOP): its connections stay open, nothing
    // answers. Calls stuck on it time out; the next ones go to the others.
    cluster.pause(0);
    EXPECT_TRUE(workers.await_grants(10, 10s))
        << "no progress with member 0 hung: " << workers.last_error();
    cluster.resume(0);

    // The leader dies (SIGKILL) while acquires and releases run and a lock is held.
    const int leader = cluster.leader();
    ASSERT_GE(leader, 0);
    cluster.kill(leader);
    EXPECT_TRUE(workers.await_grants(10, 10s))
        << "no progress after the leader died: " << workers.last_error();
    bool extended = false;
    EXPECT_TRUE(EventuallySucceeds([&] { extended = held->extend(30s); }, 10s, &error)) << error;
    EXPECT_TRUE(extended) << "the held lock was lost with the leader";
    cluster.restart(leader);
    EXPECT_TRUE(workers.await_grants(5, 10s)) << workers.last_error();
    workers.stop();

    EXPECT_EQ(workers.overlaps(), 0) << "two holders at once";
    auto fences = workers.fences();
    ASSERT_FALSE(fences.empty());
    EXPECT_GT(fences.front(), held->fence());
    for (std::size_t i = 1; i < fences.size(); ++i) {
      EXPECT_GT(fences[i], fences[i - 1]) << "grant " << i;
    }
    EXPECT_LT(workers.longest(), kCallBound) << "a call outlasted its timeouts";
  }
  bool busy = false;
  EXPECT_TRUE(
      EventuallySucceeds([&] { busy = !api->try_acquire("failover/held", 30s); }, 10s, &error));
  EXPECT_TRUE(busy) << "a held lock was granted again after the failovers";

  // No majority: two members down. Every call fails within its timeouts.
  cluster.kill(1);
  cluster.kill(2);
  for (int i = 0; i < 3; ++i) {
    auto start = Steady::now();
    try {
      (void)api->try_acquire("failover/no-majority", 30s);
      ADD_FAILURE() << "granted without a majority";
    } catch (const BackendError& e) {
      EXPECT_TRUE(e.kind() == ErrorKind::kUnavailable || e.kind() == ErrorKind::kTimeout)
          << e.what();
    }
    EXPECT_LT(Steady::now() - start, kCallBound) << "took longer than its timeouts";
  }
  cluster.restart(1);
  cluster.restart(2);
  bool released = false;
  EXPECT_TRUE(EventuallySucceeds([&] { released = held->release(); }, 10s, &error)) << error;
  EXPECT_TRUE(released) << "the lock did not survive the loss of the majority and its return";
}

}  // namespace
}  // namespace lockkit
