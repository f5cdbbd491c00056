// SPDX-License-Identifier: MIT
// What only etcd:// has: revision fences, leases per lock (rounded up, revoked when refused or
// released), a stopped cluster, contention, fork, the tool.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/etcd.hpp"
#include "lockkit/open.hpp"
#include "support/etcd_server.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"  // run_command
#include "support/secrets.hpp"
#include "support/temp_dir.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;
using Steady = std::chrono::steady_clock;

std::string UniqueKey(std::string_view what) {
  return "etcd-test/" + std::string(what) + "/" + make_token().substr(0, 8);
}

// Returns the decimal number right after `marker` in `text`, or -1. (No <regex>: GCC 12 warns
// inside it under ASan.)
std::int64_t NumberAfter(const std::string& text, const std::string& marker) {
  auto at = text.find(marker);
  if (at == std::string::npos) return -1;
  std::size_t i = at + marker.size();
  std::int64_t value = -1;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    value = (value < 0 ? 0 : value * 10) + (text[i] - '0');
    ++i;
  }
  return value;
}

// Returns the number of leases the cluster holds (etcdctl lease list).
int LeaseCount(const EtcdServer& server) {
  std::string out = server.etcdctl({"lease", "list"});
  auto n = NumberAfter(out, "found ");
  if (n < 0) ADD_FAILURE() << "etcdctl lease list said: " << out;
  return static_cast<int>(n);
}

// Returns a field of `etcdctl get KEY -w fields` ("CreateRevision", "Lease").
std::int64_t KeyField(const EtcdServer& server, const std::string& key, const std::string& field) {
  std::string out = server.etcdctl({"get", key, "-w", "fields"});
  auto n = NumberAfter(out, "\"" + field + "\" : ");
  if (n < 0) ADD_FAILURE() << "no " << field << " for " << key << " in: " << out;
  return n;
}

// Returns the TTL a lease was granted with, in seconds (etcdctl lease timetolive).
int GrantedSeconds(const EtcdServer& server, std::int64_t lease) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(lease));
  std::string out = server.etcdctl({"lease", "timetolive", hex});
  auto n = NumberAfter(out, "granted with TTL(");
  if (n < 0) ADD_FAILURE() << "etcdctl lease timetolive said: " << out;
  return static_cast<int>(n);
}

TEST(EtcdStore, FenceIsTheRevisionThatCreatedTheKey) {
  auto& server = EtcdServer::shared();
  auto api = lockkit::open(server.url());
  EXPECT_EQ(api->backend(), "etcd");
  auto key = UniqueKey("fence");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(static_cast<std::int64_t>(lock->fence()),
            KeyField(server, "lockkit/" + key, "CreateRevision"));
  auto info = api->status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, lock->fence());
}

TEST(EtcdStore, FencesIncreaseAcrossKeysAndTime) {
  auto api = lockkit::open(EtcdServer::shared().url());
  std::vector<std::string> keys;
  for (int i = 0; i < 4; ++i) keys.push_back(UniqueKey("order" + std::to_string(i)));
  std::uint64_t last = 0;
  for (int round = 0; round < 5; ++round) {
    for (const auto& key : keys) {
      auto lock = api->try_acquire(key, 30s);
      ASSERT_TRUE(lock);
      EXPECT_GT(lock->fence(), last) << "fences must increase across keys too";
      last = lock->fence();
      ASSERT_TRUE(lock->release());
    }
  }
}

TEST(EtcdStore, RefusedAcquireLeavesNoLeaseAndReleaseRevokesIt) {
  EtcdServer server;  // its own cluster: no other test's leases in the count
  auto api = lockkit::open(server.url());
  auto key = UniqueKey("refused");
  EXPECT_EQ(LeaseCount(server), 0);
  auto holder = api->try_acquire(key, 30s);
  ASSERT_TRUE(holder);
  EXPECT_EQ(LeaseCount(server), 1);
  // Cost of a refused attempt: LeaseGrant, Txn, LeaseRevoke (three round trips).
  constexpr int kAttempts = 20;
  auto start = Steady::now();
  for (int i = 0; i < kAttempts; ++i) EXPECT_FALSE(api->try_acquire(key, 30s));
  auto refused = (Steady::now() - start) / kAttempts;
  EXPECT_EQ(LeaseCount(server), 1) << "a refused acquire left its lease behind";
  ASSERT_TRUE(holder->release());
  EXPECT_EQ(LeaseCount(server), 0) << "release left the lock's lease behind";
  start = Steady::now();
  for (int i = 0; i < kAttempts; ++i) {
    auto lock = api->try_acquire(key, 30s);
    ASSERT_TRUE(lock);
    ASSERT_TRUE(lock->release());
  }
  auto pair = (Steady::now() - start) / kAttempts;
  std::cout << "refused try_acquire: "
            << std::chrono::duration_cast<std::chrono::microseconds>(refused).count()
            << " us; acquire+release: "
            << std::chrono::duration_cast<std::chrono::microseconds>(pair).count() << " us\n";
  EXPECT_EQ(LeaseCount(server), 0);
}

