// SPDX-License-Identifier: MIT
// What only redis:// has: the wire contract shared with node-redlock/redsync, prefixes,
// cluster hash slots, scripts, ACL auth, and contention between threads and processes.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_keys.hpp"
#include "support/redis_server.hpp"

extern char** environ;

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::RedisServer;

std::string Unique(std::string_view stem) {
  return std::string(stem) + "/" + make_token().substr(0, 8);
}

// The release script node-redlock and redsync send, verbatim in behaviour.
constexpr const char* kForeignRelease =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";

TEST(RedisWire, LockIsAPlainStringHoldingTheToken) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  auto key = Unique("wire");
  auto lock = api->try_acquire(key, 20s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(server.cli({"TYPE", key}), "string");
  EXPECT_EQ(server.cli({"GET", key}), lock->token());
  long pttl = std::stol(server.cli({"PTTL", key}));
  EXPECT_GT(pttl, 15000);
  EXPECT_LE(pttl, 20000);
  ASSERT_TRUE(lock->extend(40s));
  EXPECT_GT(std::stol(server.cli({"PTTL", key})), 30000);
  ASSERT_TRUE(lock->release());
  EXPECT_EQ(server.cli({"EXISTS", key}), "0");
}

TEST(RedisWire, ForeignSetNxBlocksAndIsNeverReleased) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  auto key = Unique("foreign");
  const std::string foreign_token = "0123456789abcdef0123456789abcdef";
  ASSERT_EQ(server.cli({"SET", key, foreign_token, "NX", "PX", "30000"}), "OK");
  EXPECT_FALSE(api->try_acquire(key, 10s));
  EXPECT_FALSE(api->acquire(
      key, 10s, RetryPolicy{.max_wait = 50ms, .initial_delay = 5ms, .max_delay = 10ms}));
  EXPECT_FALSE(api->release(key, make_token()));
  EXPECT_FALSE(api->extend(key, make_token(), 60s));
  auto info = api->status(key);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, 0u) << "a foreign holder has no lockkit fence";
  EXPECT_GT(info->remaining, 20s);
  EXPECT_EQ(server.cli({"GET", key}), foreign_token);
  EXPECT_LE(std::stol(server.cli({"PTTL", key})), 30000) << "lockkit touched a foreign lock's TTL";
  // The other library releases its own lock its way; lockkit can take it at once.
  EXPECT_EQ(server.cli({"EVAL", kForeignRelease, "1", key, foreign_token}), "1");
  EXPECT_TRUE(api->try_acquire(key, 10s));
}

TEST(RedisWire, ForeignClientReleasesOnlyWithOurToken) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  auto key = Unique("foreign-release");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(server.cli({"EVAL", kForeignRelease, "1", key, make_token()}), "0");
  EXPECT_FALSE(api->try_acquire(key, 30s));
  EXPECT_EQ(server.cli({"EVAL", kForeignRelease, "1", key, std::string(lock->token())}), "1");
  EXPECT_FALSE(lock->release()) << "released by the other library already";
  EXPECT_TRUE(api->try_acquire(key, 30s));
}

TEST(RedisPrefix, IsolatesNamespacesAndMapsKeysExactly) {
  auto& server = RedisServer::shared();
  auto tag = make_token().substr(0, 8);
  auto a = lockkit::open(server.url("?prefix=" + tag + "a:"));
  auto b = lockkit::open(server.url("?prefix=" + tag + "b:"));
  auto bare = lockkit::open(server.url());
  auto la = a->try_acquire("job", 30s);
  auto lb = b->try_acquire("job", 30s);
  ASSERT_TRUE(la);
  ASSERT_TRUE(lb) << "prefixes did not isolate";
  EXPECT_EQ(server.cli({"GET", tag + "a:job"}), la->token());
  EXPECT_EQ(server.cli({"GET", tag + "b:job"}), lb->token());
  EXPECT_FALSE(bare->try_acquire(tag + "a:job", 30s)) << "the Redis key is exactly prefix + key";
  EXPECT_TRUE(bare->try_acquire("job", 30s));
  auto listed = a->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "job");
  EXPECT_EQ(listed[0].fence, la->fence());
  EXPECT_FALSE(b->release("job", la->token()));
  EXPECT_TRUE(la->release());
  EXPECT_TRUE(lb->held());
}

