// SPDX-License-Identifier: MIT
// Internal: the etcd:// LeaseStore.
#ifndef LOCKKIT_SRC_ETCD_ETCD_STORE_HPP_
#define LOCKKIT_SRC_ETCD_ETCD_STORE_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "etcd/etcd_client.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/etcd.hpp"

namespace lockkit::detail::etcd {

// One lease per lock, the key `prefix + key` holding the owner token; see lockkit/etcd.hpp.
// Thread safety: safe to share; calls may run concurrently.
class EtcdStore final : public LeaseStore {
 public:
  // Throws `std::invalid_argument` for bad options. Does not connect.
  explicit EtcdStore(const EtcdOptions& options);

  std::string_view backend() const noexcept override { return "etcd"; }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override;
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix) override;
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override;

  // Returns the lease TTL in seconds that a lock of `ttl` asks etcd for: rounded up to a whole
  // second, at least 1.
  static std::int64_t lease_seconds(std::chrono::milliseconds ttl) noexcept;

 private:
  std::string etcd_key(std::string_view key) const;
  // Revokes `lease`, ignoring every failure: a lease without keys only expires by itself.
  void revoke_quietly(std::int64_t lease) noexcept;

  const std::string prefix_;
  Client client_;
  // The longest TTL etcd granted when asked for less: the cluster's minimum lease TTL.
  std::atomic<std::int64_t> min_granted_{0};
};

// Throws `std::invalid_argument` naming the first bad option.
void validate(const EtcdOptions& options);

}  // namespace lockkit::detail::etcd

#endif  // LOCKKIT_SRC_ETCD_ETCD_STORE_HPP_
