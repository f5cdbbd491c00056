// SPDX-License-Identifier: MIT
// A backend of your own: a lease table in a std::map under a mutex, written against
// lockkit/backend.hpp. The core does the rest (arguments, tokens, valid_until, Lock handles).
#ifndef LOCKKIT_EXAMPLES_CUSTOM_BACKEND_HPP_
#define LOCKKIT_EXAMPLES_CUSTOM_BACKEND_HPP_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lockkit/backend.hpp"
#include "lockkit/clock.hpp"

namespace example {

// Leases of one process in an ordered map. Expiry by `clock` (a `lockkit::ManualClock` in
// tests, the steady clock otherwise). Fences come from one counter for the whole table, so
// they increase per key across releases and expiries while released keys are erased.
// Thread safety: safe to share; calls may run concurrently.
class MapStore final : public lockkit::LeaseStore {
 public:
  explicit MapStore(
      std::shared_ptr<const lockkit::Clock> clock = std::make_shared<lockkit::SteadyClock>())
      : clock_(std::move(clock)) {}

  std::string_view backend() const noexcept override { return "maptable"; }
  std::chrono::steady_clock::time_point now() const noexcept override { return clock_->now(); }

  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    auto now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it != leases_.end() && it->second.expires > now) return std::nullopt;  // busy
    Lease& lease = leases_[std::string(key)];
    lease = Lease{std::string(token), ++fences_, now + ttl};
    return lease.fence;
  }

  bool release(std::string_view key, std::string_view token) override {
    auto now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.token != token) return false;
    bool live = it->second.expires > now;
    leases_.erase(it);
    return live;
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    auto now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.token != token || it->second.expires <= now) {
      return false;
    }
    it->second.expires = now + ttl;
    return true;
  }

  std::optional<lockkit::LockInfo> status(std::string_view key) override {
    auto now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= now) return std::nullopt;
    return info(it->first, it->second, now);
  }

  std::vector<lockkit::LockInfo> list(std::string_view prefix) override {
    auto now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    std::vector<lockkit::LockInfo> out;
    for (auto it = leases_.lower_bound(prefix);
         it != leases_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      if (it->second.expires > now) out.push_back(info(it->first, it->second, now));
    }
    return out;
  }

 private:
  struct Lease {
    std::string token;
    std::uint64_t fence = 0;
    std::chrono::steady_clock::time_point expires;
  };

  static lockkit::LockInfo info(const std::string& key, const Lease& lease,
                                std::chrono::steady_clock::time_point now) {
    return {key, lease.fence, std::chrono::ceil<std::chrono::milliseconds>(lease.expires - now)};
  }

  const std::shared_ptr<const lockkit::Clock> clock_;
  std::mutex mu_;
  // Expired leases stay until their key is taken or released again: enough for an example.
  std::map<std::string, Lease, std::less<>> leases_;  // guarded by mu_
  std::uint64_t fences_ = 0;                          // guarded by mu_
};

// Makes `maptable:<name>` URLs open the process-wide table called <name>.
inline void register_maptable() {
  lockkit::register_backend("maptable", [](std::string_view url) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<MapStore>, std::less<>> tables;
    std::string name(url.substr(url.find(':') + 1));
    std::lock_guard<std::mutex> guard(mu);
    auto& table = tables[name];
    if (!table) table = std::make_shared<MapStore>();
    return std::shared_ptr<lockkit::LeaseStore>(table);
  });
}

}  // namespace example

#endif  // LOCKKIT_EXAMPLES_CUSTOM_BACKEND_HPP_