TEST(EtcdStore, LeaseTtlIsRoundedUpToWholeSeconds) {
  auto& server = EtcdServer::shared();
  auto api = lockkit::open(server.url());
  auto key = UniqueKey("rounding");
  auto before = Steady::now();
  auto lock = api->try_acquire(key, 1500ms);
  ASSERT_TRUE(lock);
  EXPECT_LE(lock->valid_until(), Steady::now() + 1500ms) << "valid_until from the ttl asked for";
  EXPECT_GT(lock->valid_until(), before + 1400ms);
  auto lease = KeyField(server, "lockkit/" + key, "Lease");
  EXPECT_EQ(GrantedSeconds(server, lease), 2);
}

TEST(EtcdStore, ExtendWithAnotherTtlMovesToANewLeaseKeepingTheFence) {
  auto& server = EtcdServer::shared();
  auto api = lockkit::open(server.url());
  auto key = UniqueKey("extend");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  auto first_lease = KeyField(server, "lockkit/" + key, "Lease");
  ASSERT_TRUE(lock->extend(30s));  // same TTL: a keep-alive of the same lease
  EXPECT_EQ(KeyField(server, "lockkit/" + key, "Lease"), first_lease);
  ASSERT_TRUE(lock->extend(5s));
  auto second_lease = KeyField(server, "lockkit/" + key, "Lease");
  EXPECT_NE(second_lease, first_lease);
  EXPECT_EQ(GrantedSeconds(server, second_lease), 5);
  std::string old = server.etcdctl({"lease", "timetolive", [&] {
                                      char hex[32];
                                      std::snprintf(hex, sizeof hex, "%llx",
                                                    static_cast<unsigned long long>(first_lease));
                                      return std::string(hex);
                                    }()});
  EXPECT_NE(old.find("already expired"), std::string::npos) << "old lease not revoked: " << old;
  auto info = api->status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, lock->fence());
  EXPECT_LE(info->remaining, 5s);
  EXPECT_TRUE(lock->release());
}

TEST(EtcdStore, StoppedClusterIsUnavailableWithinTimeoutThenRecovers) {
  EtcdServer server;
  auto api = lockkit::open(server.url("?connect_timeout=500ms&command_timeout=500ms"));
  auto key = UniqueKey("down");
  auto held = api->try_acquire(key, 30s);
  ASSERT_TRUE(held);
  server.stop();
  for (int i = 0; i < 3; ++i) {
    auto start = Steady::now();
    try {
      (void)api->try_acquire(UniqueKey("down"), 30s);
      ADD_FAILURE() << "acquire on a stopped cluster returned";
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnavailable) << e.what();
      EXPECT_STREQ(e.backend(), "etcd");
    }
    EXPECT_LT(Steady::now() - start, 500ms + 500ms + 500ms) << "took longer than its timeouts";
  }
  EXPECT_THROW((void)held->extend(30s), BackendError);
  EXPECT_THROW((void)api->status(key), BackendError);
  server.restart(0);
  // Back with its data: the lock is still held, and still ours.
  EXPECT_TRUE(held->extend(30s));
  EXPECT_FALSE(api->try_acquire(key, 30s));
  EXPECT_TRUE(held->release());
}

TEST(EtcdStore, ManyThreadsNeverOverlapAndFencesFollowGrantOrder) {
  const std::string url = EtcdServer::shared().url();
  auto key = UniqueKey("contention");
  constexpr int kThreads = 8;
  constexpr int kRounds = 10;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::vector<std::uint64_t> fences;  // written only inside the lock
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto api = lockkit::open(url);
      for (int i = 0; i < kRounds; ++i) {
        auto lock = api->acquire(
            key, 30s, RetryPolicy{.max_wait = 30s, .initial_delay = 1ms, .max_delay = 20ms});
        ASSERT_TRUE(lock);
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        fences.push_back(lock->fence());
        inside.fetch_sub(1);
        EXPECT_TRUE(lock->release());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  ASSERT_EQ(fences.size(), static_cast<std::size_t>(kThreads * kRounds));
  for (std::size_t i = 1; i < fences.size(); ++i) EXPECT_GT(fences[i], fences[i - 1]);
}

TEST(EtcdProcesses, ProcessesNeverOverlapAndFencesIncreaseAcrossThem) {
  testing::TempDir dir("lockkit-etcd-contend-");
  const std::string url = EtcdServer::shared().url("?command_timeout=10s");
  const std::string key = UniqueKey("processes");
  constexpr int kProcesses = 4;
  constexpr int kRounds = 15;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    pids.push_back(
        testing::spawn_process({ETCD_CONTENDER, url, key, std::to_string(kRounds), dir.string()}));
  }
  for (pid_t pid : pids) {
    EXPECT_EQ(testing::wait_exit(pid, 120s), 0)
        << "2: not taken, 3: two processes held the lock at once, 4: lost, 6: BackendError";
  }
  long count = 0;
  std::ifstream(dir.file("count")) >> count;
  EXPECT_EQ(count, kProcesses * kRounds) << "an update was lost: the lock let two writers in";
  std::ifstream fences(dir.file("fences"));
  std::uint64_t previous = 0;
  int n = 0;
  for (std::uint64_t fence = 0; fences >> fence; ++n) {
    EXPECT_GT(fence, previous) << "grant " << n;
    previous = fence;
  }
  EXPECT_EQ(n, kProcesses * kRounds);
}

