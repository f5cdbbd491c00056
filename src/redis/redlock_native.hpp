// SPDX-License-Identifier: MIT
// Internal: what lockkit::async's native Redlock client needs from a redlock:// store, so that
// it speaks to the same nodes with the same scripts, key layout and quorum bookkeeping.
#ifndef LOCKKIT_SRC_REDIS_REDLOCK_NATIVE_HPP_
#define LOCKKIT_SRC_REDIS_REDLOCK_NATIVE_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis/redis_native.hpp"

namespace lockkit::detail::redis {

// Implemented by the redlock:// store; reached by dynamic_cast from its `LeaseStore`.
// Thread safety: safe to call from any thread.
class RedlockNativeSource {
 public:
  // Returns the nodes to connect to, in the store's order, or empty when the store has no
  // native async path (a node over TLS or with `wait_replicas` > 0).
  virtual std::optional<std::vector<NativeTarget>> native_nodes() const = 0;
  // Throws `std::invalid_argument` for a key the store refuses (a reserved Redis name).
  virtual void native_check_key(std::string_view key) const = 0;
  // Writes the lock key, fence counter key, holder key and the node's bookkeeping hash of
  // `key` on node `node`, as the store names them.
  virtual void native_keys_of(std::size_t node, std::string_view key, std::string& lock,
                              std::string& fence, std::string& holder, std::string& meta) const = 0;
  // The longest ttl (ms) seen recorded on any node with known history; shared with the store.
  virtual std::atomic<std::uint64_t>& native_max_ttl() noexcept = 0;
  // A failed node is skipped for `backoff`, doubling per failure up to `max_backoff`.
  virtual std::chrono::milliseconds native_backoff() const noexcept = 0;
  virtual std::chrono::milliseconds native_max_backoff() const noexcept = 0;
  // Sends PING to `node` through the store's own connection (blocking): its connect checks
  // (credentials, eviction policy) apply. Throws `BackendError` (backend "redis").
  virtual void native_probe(std::size_t node) = 0;

 protected:
  ~RedlockNativeSource() = default;
};

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDLOCK_NATIVE_HPP_
