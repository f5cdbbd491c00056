// SPDX-License-Identifier: MIT
// redis:// against a real Redis Cluster (3 masters, 3 replicas): routing by slot, MOVED and ASK
// during a reshard, failover, and redirections never reported as in doubt.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_cluster.hpp"
#include "redis/redis_keys.hpp"
#include "support/redis_cluster.hpp"
#include "support/sanitizers.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using detail::redis::key_slot;

// Keys whose slots lie on every master of the shared cluster.
std::vector<std::string> spread_keys(RedisCluster& cluster, std::size_t per_master) {
  std::map<std::size_t, std::size_t> count;
  std::vector<std::string> out;
  const std::size_t masters = cluster.masters().size();
  for (int i = 0; out.size() < masters * per_master; ++i) {
    std::string key = "spread/" + std::to_string(i);
    std::size_t m = cluster.master_of(key_slot(key));
    if (count[m] < per_master) {
      ++count[m];
      out.push_back(key);
    }
  }
  return out;
}

// The issue's report: a client without the cluster option got "in doubt" for every key another
// master serves, although that master never ran the command. A MOVED reply is a refusal.
TEST(RedisCluster, MovedWithoutClusterOptionIsNeverInDoubt) {
  RedisCluster& cluster = RedisCluster::shared();
  auto api = lockkit::open(cluster.node(cluster.masters().front()).url());
  int moved = 0;
  for (const std::string& key : spread_keys(cluster, 2)) {
    try {
      auto lock = api->try_acquire(key, 5s);
      EXPECT_TRUE(lock.has_value()) << key;
    } catch (const BackendError& e) {
      ++moved;
      EXPECT_EQ(e.kind(), ErrorKind::kProtocol) << e.what();
      EXPECT_NE(std::string(e.what()).find("MOVED"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cluster=1"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(moved, 4);  // 2 keys on each of the two other masters
}

// Each `make` opens a new client (its own connections), like another process would. Keys of the
// suite land on all three masters.
ConformanceCase ClusterCase(std::string name, std::string tail, std::size_t seeds) {
  return ConformanceCase{
      .name = std::move(name),
      .make = [tail, seeds] { return lockkit::open(RedisCluster::shared().url(tail, seeds)); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = 400ms,
      .slack = 25ms,
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(RedisCluster, LockApiConformance,
                         ::testing::Values(ClusterCase("AllSeeds", "", 0),
                                           ClusterCase("OneSeedPrefix", "&prefix=app:", 1)),
                         CaseName);

StoreCase ClusterStoreCase(std::string name, std::string tail) {
  return StoreCase{
      .name = std::move(name),
      .make_store =
          [tail] { return make_redis_store(parse_redis_url(RedisCluster::shared().url(tail))); },
      .make_unreachable =
          [] {
            return make_redis_store(RedisOptions{.port = 1,
                                                 .connect_timeout = 500ms,
                                                 .command_timeout = 500ms,
                                                 .cluster = true,
                                                 .seeds = {{"127.0.0.1", 2}}});
          },
      .exclusive = true,
  };
}

INSTANTIATE_TEST_SUITE_P(RedisCluster, LeaseStoreFaults,
                         ::testing::Values(ClusterStoreCase("Plain", ""),
                                           ClusterStoreCase("OneConnection", "&connections=1")),
                         StoreCaseName);

// One extend_many round over leases on every master: each renewal reaches its own master (one
// pipelined round per master), and a stranger's request is answered "not ours" there.
TEST(RedisClusterExtendMany, ARoundSpanningEveryMasterRenewsEachLease) {
  auto& cluster = RedisCluster::shared();
  auto store = make_redis_store(parse_redis_url(cluster.url()));
  const std::string prefix = "extend-many/" + make_token().substr(0, 8) + "/";
  std::vector<std::string> keys, tokens;
  std::map<std::size_t, int> per_master;
  for (int i = 0; keys.size() < 3 * cluster.masters().size(); ++i) {
    std::string key = prefix + std::to_string(i);
    if (per_master[cluster.master_of(key_slot(key))]++ >= 3) continue;
    keys.push_back(key);
    tokens.push_back(make_token());
    ASSERT_TRUE(store->acquire(keys.back(), tokens.back(), 5s));
  }
  std::set<std::size_t> masters;
  for (const auto& key : keys) masters.insert(cluster.master_of(key_slot(key)));
  EXPECT_EQ(masters.size(), cluster.masters().size()) << "the round does not span every master";
  const std::string stranger = make_token();
  std::vector<ExtendRequest> requests;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    requests.push_back({keys[i], i == 1 ? std::string_view(stranger) : tokens[i], 30s});
  }
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kFailed);
  store->extend_many(requests, out);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(static_cast<int>(out[i]),
              static_cast<int>(i == 1 ? ExtendOutcome::kNotOurs : ExtendOutcome::kExtended))
        << keys[i];
    auto info = store->status(keys[i]);
    ASSERT_TRUE(info) << keys[i];
    if (i == 1) {
      EXPECT_LE(info->remaining, 5s);
    } else {
      EXPECT_GT(info->remaining, 10s) << keys[i];
    }
  }
}

// Keep-alive across the masters: renewals of one round go to each lease's master.
INSTANTIATE_TEST_SUITE_P(RedisCluster, KeepAliveConformance,
                         ::testing::Values(KeepAliveCase{
                             .name = "Plain",
                             .make = [] { return lockkit::open(RedisCluster::shared().url("")); },
                             // Six servers on a loaded machine: 300 ms (renewed every 100 ms,
                             // lost 10 ms before its end) left a renewal round too little
                             // room; a sanitizer build is slower still.
                             .ttl = kSanitizerBuild ? 1000ms : 500ms,
                             .slack = 0ms,
                             .remove = nullptr,
                             .pause = nullptr,
                             .resume = nullptr,
                             .make_impatient = nullptr,
                             .call_limit = 0ms}),
                         KeepAliveCaseName);

TEST(RedisClusterUrl, ParsesSeedsAndOptions) {
  RedisOptions o = parse_redis_url(
      "redis://a:7000,b:7001,c?cluster=1&wait_replicas=1&wait_timeout=80ms&connections=3");
  EXPECT_TRUE(o.cluster);
  EXPECT_EQ(o.host, "a");
  EXPECT_EQ(o.port, 7000);
  ASSERT_EQ(o.seeds.size(), 2u);
  EXPECT_EQ(o.seeds[0].host, "b");
  EXPECT_EQ(o.seeds[0].port, 7001);
  EXPECT_EQ(o.seeds[1].port, 6379);
  EXPECT_EQ(o.wait_replicas, 1u);
  EXPECT_EQ(o.wait_timeout, 80ms);
  EXPECT_THROW(parse_redis_url("rediss://a:1,b:2?cluster=1&tls_ca_file=/x"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://a:1,b:2"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://a:1/2?cluster=1"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://a?wait_replicas=1&wait_timeout=5s&command_timeout=1s"),
               std::invalid_argument);
}

// Every key, its fence counter and holder record are on the master serving the lock key's slot.
TEST(RedisCluster, RoutesEachKeyToItsSlotsMaster) {
  RedisCluster& cluster = RedisCluster::shared();
  auto api = lockkit::open(cluster.url("", 1));
  std::set<std::size_t> masters;
  std::vector<Lock> held;
  for (const std::string& key : spread_keys(cluster, 3)) {
    auto lock = api->try_acquire(key, 10s);
    ASSERT_TRUE(lock.has_value()) << key;
    std::size_t m = cluster.master_of(key_slot(key));
    masters.insert(m);
    EXPECT_EQ(cluster.node(m).cli({"exists", key}), "1") << key;
    held.push_back(std::move(*lock));
  }
  EXPECT_EQ(masters.size(), 3u);
  auto listed = api->list("spread/");
  EXPECT_EQ(listed.size(), held.size());  // list covers every master
  for (auto& lock : held) EXPECT_TRUE(lock.release());
}

// Every key a script touches (lock, fence counter, holder record) is in the lock key's slot as
// the server computes it (CLUSTER KEYSLOT), also for keys and prefixes with braces; and each
// such lock works on the cluster (no CROSSSLOT).
TEST(RedisCluster, ALocksKeysShareItsSlotOnTheServer) {
  RedisCluster& cluster = RedisCluster::shared();
  RedisServer& node = cluster.node(cluster.masters().front());
  for (std::string prefix : {"", "app:", "app{", "a{b", "{t}:"}) {
    detail::redis::KeyLayout layout(prefix);
    std::string percent_prefix;
    for (char c : prefix) {
      if (c == '{' || c == '}') {
        percent_prefix += c == '{' ? "%7B" : "%7D";
      } else {
        percent_prefix += c;
      }
    }
    auto api = lockkit::open(cluster.url("&prefix=" + percent_prefix));
    for (std::string key : {"k", "{x}y", "a}b{", "{}z", "jobs/{tenant7}/42"}) {
      std::string lock, fence, holder;
      layout.keys_of(key, lock, fence, holder);
      const std::string slot = std::to_string(key_slot(lock));
      EXPECT_EQ(node.cli({"cluster", "keyslot", lock}), slot) << prefix << key;
      EXPECT_EQ(node.cli({"cluster", "keyslot", fence}), slot) << prefix << key;
      EXPECT_EQ(node.cli({"cluster", "keyslot", holder}), slot) << prefix << key;
      auto held = api->try_acquire(key, 5s);
      ASSERT_TRUE(held.has_value()) << prefix << key;
      EXPECT_TRUE(held->release());
    }
  }
}

// Slot `slot` moves from its master to another by hand (SETSLOT IMPORTING/MIGRATING, MIGRATE,
// SETSLOT NODE) while eight threads take and release locks in it: nobody ever holds a key
// another holds, fences per key only grow, and the client follows ASK and MOVED.
TEST(RedisCluster, ReshardWhileLocksAreHeldAndTaken) {
  RedisCluster& cluster = RedisCluster::shared();
  const std::string tag = "{reshard}";
  const std::uint16_t slot = key_slot(tag);
  const std::size_t source = cluster.master_of(slot);
  std::size_t target = source;
  for (std::size_t m : cluster.masters()) {
    if (m != source) target = m;
  }
  ASSERT_NE(source, target);
  auto& counters = detail::redis::cluster_counters();
  const std::uint64_t moved0 = counters.moved.load();
  const std::uint64_t ask0 = counters.ask.load();

  auto api = lockkit::open(cluster.url());
  constexpr int kKeys = 6;
  // Held throughout: these must survive the move.
  std::vector<Lock> long_held;
  for (int i = 0; i < 3; ++i) {
    auto lock = api->try_acquire(tag + "held/" + std::to_string(i), 30s);
    ASSERT_TRUE(lock.has_value());
    long_held.push_back(std::move(*lock));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> holders[kKeys] = {};
  std::mutex mu;
  std::uint64_t last_fence[kKeys] = {};
  std::atomic<int> violations{0}, grants{0}, errors{0}, refused{0}, attempts{0};
  std::string first_error;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto client = lockkit::open(cluster.url());  // each thread its own client
      for (int n = 0; !stop.load(); ++n) {
        const int k = (t + n) % kKeys;
        ++attempts;
        try {
          auto lock = client->try_acquire(tag + std::to_string(k), 5s);
          if (!lock) continue;
          ++grants;
          if (holders[k].fetch_add(1) != 0) ++violations;
          {
            std::lock_guard<std::mutex> guard(mu);
            if (lock->fence() <= last_fence[k]) ++violations;
            last_fence[k] = lock->fence();
          }
          holders[k].fetch_sub(1);
          lock->release();
        } catch (const BackendError& e) {
          // While a slot's keys are split between two nodes, Redis refuses scripts whose keys
          // are not all on one side (TRYAGAIN): retried within the call's budget, then
          // reported as unavailable. Anything else, in doubt above all, is a failure.
          if (e.kind() == ErrorKind::kUnavailable &&
              std::string(e.what()).find("TRYAGAIN") != std::string::npos) {
            ++refused;
            continue;
          }
          ++errors;
          std::lock_guard<std::mutex> guard(mu);
          if (first_error.empty()) first_error = e.what();
        }
      }
    });
  }
  auto wait_grants = [&](int more) {
    const int want = grants.load() + more;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (grants.load() < want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  };
  wait_grants(50);
  RedisServer& src = cluster.node(source);
  RedisServer& dst = cluster.node(target);
  const std::string src_id = cluster.id(source);
  const std::string dst_id = cluster.id(target);
  const std::string s = std::to_string(slot);
  ASSERT_EQ(dst.cli({"cluster", "setslot", s, "importing", src_id}), "OK");
  ASSERT_EQ(src.cli({"cluster", "setslot", s, "migrating", dst_id}), "OK");
  // Move the keys in small batches until the source may give the slot up (it refuses while it
  // still holds keys of the slot, which the acquires keep creating until the counter moves).
  std::string assigned;
  for (int round = 0; round < 500; ++round) {
    std::string keys = src.cli({"cluster", "getkeysinslot", s, "1000"});
    if (!keys.empty()) {
      std::vector<std::string> args{"migrate", "127.0.0.1", std::to_string(dst.port()), "", "0",
                                    "5000",    "keys"};
      std::istringstream in(keys);
      for (std::string k; std::getline(in, k);) args.push_back(k);
      src.cli(args);
      continue;
    }
    assigned = dst.cli({"cluster", "setslot", s, "node", dst_id});
    std::string on_src = src.cli({"cluster", "setslot", s, "node", dst_id});
    if (on_src == "OK") break;
  }
  ASSERT_EQ(assigned, "OK");
  for (std::size_t m : cluster.masters())
    cluster.node(m).cli({"cluster", "setslot", s, "node", dst_id});
  wait_grants(50);  // and against its new master
  stop = true;
  for (auto& t : threads) t.join();
  cluster.wait_ok();

  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(cluster.master_of(slot), target);
  const std::uint64_t moved = counters.moved.load() - moved0;
  const std::uint64_t ask = counters.ask.load() - ask0;
  std::printf("reshard: %d grants, %d refused (TRYAGAIN), %llu MOVED, %llu ASK followed\n",
              grants.load(), refused.load(), static_cast<unsigned long long>(moved),
              static_cast<unsigned long long>(ask));
  EXPECT_GT(moved, 0u);
  // The locks held across the move are still ours, now on the new master.
  for (auto& lock : long_held) {
    EXPECT_EQ(dst.cli({"exists", std::string(lock.key())}), "1");
    EXPECT_TRUE(lock.extend(30s));
    EXPECT_TRUE(lock.release());
  }
}

// The password from password_file= reaches every master; a wrong one is kind auth.
TEST(RedisCluster, PasswordFileAuthenticatesOnEveryMaster) {
  RedisCluster& cluster = RedisCluster::shared();
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/lockkit-cluster-pw";
  const std::string bad = dir + "/lockkit-cluster-bad-pw";
  std::ofstream(good) << RedisCluster::kAppPassword << "\n";
  std::ofstream(bad) << "wrong\n";
  std::string url = cluster.url("&password_file=" + good);
  url.replace(url.find("redis://"), 8, "redis://app@");
  auto api = lockkit::open(url);
  for (const std::string& key : spread_keys(cluster, 1)) {
    auto lock = api->try_acquire(key, 5s);
    ASSERT_TRUE(lock.has_value()) << key;
    EXPECT_TRUE(lock->release());
  }
  std::string wrong = cluster.url("&password_file=" + bad);
  wrong.replace(wrong.find("redis://"), 8, "redis://app@");
  try {
    (void)lockkit::open(wrong)->try_acquire("pw/1", 5s);
    ADD_FAILURE() << "a wrong password was accepted";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kAuth) << e.what();
    EXPECT_EQ(std::string(e.what()).find("wrong"), std::string::npos) << e.what();
  }
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

// A forked child uses the parent's cluster client (its slot map, fresh connections to every
// master) while the parent keeps using it.
TEST(RedisCluster, ForkedChildAndParentBothRoute) {
  RedisCluster& cluster = RedisCluster::shared();
  auto api = lockkit::open(cluster.url());
  auto keys = spread_keys(cluster, 1);
  for (const auto& key : keys) ASSERT_TRUE(api->try_acquire(key + "/warm", 5s).has_value());
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 0;
    try {
      for (const auto& key : keys) {
        auto lock = api->try_acquire(key + "/child", 5s);
        if (!lock || !lock->release()) code = 1;
      }
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  for (const auto& key : keys) {
    auto lock = api->try_acquire(key + "/parent", 5s);
    ASSERT_TRUE(lock.has_value());
    EXPECT_TRUE(lock->release());
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// A key on master `m` (a slot it serves), named `prefix` + a number.
std::string key_on(RedisCluster& cluster, std::size_t m, const std::string& prefix) {
  for (int i = 0;; ++i) {
    std::string key = prefix + std::to_string(i);
    if (cluster.master_of(key_slot(key)) == m) return key;
  }
}

// Returns the index of `master`'s replica.
std::size_t replica_of(RedisCluster& cluster, std::size_t master) {
  const std::string id = cluster.id(master);
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    if (i != master && cluster.node(i).cli({"role"}).substr(0, 5) == "slave" &&
        cluster.node(i).cli({"cluster", "nodes"}).find("myself,slave " + id) != std::string::npos) {
      return i;
    }
  }
  return cluster.size();
}

// With wait_replicas=1 a grant the replica does not confirm in time is released and reported
// as unavailable; the cost is one more round trip per acquire.
TEST(RedisCluster, WaitReplicasRefusesAGrantNoReplicaConfirmed) {
  RedisCluster& cluster = RedisCluster::shared();
  const std::size_t m = cluster.masters().front();
  const std::size_t r = replica_of(cluster, m);
  ASSERT_LT(r, cluster.size());
  auto waiting = lockkit::open(cluster.url("&wait_replicas=1&wait_timeout=100ms"));
  const std::string key = key_on(cluster, m, "wait/");
  {
    auto lock = waiting->try_acquire(key, 10s);
    ASSERT_TRUE(lock.has_value());  // the replica confirmed it
    EXPECT_TRUE(lock->release());
  }
  ASSERT_EQ(::kill(cluster.node(r).pid(), SIGSTOP), 0);  // the replica stops acknowledging
  try {
    auto lock = waiting->try_acquire(key, 10s);
    ADD_FAILURE() << "granted without a replica";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnavailable) << e.what();
    EXPECT_NE(std::string(e.what()).find("0 of 1 replicas"), std::string::npos) << e.what();
  }
  ::kill(cluster.node(r).pid(), SIGCONT);
  EXPECT_FALSE(waiting->status(key).has_value());  // released again: nobody holds it
}

// A master is killed and its replica promoted (CLUSTER FAILOVER TAKEOVER). Redis replicates
// asynchronously: a lock granted while the replica lagged (here: stopped) is gone on the new
// master, so a second client gets it too; a lock the replica confirmed (wait_replicas=1)
// survives. Both clients find the new master by themselves. Fences still grow.
TEST(RedisCluster, FailoverLosesUnreplicatedLocksButNotConfirmedOnes) {
  RedisCluster& cluster = RedisCluster::shared();
  const std::size_t m = cluster.masters().back();
  const std::size_t r = replica_of(cluster, m);
  ASSERT_LT(r, cluster.size());
  auto waiting = lockkit::open(cluster.url("&wait_replicas=1&wait_timeout=500ms"));
  auto plain = lockkit::open(cluster.url());
  auto other = lockkit::open(cluster.url());
  const std::string confirmed_key = key_on(cluster, m, "failover/confirmed/");
  const std::string lagging_key = key_on(cluster, m, "failover/lagging/");
  auto confirmed = waiting->try_acquire(confirmed_key, 60s);
  ASSERT_TRUE(confirmed.has_value());
  // The replica falls behind: stopped, and cut off by the master (a stopped process would
  // still find in its socket buffer whatever the master sent it before dying).
  ASSERT_EQ(::kill(cluster.node(r).pid(), SIGSTOP), 0);
  cluster.node(m).cli({"client", "kill", "type", "replica"});
  auto lagging = plain->try_acquire(lagging_key, 60s);  // granted; the replica never sees it
  ASSERT_TRUE(lagging.has_value());
  const std::uint64_t refreshes0 = detail::redis::cluster_counters().refreshes.load();
  cluster.node(m).kill();
  ::kill(cluster.node(r).pid(), SIGCONT);
  ASSERT_EQ(cluster.node(r).cli({"cluster", "failover", "takeover"}), "OK");
  cluster.wait_ok();
  ASSERT_EQ(cluster.master_of(key_slot(confirmed_key)), r);

  // The confirmed lock is still held on the new master.
  EXPECT_FALSE(other->try_acquire(confirmed_key, 1s).has_value());
  // The unreplicated one was lost: another client takes it, with a larger fence.
  auto second = other->try_acquire(lagging_key, 10s);
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->fence(), lagging->fence());
  EXPECT_GT(detail::redis::cluster_counters().refreshes.load(), refreshes0);
  EXPECT_TRUE(confirmed->release());
  EXPECT_FALSE(lagging->release());  // not ours any more
  EXPECT_TRUE(second->release());
  // The old master comes back as a replica of the new one, and is in sync before the next test
  // (its full resync makes the new master fork, a pause the next test's short leases would see).
  cluster.node(m).start();
  cluster.wait_ok();
  cluster.wait_in_sync();
}

}  // namespace
}  // namespace lockkit::testing