TEST(EtcdStore, ChildAfterForkGetsUnsupportedNotAHang) {
  auto api = lockkit::open(EtcdServer::shared().url());
  auto key = UniqueKey("fork");
  auto lock = api->try_acquire(key, 30s);  // the parent's channels are connected
  ASSERT_TRUE(lock);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 1;
    try {
      (void)api->try_acquire(UniqueKey("fork-child"), 30s);
      code = 2;
    } catch (const BackendError& e) {
      code = e.kind() == ErrorKind::kUnsupported ? 0 : 3;
    } catch (...) {
      code = 4;
    }
    // Nor may it open a LockApi of its own: its gRPC would share the parent's poller.
    if (code == 0) {
      try {
        (void)lockkit::open(EtcdServer::shared().url());
        code = 5;
      } catch (const BackendError& e) {
        code = e.kind() == ErrorKind::kUnsupported ? 0 : 6;
      } catch (...) {
        code = 7;
      }
    }
    // The child's copy of the Lock and the LockApi go away without touching gRPC.
    lock.reset();
    api.reset();
    ::_exit(code);  // not exit(): the shared cluster's fixture belongs to the parent
  }
  int status = 0;
  pid_t done = 0;
  auto deadline = Steady::now() + 20s;
  while ((done = ::waitpid(child, &status, WNOHANG)) == 0 && Steady::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  if (done == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    FAIL() << "the child hung";
  }
  ASSERT_TRUE(WIFEXITED(status)) << "the child crashed: status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "1/2: no error, 3: another kind, 4: not a BackendError; 5..7: the same for a new LockApi";
  // The parent's client still works.
  EXPECT_TRUE(lock->extend(30s));
  EXPECT_TRUE(lock->release());
}

TEST(EtcdStore, AuthenticatesAndReportsWrongPasswordsAsAuthWithoutTheSecret) {
  EtcdServer server;
  const std::string password = "Root9Secret";
  server.etcdctl({"user", "add", "root:" + password, "--interactive=false"});
  server.etcdctl({"auth", "enable"});
  auto endpoints = server.endpoints();
  auto api = lockkit::open("etcd://root:" + password + "@" + endpoints);
  auto key = UniqueKey("auth");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->release());
  const std::string wrong = "Wrong7Password";
  for (const std::string& url : {"etcd://root:" + wrong + "@" + endpoints, "etcd://" + endpoints}) {
    try {
      (void)lockkit::open(url)->try_acquire(key, 30s);
      ADD_FAILURE() << "granted without the right password";
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kAuth) << e.what();
      for (const auto& piece : testing::secret_pieces(wrong)) {
        EXPECT_EQ(std::string(e.what()).find(piece), std::string::npos) << e.what();
      }
    }
  }
}

#ifdef LOCKKIT_CLI
TEST(EtcdCli, RunsACommandUnderAnEtcdLock) {
  const std::string url = EtcdServer::shared().url();
  auto key = UniqueKey("cli");
  int status = -1;
  std::string out =
      testing::run_command({LOCKKIT_CLI, "run", "--backend", url, "--key", key, "--ttl", "10s",
                            "--", "sh", "-c", "echo fence=$LOCKKIT_FENCE"},
                           &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_GT(NumberAfter(out, "fence="), 0) << out;
  // Busy: exit status 75.
  auto api = lockkit::open(url);
  auto held = api->try_acquire(key, 30s);
  ASSERT_TRUE(held);
  testing::run_command(
      {LOCKKIT_CLI, "run", "--backend", url, "--key", key, "--ttl", "10s", "--", "true"}, &status);
  EXPECT_EQ(status, 75);
}
#endif

}  // namespace
}  // namespace lockkit