TEST(RedisKeys, ReservedNamespaceIsRejected) {
  auto api = lockkit::open(RedisServer::shared().url());
  EXPECT_THROW((void)api->try_acquire("lockkit:{12}fence", 1s), std::invalid_argument);
  EXPECT_TRUE(api->try_acquire(Unique("lockkit:fence"), 1s));
}

TEST(RedisScripts, SurviveScriptFlush) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url("?connections=1"));
  auto key = Unique("flush");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  ASSERT_EQ(server.cli({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(lock->extend(30s));
  ASSERT_EQ(server.cli({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(api->status(key));
  ASSERT_EQ(server.cli({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(lock->release());
  ASSERT_EQ(server.cli({"SCRIPT", "FLUSH"}), "OK");
  auto again = api->try_acquire(key, 30s);
  ASSERT_TRUE(again);
  EXPECT_GT(again->fence(), lock->fence());
}

TEST(RedisFence, IncreasesAcrossDataLoss) {
  RedisServer server;
  auto api = lockkit::open(server.url());
  auto first = api->try_acquire("fenced", 30s);
  ASSERT_TRUE(first);
  auto f1 = first->fence();
  ASSERT_EQ(server.cli({"FLUSHALL"}), "OK");  // as a restart without persistence would
  auto second = api->try_acquire("fenced", 30s);
  ASSERT_TRUE(second);
  EXPECT_GT(second->fence(), f1);
  EXPECT_FALSE(first->release());
}

TEST(RedisAuth, AclUserWorksAndWrongPasswordIsAuthError) {
  RedisServer server({"--requirepass", "adminpw"});
  ASSERT_EQ(server.cli({"-a", "adminpw", "--no-auth-warning", "ACL", "SETUSER", "alice", "on",
                        ">alicepw", "~*", "+@all"}),
            "OK");
  auto alice = lockkit::open(server.url().insert(8, "alice:alicepw@"));
  EXPECT_TRUE(alice->try_acquire("acl", 5s));
  auto admin = lockkit::open(server.url().insert(8, ":adminpw@"));
  EXPECT_TRUE(admin->try_acquire("acl-default", 5s));

  for (std::string userinfo : {"alice:Wr0ngSecret@", ":Wr0ngSecret@", ""}) {
    auto api = lockkit::open(server.url().insert(8, userinfo));
    try {
      (void)api->try_acquire("acl-denied", 5s);
      ADD_FAILURE() << "accepted userinfo " << userinfo;
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kAuth) << e.what();
      EXPECT_FALSE(e.retryable());
      EXPECT_EQ(std::string(e.what()).find("Wr0ngSecret"), std::string::npos) << e.what();
    }
  }
}

// A single-node Redis Cluster owning every slot: multi-key scripts fail with CROSSSLOT unless a
// lock's keys share its slot, whatever braces the key and the prefix contain.
TEST(RedisCluster, EveryKeyOfALockSharesItsSlot) {
  RedisServer server({"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"});
  ASSERT_EQ(server.cli({"CLUSTER", "ADDSLOTSRANGE", "0", "16383"}), "OK");
  // A lone node takes a second or two to declare the cluster up; until then it refuses keys.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (server.cli({"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "cluster never came up";
    std::this_thread::sleep_for(50ms);
  }
  const std::vector<std::string> keys = {"plain",   "{tag}rest", "a{b",
                                         "a}b{c}d", "x{}y{z}",   "{",
                                         "}",       "{}",        std::string("bin\0{\xff}", 7)};
  for (std::string prefix : {"", "app:", "{app}:", "app{", "a}b"}) {
    detail::redis::KeyLayout layout(prefix);
    for (const auto& key : keys) {
      std::string lock, fence, holder;
      layout.keys_of(key, lock, fence, holder);
      if (key.find('\0') == std::string::npos) {
        auto slot = server.cli({"CLUSTER", "KEYSLOT", lock});
        EXPECT_EQ(slot, std::to_string(detail::redis::key_slot(lock))) << lock;
        EXPECT_EQ(server.cli({"CLUSTER", "KEYSLOT", fence}), slot) << fence;
        EXPECT_EQ(server.cli({"CLUSTER", "KEYSLOT", holder}), slot) << holder;
      }
    }
    auto api = lockkit::open(
        server.url("?connections=1&prefix=" + std::string(prefix == "app{" ? "app%7B" : prefix)));
    for (const auto& key : keys) {
      auto lock = api->try_acquire(key, 30s);
      ASSERT_TRUE(lock) << prefix << " " << key;
      EXPECT_TRUE(lock->extend(30s));
      auto info = api->status(key);
      ASSERT_TRUE(info);
      EXPECT_EQ(info->fence, lock->fence());
      EXPECT_TRUE(lock->release());
    }
  }
}

TEST(RedisThreads, ManyThreadsShareOneApiWithoutOverlap) {
  RedisServer server;  // its own, so that its client list shows only this API's connections
  auto api = lockkit::open(server.url("?connections=2"));
  constexpr int kThreads = 32;
  constexpr int kKeys = 4;
  constexpr int kRounds = 40;
  auto base = Unique("threads");
  std::vector<long> counters(kKeys, 0);  // plain: the locks must keep these race-free
  std::vector<std::atomic<int>> inside(kKeys);
  std::atomic<int> overlaps{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        int k = (t + i) % kKeys;
        try {
          auto lock =
              api->acquire(base + std::to_string(k), 10s,
                           RetryPolicy{.max_wait = 30s, .initial_delay = 1ms, .max_delay = 5ms});
          if (!lock) continue;
          if (inside[k].fetch_add(1) != 0) overlaps.fetch_add(1);
          ++counters[k];
          inside[k].fetch_sub(1);
          if (!lock->release()) errors.fetch_add(1);
        } catch (const std::exception&) {
          errors.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(errors.load(), 0);
  long total = 0;
  for (long c : counters) total += c;
  EXPECT_EQ(total, kThreads * kRounds);
  // 32 threads, 2 connections: callers shared them, none got a connection of its own.
  auto clients = server.cli({"CLIENT", "LIST"});
  EXPECT_EQ(std::count(clients.begin(), clients.end(), '\n') + 1, 3)  // ours + redis-cli
      << clients;
}

TEST(RedisThreads, ThreadLocalLockIsReleasedAtThreadExit) {
  auto api = lockkit::open(RedisServer::shared().url());
  auto key = Unique("thread-local");
  std::thread([&] {
    // Constructed before the backend's per-thread buffers, so destroyed after them.
    thread_local std::optional<Lock> held;
    held = api->try_acquire(key, 30s);
    EXPECT_TRUE(held);
  }).join();
  EXPECT_TRUE(api->try_acquire(key, 30s)) << "not released when its thread ended";
}

TEST(RedisProcesses, TwoProcessesNeverOverlap) {
  auto dir =
      std::filesystem::temp_directory_path() / ("lockkit-contend-" + make_token().substr(0, 8));
  std::filesystem::create_directories(dir);
  const std::string url = RedisServer::shared().url();
  const std::string key = Unique("processes");
  constexpr int kProcesses = 3;
  constexpr int kRounds = 60;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    std::vector<std::string> args = {REDIS_CONTENDER, url, key, std::to_string(kRounds),
                                     dir.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, REDIS_CONTENDER, nullptr, nullptr, argv.data(), environ), 0);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "3 = two processes held the lock at once";
  }
  long count = 0;
  std::ifstream(dir / "count") >> count;
  EXPECT_EQ(count, kProcesses * kRounds) << "an update was lost: the lock let two writers in";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lockkit
