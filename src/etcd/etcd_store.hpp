// SPDX-License-Identifier: MIT
// Internal: the etcd:// LeaseStore.
#ifndef LOCKKIT_SRC_ETCD_ETCD_STORE_HPP_
#define LOCKKIT_SRC_ETCD_ETCD_STORE_HPP_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
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
  // Watches the key for its deletion (release, revoke or expiry) until `until`; see the .cpp.
  void wait_for_release(std::string_view key, std::chrono::steady_clock::time_point until) override;
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override;

  // Returns the lease TTL in seconds that a lock of `ttl` asks etcd for: rounded up to a whole
  // second, at least 1.
  static std::int64_t lease_seconds(std::chrono::milliseconds ttl) noexcept;

 private:
  std::string etcd_key(std::string_view key) const;
  // Revokes `lease`, ignoring every failure: a lease without keys only expires by itself.
  void revoke_quietly(std::int64_t lease) noexcept;

  // The threads of this process waiting for one key to be released.
  struct Waiters {
    std::condition_variable cv;
    bool watching = false;     // one of them runs the key's one watch
    std::int64_t deleted = 0;  // the last deletion the watch saw (revision)
    std::list<bool*> queue;    // each waiter's "woken" flag, in arrival order
  };

  const std::string prefix_;
  Client client_;
  // The longest TTL etcd granted when asked for less: the cluster's minimum lease TTL.
  std::atomic<std::int64_t> min_granted_{0};
  std::mutex waiters_mu_;
  std::map<std::string, std::shared_ptr<Waiters>, std::less<>> waiters_;  // guarded by waiters_mu_
};

// Throws `std::invalid_argument` naming the first bad option.
void validate(const EtcdOptions& options);

}  // namespace lockkit::detail::etcd

#endif  // LOCKKIT_SRC_ETCD_ETCD_STORE_HPP_
