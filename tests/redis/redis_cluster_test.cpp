// SPDX-License-Identifier: MIT
// redis:// against a real Redis Cluster (3 masters, 3 replicas): routing by slot, MOVED and ASK
// during a reshard, failover, and redirections never reported as in doubt.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_keys.hpp"
#include "support/redis_cluster.hpp"

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

// The report: a client without the cluster option got "in doubt" for every key another
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

}  // namespace
}  // namespace lockkit::testing
