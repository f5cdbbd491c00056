// SPDX-License-Identifier: MIT
// What only redis:// has: the wire contract shared with node-redlock/redsync, prefixes,
// cluster hash slots, scripts, ACL auth, and contention between threads and processes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/observer.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_keys.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"
#include "support/temp_dir.hpp"

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

// Server time is what bounds every Redis lock benchmark: the scripts check the internal keys'
// types through the hash commands' own errors, never with a separate TYPE, and write each
// internal key once per grant.
TEST(RedisWire, ScriptsRunNoTypeChecks) {
  RedisServer server;
  auto api = lockkit::open(server.url());
  (void)api->status("warm");  // connects and loads the scripts
  ASSERT_EQ(server.cli({"CONFIG", "RESETSTAT"}), "OK");
  for (int i = 0; i < 10; ++i) {
    auto lock = api->try_acquire("slim" + std::to_string(i), 5s);
    ASSERT_TRUE(lock);
    EXPECT_TRUE(api->status(lock->key()));
    EXPECT_TRUE(lock->extend(5s));
    EXPECT_TRUE(lock->release());
  }
  const std::string stats = server.cli({"INFO", "commandstats"});
  EXPECT_EQ(stats.find("cmdstat_type:"), std::string::npos) << stats;
  EXPECT_NE(stats.find("cmdstat_hset:calls=20,"), std::string::npos) << stats;
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

// A password kept off the URL: read from a file or an environment variable.
TEST(RedisAuth, PasswordFromFileOrEnvironment) {
  RedisServer server({"--requirepass", "adminpw"});
  ASSERT_EQ(server.cli({"-a", "adminpw", "--no-auth-warning", "ACL", "SETUSER", "alice", "on",
                        ">alicepw", "~*", "+@all"}),
            "OK");
  const auto dir = std::filesystem::temp_directory_path() / ("lockkit-pw-" + make_token());
  std::filesystem::create_directories(dir);
  auto write = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::string alice_file = write("alice", "alicepw\n");
  const std::string wrong_file = write("wrong", "Wr0ngFileSecret\r\n");
  const std::string base = "redis://127.0.0.1:" + std::to_string(server.port());

  auto alice = lockkit::open("redis://alice@127.0.0.1:" + std::to_string(server.port()) +
                             "?password_file=" + alice_file);
  EXPECT_TRUE(alice->try_acquire(Unique("pw-file"), 5s));

  ASSERT_EQ(::setenv("LOCKKIT_TEST_REDIS_PASSWORD", "adminpw", 1), 0);
  auto admin = lockkit::open(base + "?password_env=LOCKKIT_TEST_REDIS_PASSWORD");
  ::unsetenv("LOCKKIT_TEST_REDIS_PASSWORD");  // read when the URL was parsed
  EXPECT_TRUE(admin->try_acquire(Unique("pw-env"), 5s));

  auto wrong = lockkit::open("redis://alice@127.0.0.1:" + std::to_string(server.port()) +
                             "?password_file=" + wrong_file);
  try {
    (void)wrong->try_acquire("pw-denied", 5s);
    ADD_FAILURE() << "accepted a wrong password from a file";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kAuth) << e.what();
    EXPECT_EQ(std::string(e.what()).find("Wr0ngFileSecret"), std::string::npos) << e.what();
  }

  // Two sources are a caller mistake, named as such, and the secret stays out of the message.
  for (std::string url : {"redis://:Url5ecret@127.0.0.1:1?password_file=" + alice_file,
                          std::string("redis://:Url5ecret@127.0.0.1:1?password_env=HOME"),
                          "redis://127.0.0.1:1?password_env=HOME&password_file=" + alice_file}) {
    try {
      (void)lockkit::open(url);
      ADD_FAILURE() << "accepted two password sources";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("one place"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("Url5ecret"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(lockkit::open(base + "?password_env=LOCKKIT_TEST_UNSET_VARIABLE"),
               std::invalid_argument);
  EXPECT_THROW(lockkit::open(base + "?password_file=" + (dir / "missing").string()),
               std::invalid_argument);
  std::filesystem::remove_all(dir);
}

// The core's observer sees a redis LockApi's operations, named after the backend.
TEST(RedisObserver, SeesAcquireReleaseAndExtend) {
  struct Recorder final : LockObserver {
    void on_event(const LockEvent& e) override {
      std::lock_guard<std::mutex> guard(mu);
      events.push_back(
          {e.operation, e.outcome, std::string(e.backend), std::string(e.key), e.fence, e.error});
    }
    struct Seen {
      LockOperation operation;
      LockOutcome outcome;
      std::string backend;
      std::string key;
      std::uint64_t fence;
      std::optional<ErrorKind> error;
    };
    std::mutex mu;
    std::vector<Seen> events;
  };
  auto recorder = std::make_shared<Recorder>();
  auto api =
      lockkit::make_redis_lock_api(parse_redis_url(RedisServer::shared().url("?connections=1")));
  api->set_observer(recorder);
  const auto key = Unique("observed");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  EXPECT_FALSE(api->try_acquire(key, 30s));
  EXPECT_TRUE(lock->extend(30s));
  const std::string token(lock->token());
  const std::uint64_t fence = lock->fence();
  EXPECT_TRUE(lock->release());
  EXPECT_FALSE(api->release(key, token));

  std::lock_guard<std::mutex> guard(recorder->mu);
  const auto& ev = recorder->events;
  ASSERT_EQ(ev.size(), 5u);
  const std::pair<LockOperation, LockOutcome> expected[] = {
      {LockOperation::kTryAcquire, LockOutcome::kOk},
      {LockOperation::kTryAcquire, LockOutcome::kBusy},
      {LockOperation::kExtend, LockOutcome::kOk},
      {LockOperation::kRelease, LockOutcome::kOk},
      {LockOperation::kRelease, LockOutcome::kNotOurs}};
  for (std::size_t i = 0; i < ev.size(); ++i) {
    EXPECT_EQ(ev[i].operation, expected[i].first) << i;
    EXPECT_EQ(ev[i].outcome, expected[i].second) << i;
    EXPECT_EQ(ev[i].backend, "redis") << i;
    EXPECT_EQ(ev[i].key, key) << i;
  }
  EXPECT_EQ(ev[0].fence, fence);

  // A store failure is an error event with its kind.
  auto down = lockkit::make_redis_lock_api(
      RedisOptions{.port = 1, .connect_timeout = 300ms, .command_timeout = 300ms});
  auto failures = std::make_shared<Recorder>();
  down->set_observer(failures);
  EXPECT_THROW((void)down->try_acquire(key, 1s), BackendError);
  std::lock_guard<std::mutex> guard2(failures->mu);
  ASSERT_EQ(failures->events.size(), 1u);
  EXPECT_EQ(failures->events[0].outcome, LockOutcome::kError);
  EXPECT_EQ(failures->events[0].backend, "redis");
  EXPECT_TRUE(failures->events[0].error.has_value());
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
  testing::TempDir dir("lockkit-contend-");
  const std::string url = RedisServer::shared().url();
  const std::string key = Unique("processes");
  constexpr int kProcesses = 3;
  constexpr int kRounds = 60;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    pids.push_back(
        testing::spawn_process({REDIS_CONTENDER, url, key, std::to_string(kRounds), dir.string()}));
  }
  for (pid_t pid : pids) {
    EXPECT_EQ(testing::wait_exit(pid), 0) << "3 = two processes held the lock at once";
  }
  long count = 0;
  std::ifstream(dir.path() / "count") >> count;
  EXPECT_EQ(count, kProcesses * kRounds) << "an update was lost: the lock let two writers in";
}

}  // namespace
}  // namespace lockkit
