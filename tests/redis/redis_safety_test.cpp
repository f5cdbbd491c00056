// SPDX-License-Identifier: MIT
// redis:// under the traps of real deployments: fork() with open connections, a restart from a
// stale snapshot, key names shared with other prefixes and libraries, eviction, a hung resolver.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_keys.hpp"
#include "support/blackhole_dns.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::RedisServer;

constexpr auto kSchedulingSlack = 1500ms;  // generous: the CI box is small and shared

// What one process saw in a fork trial. Kept small: the child reports it as its exit status.
enum ForkFault : int {
  kForkOk = 0,
  kWrongGrant = 1,  // granted a key a third party holds
  kMissedGrant = 2,
  kError = 4,
  kFenceBackwards = 8,
  kReleaseFailed = 16,
};

// Works on `api` as one process of a fork trial: the keys in `held` must stay busy, `mine` must
// be granted with ever larger fences and released.
int ForkRound(LockApi& api, const std::vector<std::string>& held, const std::string& mine,
              std::uint64_t& last_fence) {
  int faults = kForkOk;
  for (int i = 0; i < 6; ++i) {
    try {
      if (api.try_acquire(held[static_cast<std::size_t>(i) % held.size()], 30s)) {
        faults |= kWrongGrant;
      }
      auto lock = api.try_acquire(mine, 30s);
      if (!lock) {
        faults |= kMissedGrant;
        continue;
      }
      if (lock->fence() <= last_fence) faults |= kFenceBackwards;
      last_fence = lock->fence();
      if (!lock->release()) faults |= kReleaseFailed;
    } catch (const std::exception&) {
      faults |= kError;
    }
  }
  return faults;
}

// The pool's connections are open when the process forks; both processes go on using the one
// LockApi (opened from `url`) at once, while (outside sanitizers) another thread of the parent
// keeps calling it too, so the child may inherit locks held by a thread it does not have.
void ForkTrials(RedisServer& server, const std::string& url, int trials) {
  auto third = lockkit::open(server.url());
  std::vector<std::string> held;
  std::vector<Lock> third_locks;
  for (int i = 0; i < 4; ++i) {
    held.push_back("fork/held/" + std::to_string(i));
    auto lock = third->try_acquire(held.back(), 120s);
    ASSERT_TRUE(lock);
    third_locks.push_back(std::move(*lock));
  }
  auto api = lockkit::open(url);
  std::atomic<bool> stop{false};
  std::atomic<int> background_faults{0};
  std::thread background;
  if (testing::kForkWithBusyThreads) {
    background = std::thread([&] {
      while (!stop.load()) {
        try {
          if (api->try_acquire(held[0], 30s)) background_faults.fetch_add(1);
        } catch (const std::exception&) {
          background_faults.fetch_add(1);
        }
      }
    });
  }
  // Stops and joins the thread also when an assertion fails.
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{stop, background};
  std::uint64_t parent_fence = 0;
  int parent_faults = 0;
  int child_faults = 0;
  int hung_children = 0;
  for (int trial = 0; trial < trials; ++trial) {
    // Both connections in use right before the fork.
    try {
      (void)api->status(held[1]);
      (void)api->status(held[2]);
    } catch (const std::exception&) {
      parent_faults |= kError;
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::uint64_t fence = 0;
      std::_Exit(ForkRound(*api, held, "fork/child", fence));
    }
    parent_faults |= ForkRound(*api, held, "fork/parent", parent_fence);
    int status = testing::wait_exit(pid, 10s);
    if (status == -1) {
      ++hung_children;
    } else if (status != 0) {
      child_faults |= status < 128 ? status : 128;
    }
  }
  stop = true;
  if (background.joinable()) background.join();
  EXPECT_EQ(parent_faults, 0) << "1 wrong grant, 2 missed grant, 4 error, 8 fence, 16 release";
  EXPECT_EQ(child_faults, 0) << "1 wrong grant, 2 missed grant, 4 error, 8 fence, 16 release";
  EXPECT_EQ(hung_children, 0) << "children hung (a lock held across fork?)";
  EXPECT_EQ(background_faults.load(), 0);
  for (auto& lock : third_locks) {
    EXPECT_TRUE(lock.release()) << "the third party's lock was taken from it";
  }
}

TEST(RedisFork, ParentAndChildNeverShareAConnection) {
  RedisServer server;
  ForkTrials(server, server.url("?connections=2&connect_timeout=2s&command_timeout=2s"), 100);
}

// The same over TLS: the child drops the parent's sessions untouched (no close_notify, which
// would end the parent's session) and handshakes its own.
TEST(RedisFork, ParentAndChildNeverShareATlsSession) {
  RedisServer server({}, testing::RedisTls::kOn);
  ForkTrials(server, server.tls_url("&connections=2&connect_timeout=2s&command_timeout=2s"), 40);
}

