// SPDX-License-Identifier: MIT
// Internal: what lockkit::async's native Redis client needs from a redis:// store, so that it
// speaks to the same server with the same scripts and key layout (the wire stays identical).
#ifndef LOCKKIT_SRC_REDIS_REDIS_NATIVE_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_NATIVE_HPP_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lockkit::detail::redis {

// Where and how to connect: one server over plain TCP.
struct NativeTarget {
  std::string host;
  std::uint16_t port = 6379;
  std::string user;
  std::optional<std::string> password;  // empty: no AUTH
  unsigned db = 0;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
};

// Implemented by the redis:// store; reached by dynamic_cast from its `LeaseStore`.
class NativeAsyncSource {
 public:
  // Returns the server to connect to, or empty when the store has no native async path:
  // `rediss://` (TLS), Redis Cluster and `wait_replicas` > 0 stay on lockkit's blocking client.
  virtual std::optional<NativeTarget> native_target() const = 0;
  // Throws `std::invalid_argument` for a key the store refuses (a reserved Redis name).
  virtual void native_check_key(std::string_view key) const = 0;
  // Writes the lock key, fence counter key and holder key of `key`, as the store names them.
  virtual void native_keys_of(std::string_view key, std::string& lock, std::string& fence,
                              std::string& holder) const = 0;

 protected:
  ~NativeAsyncSource() = default;
};

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_NATIVE_HPP_
