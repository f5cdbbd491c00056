// SPDX-License-Identifier: MIT
// Test fixture: a throwaway Redis Cluster (masters and replicas) on loopback ports.
#ifndef LOCKKIT_TESTS_SUPPORT_REDIS_CLUSTER_HPP_
#define LOCKKIT_TESTS_SUPPORT_REDIS_CLUSTER_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/redis_server.hpp"

namespace lockkit::testing {

// `masters` redis-servers with `cluster-enabled yes` (and `replicas_per_master` replicas each),
// each a `RedisServer` in its own temporary directory, joined by `redis-cli --cluster create`.
// The constructor returns once every node reports `cluster_state:ok` and agrees on the slot map
// (polled, bounded). Stopped by pid when destroyed. Thread safety: one thread at a time.
class RedisCluster {
 public:
  // Throws `std::runtime_error` with the reason if the cluster does not form in time.
  // With `tls` other than kOff every node also listens for TLS (`tls-cluster` and
  // `tls-replication` on). Every node has the ACL user "app" with password `kAppPassword`.
  explicit RedisCluster(std::size_t masters = 3, std::size_t replicas_per_master = 1,
                        std::vector<std::string> extra_args = {}, RedisTls tls = RedisTls::kOff);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  std::size_t size() const noexcept { return nodes_.size(); }
  RedisServer& node(std::size_t i) { return *nodes_[i]; }
  // Returns "redis://127.0.0.1:<p1>,127.0.0.1:<p2>,...?cluster=1" (the first `seeds` nodes, all
  // when 0) followed by `tail` (e.g. "&prefix=x").
  std::string url(std::string_view tail = "", std::size_t seeds = 0) const;
  // Returns "rediss://127.0.0.1:<tls ports>...?cluster=1&tls_ca_file=<the test CA>" + `tail`.
  std::string tls_url(std::string_view tail = "") const;
  // Returns the index of the node currently serving `slot` as master, or size() if none does.
  std::size_t master_of(std::uint16_t slot);
  // Returns the indexes of the current masters.
  std::vector<std::size_t> masters();
  // Returns the node's cluster node id.
  std::string id(std::size_t i);
  // Polls until every running node reports `cluster_state:ok` and they all agree on which node
  // serves each slot, or throws `std::runtime_error` after `timeout`.
  void wait_ok(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Polls until every master has its replicas connected and in sync (WAIT needs them online, and
  // a replica's full resync makes its master fork), or throws `std::runtime_error` after
  // `timeout`.
  void wait_in_sync(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Returns the cluster shared by the whole test binary (3 masters, 3 replicas), started on
  // first use.
  static RedisCluster& shared();

  static constexpr const char* kAppPassword = "app-secret-1";

 private:
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::size_t replicas_per_master_ = 0;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_REDIS_CLUSTER_HPP_