// RDB snapshot, more grants, then a crash: the restarted server has the old counters.
TEST(RedisFence, StaleSnapshotRestartNeverRepeatsAFence) {
  RedisServer server;
  auto api = lockkit::open(server.url("?connect_timeout=1s&command_timeout=1s"));
  const std::vector<std::string> keys = {"snap/a", "snap/b", "{snap}c"};
  std::uint64_t highest = 0;
  for (const auto& key : keys) {
    auto lock = api->try_acquire(key, 30s);
    ASSERT_TRUE(lock);
    highest = std::max(highest, lock->fence());
  }
  ASSERT_EQ(server.cli({"SAVE"}), "OK");
  for (int round = 0; round < 20; ++round) {
    for (const auto& key : keys) {
      auto lock = api->try_acquire(key, 30s);
      if (!lock) continue;  // still held from before the snapshot: fine, released below
      highest = std::max(highest, lock->fence());
    }
  }
  server.kill();
  server.start();  // loads dump.rdb from the snapshot
  ASSERT_NE(server.cli({"DBSIZE"}), "0") << "the snapshot was not loaded";
  for (const auto& key : keys) {
    std::optional<Lock> lock;
    for (int attempt = 0; attempt < 3 && !lock; ++attempt) {
      try {
        // The snapshot brought back the first locks; take the key over once they expire.
        (void)server.cli({"DEL", key});
        lock = api->try_acquire(key, 30s);
      } catch (const BackendError&) {  // the connection the crash broke
      }
    }
    ASSERT_TRUE(lock) << key;
    EXPECT_GT(lock->fence(), highest) << key << ": a fence repeated after the restore";
  }
}

// The internal names of `key` under `prefix`.
struct Internal {
  std::string lock, fence, holder;
};
Internal NamesOf(const std::string& prefix, const std::string& key) {
  Internal n;
  detail::redis::KeyLayout(prefix).keys_of(key, n.lock, n.fence, n.holder);
  return n;
}

TEST(RedisNamespace, BookkeepingNeverTouchesAnotherLock) {
  RedisServer server;
  auto bare = lockkit::open(server.url());
  auto app = lockkit::open(server.url("?prefix=app:"));
  const std::string foreign = "0123456789abcdef0123456789abcdef";

  // Another lockkit client (prefix "") locks the name of app's holder record of "x".
  auto names = NamesOf("app:", "x");
  std::optional<Lock> squatter;
  try {
    squatter = bare->try_acquire(names.holder, 30s);
  } catch (const std::invalid_argument&) {  // reserved: no lockkit client can take it
  }
  std::optional<Lock> x;
  try {
    x = app->try_acquire("x", 30s);
  } catch (const BackendError&) {
  }
  if (squatter) {
    EXPECT_EQ(server.cli({"GET", names.holder}), squatter->token()) << "app's acquire overwrote";
    if (x) {
      EXPECT_TRUE(x->release());
    }
    EXPECT_EQ(server.cli({"GET", names.holder}), squatter->token()) << "app's release deleted";
    EXPECT_TRUE(squatter->release());
  } else {
    ASSERT_TRUE(x);
    EXPECT_TRUE(x->release());
  }

  // Another library takes the names of app's holder record and fence counter with SET NX PX.
  for (std::string key : {"y", "z"}) {
    auto n = NamesOf("app:", key);
    const std::string& name = key == "y" ? n.holder : n.fence;
    ASSERT_EQ(server.cli({"SET", name, foreign, "NX", "PX", "30000"}), "OK") << name;
    std::optional<Lock> lock;
    try {
      lock = app->try_acquire(key, 30s);
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kProtocol) << e.what();
    }
    EXPECT_EQ(server.cli({"GET", name}), foreign) << "acquire overwrote a foreign lock";
    if (lock) {
      EXPECT_TRUE(lock->release());
    }
    EXPECT_EQ(server.cli({"GET", name}), foreign) << "release deleted a foreign lock";
    EXPECT_LE(std::stol(server.cli({"PTTL", name})), 30000);
  }

  // The same Redis name locked through both prefixes is one lock.
  auto via_app = app->try_acquire("job", 30s);
  ASSERT_TRUE(via_app);
  EXPECT_FALSE(bare->try_acquire("app:job", 30s));
  EXPECT_FALSE(bare->release("app:job", make_token()));
  EXPECT_EQ(server.cli({"GET", "app:job"}), via_app->token());
  ASSERT_TRUE(via_app->release());
  auto via_bare = bare->try_acquire("app:job", 30s);
  ASSERT_TRUE(via_bare);
  EXPECT_FALSE(app->try_acquire("job", 30s));
  EXPECT_TRUE(via_bare->release());

  // A foreign SET NX PX lock and lockkit exclude each other; no lockkit write touches it.
  ASSERT_EQ(server.cli({"SET", "app:foreign", foreign, "NX", "PX", "30000"}), "OK");
  EXPECT_FALSE(app->try_acquire("foreign", 30s));
  EXPECT_FALSE(bare->try_acquire("app:foreign", 30s));
  EXPECT_EQ(server.cli({"GET", "app:foreign"}), foreign);
}

