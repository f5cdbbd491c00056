// SPDX-License-Identifier: MIT
// Internal: Redis Cluster routing: the slot map, one connection pool per node, redirections.
#ifndef LOCKKIT_SRC_REDIS_REDIS_CLUSTER_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_CLUSTER_HPP_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis/redis_connection.hpp"

namespace lockkit::detail::redis {

// How often this process met each cluster event, for tests and diagnostics.
struct ClusterCounters {
  std::atomic<std::uint64_t> moved{0};      // MOVED replies followed
  std::atomic<std::uint64_t> ask{0};        // ASK replies followed (ASKING + the command)
  std::atomic<std::uint64_t> tryagain{0};   // TRYAGAIN / CLUSTERDOWN replies retried
  std::atomic<std::uint64_t> refreshes{0};  // slot maps learned (CLUSTER SLOTS)
};
ClusterCounters& cluster_counters() noexcept;

struct NodeAddress {
  std::string host;
  std::uint16_t port = 0;
};

// Parses a redirection's "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". Returns
// nothing if `text` is neither.
struct Redirection {
  bool ask = false;
  std::uint16_t slot = 0;
  NodeAddress to;
};
std::optional<Redirection> parse_redirection(std::string_view text);

// The cluster as one client sees it: which master serves each of the 16384 slots, learned by
// CLUSTER SLOTS from any node that answers (known nodes first, then the seeds), and a pipelined
// connection pool (`Pool`, `connections` each) per node, made on first use and kept.
// Thread safety: safe to share; calls may run concurrently.
class ClusterRouter {
 public:
  ClusterRouter(ConnectConfig base, std::vector<NodeAddress> seeds, std::size_t connections);

  // Returns the pool of the master serving `slot`, learning the map first if there is none.
  // Throws `StoreFailure` (never sent) if no node answers by `deadline`.
  // Lock-free when the map is known. The pool lives as long as the router.
  Pool& route(std::uint16_t slot, TimePoint deadline);
  // Returns the pool of the node at `to` (made if new), for an ASK.
  Pool& node(const NodeAddress& to);
  // Records that `slot` moved to `to` (a MOVED reply) and returns that node's pool. The rest of
  // the map is learned again on the next `refresh`.
  Pool& moved(std::uint16_t slot, const NodeAddress& to);
  // Learns the slot map again from any node that answers, unless someone else did so since
  // `seen` (a value of `version()`). Throws `StoreFailure` (never sent) if none answers by
  // `deadline`.
  void refresh(std::uint64_t seen, TimePoint deadline);
  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }
  // Returns the pools of all masters that serve slots, learning the map first if needed.
  std::vector<Pool*> masters(TimePoint deadline);
  const ConnectConfig& base() const noexcept { return base_; }

 private:
  Pool* pool_locked(const NodeAddress& to);

  const ConnectConfig base_;
  const std::vector<NodeAddress> seeds_;
  const std::size_t connections_;
  // One CLUSTER SLOTS at a time; held during I/O, never with mu_. Waiting for it is bounded by
  // the caller's deadline (also in a forked child whose parent held it).
  std::mutex refresh_mu_;
  std::mutex mu_;
  // By "host:port", never removed: `slots_` and callers point into it. Guarded by mu_.
  std::map<std::string, std::unique_ptr<Pool>> pools_;
  std::vector<std::atomic<Pool*>> slots_;  // slot -> its master's pool; null = not known
  std::vector<NodeAddress> known_;         // masters of the last map, tried first; guarded by mu_
  std::atomic<std::uint64_t> version_{0};
};

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_CLUSTER_HPP_