TEST(RedisNamespace, NamesThatCouldBeBookkeepingAreRejected) {
  auto& server = RedisServer::shared();
  auto bare = lockkit::open(server.url());
  for (std::string key : {"lockkit:{1}", "app:lockkit:{12}h:x", "a/lockkit:{"}) {
    EXPECT_THROW((void)bare->try_acquire(key, 1s), std::invalid_argument) << key;
  }
  auto split = lockkit::open(server.url("?prefix=lockkit:"));
  EXPECT_THROW((void)split->try_acquire("{3}fence", 1s), std::invalid_argument);
  EXPECT_THROW(lockkit::open(server.url("?prefix=x:lockkit:%7B")), std::invalid_argument);
  EXPECT_TRUE(bare->try_acquire("lockkit:fence/" + make_token().substr(0, 8), 1s));
}

TEST(RedisList, ShowsOnlyLockkitLocks) {
  RedisServer server;
  auto api = lockkit::open(server.url());
  auto lock = api->try_acquire("listed/1", 30s);
  ASSERT_TRUE(lock);
  ASSERT_EQ(server.cli({"SET", "cache:page", "html", "PX", "30000"}), "OK");
  ASSERT_EQ(server.cli({"SET", "listed/foreign", "0123456789abcdef", "NX", "PX", "30000"}), "OK");
  auto all = api->list();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].key, "listed/1");
  EXPECT_EQ(all[0].fence, lock->fence());
  EXPECT_EQ(api->list("listed/").size(), 1u);
  EXPECT_TRUE(api->list("cache").empty());
  ASSERT_TRUE(lock->release());
  EXPECT_TRUE(api->list().empty());
}

TEST(RedisEviction, EvictingServerIsRefusedUnlessAllowed) {
  for (std::string policy : {"allkeys-lru", "volatile-ttl"}) {
    RedisServer server({"--maxmemory", "64mb", "--maxmemory-policy", policy});
    auto api = lockkit::open(server.url());
    try {
      (void)api->try_acquire("evict", 5s);
      ADD_FAILURE() << policy << " was accepted";
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find(policy), std::string::npos) << e.what();
      EXPECT_FALSE(e.retryable());
    }
    auto allowed = lockkit::open(server.url("?allow_eviction=true"));
    EXPECT_TRUE(allowed->try_acquire("evict", 5s));
  }
  // No memory limit: nothing is ever evicted, whatever the policy says.
  RedisServer unlimited({"--maxmemory-policy", "allkeys-lru"});
  EXPECT_TRUE(lockkit::open(unlimited.url())->try_acquire("evict", 5s));
  RedisServer safe({"--maxmemory", "64mb", "--maxmemory-policy", "noeviction"});
  EXPECT_TRUE(lockkit::open(safe.url())->try_acquire("evict", 5s));
}

// Whoever may not run INFO cannot be checked; that alone is no reason to refuse the connection.
TEST(RedisEviction, UserWithoutInfoPermissionStillConnects) {
  RedisServer server({"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"});
  ASSERT_EQ(
      server.cli({"ACL", "SETUSER", "bob", "on", ">bobpw", "~*", "+@all", "-info", "-config"}),
      "OK");
  auto bob = lockkit::open(server.url().insert(8, "bob:bobpw@"));
  EXPECT_TRUE(bob->try_acquire("noperm", 5s));
  EXPECT_TRUE(parse_redis_url("redis://h?allow_eviction=true").allow_eviction);
  EXPECT_FALSE(parse_redis_url("redis://h?allow_eviction=0").allow_eviction);
  EXPECT_THROW(parse_redis_url("redis://h?allow_eviction=maybe"), std::invalid_argument);
}

TEST(RedisDns, UnansweredResolverIsBoundedByTheConnectTimeout) {
  constexpr auto kTimeout = 300ms;
  const auto limit = kTimeout + kSchedulingSlack;
  int rc = testing::run_with_blackhole_dns([&] {
    auto api = lockkit::open(
        "redis://redis.lockkit-dns-test.example:6379?connect_timeout=300ms"
        "&command_timeout=300ms");
    auto start = Clock::now();
    try {
      (void)api->try_acquire("dns", 5s);
      std::fprintf(stderr, "acquired without a resolver\n");
      return 10;
    } catch (const BackendError& e) {
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      std::fprintf(stderr, "%s after %lld ms: %s\n", to_string(e.kind()),
                   static_cast<long long>(took.count()), e.what());
      if (took < kTimeout - 20ms || took > limit) return 11;
      if (e.kind() != ErrorKind::kTimeout && e.kind() != ErrorKind::kUnavailable) return 12;
      if (std::string(e.what()).find("redis.lockkit-dns-test.example") == std::string::npos) {
        return 13;
      }
      return 0;
    }
  });
  EXPECT_EQ(rc, 0) << "10 granted, 11 not within the timeout, 12 wrong kind, 13 host not named";
}

}  // namespace
}  // namespace lockkit
