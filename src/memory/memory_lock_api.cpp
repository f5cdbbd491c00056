// SPDX-License-Identifier: MIT
// The memory: backend: a sharded, process-local lease table with an injectable clock.
#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "lockkit/memory.hpp"

namespace lockkit {
namespace {

using TimePoint = std::chrono::steady_clock::time_point;

struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

struct Entry {
  std::array<char, 32> token;  // fixed size: no allocation per acquisition
  std::uint64_t fence;
  TimePoint expires;

  bool owned_by(std::string_view t) const noexcept {
    return t.size() == token.size() && std::memcmp(t.data(), token.data(), token.size()) == 0;
  }
};

// One independent sub-table. Each shard is its own `LeaseOps` with its own shared_ptr control
// block, so locks on different shards never touch the same reference count or mutex.
class alignas(64) Shard final : public LeaseOps, public std::enable_shared_from_this<Shard> {
 public:
  explicit Shard(std::shared_ptr<const Clock> clock) : clock_(std::move(clock)) {}

  std::string_view backend() const noexcept override { return "memory"; }
  TimePoint now() const noexcept override { return clock_->now(); }

  std::optional<Lock> try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
    std::string token = make_token();  // outside the mutex: the critical section stays tiny
    TimePoint now = clock_->now();
    std::uint64_t fence;
    {
      std::lock_guard<std::mutex> guard(mu_);
      auto it = leases_.find(key);
      if (it != leases_.end()) {
        if (it->second.expires > now) return std::nullopt;
        fill(it->second, token, now + ttl);
      } else {
        if (leases_.size() >= sweep_at_) sweep(now);
        Entry entry;
        fill(entry, token, now + ttl);
        leases_.emplace(std::string(key), entry);
      }
      fence = ++fences_;
      it = leases_.find(key);
      it->second.fence = fence;
    }
    return Lock(shared_from_this(), std::string(key), std::move(token), fence, now + ttl);
  }

  bool release(std::string_view key, std::string_view token) override {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end()) return false;
    bool expired = it->second.expires <= now;
    if (!expired && !it->second.owned_by(token)) return false;
    leases_.erase(it);  // ours, or expired: reclaim either way
    return !expired;
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= now || !it->second.owned_by(token)) {
      return false;
    }
    it->second.expires = now + ttl;
    return true;
  }

  std::optional<LockInfo> status(std::string_view key) const {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= now) return std::nullopt;
    return info(it->first, it->second, now);
  }

  void collect(std::string_view prefix, std::vector<LockInfo>& out) const {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    for (const auto& [key, entry] : leases_) {
      if (entry.expires > now && std::string_view(key).substr(0, prefix.size()) == prefix) {
        out.push_back(info(key, entry, now));
      }
    }
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> guard(mu_);
    return leases_.size();
  }

 private:
  static void fill(Entry& entry, const std::string& token, TimePoint expires) {
    std::memcpy(entry.token.data(), token.data(), entry.token.size());
    entry.expires = expires;
  }

  static LockInfo info(const std::string& key, const Entry& entry, TimePoint now) {
    return LockInfo{key, entry.fence,
                    std::chrono::ceil<std::chrono::milliseconds>(entry.expires - now)};
  }

  // Drops expired entries. Runs when the table has doubled since the last sweep, so its cost is
  // amortised O(1) per insert and the table never exceeds twice its live entries (+ 64).
  void sweep(TimePoint now) {
    std::erase_if(leases_, [now](const auto& kv) { return kv.second.expires <= now; });
    sweep_at_ = std::max<std::size_t>(64, 2 * leases_.size());
  }

  const std::shared_ptr<const Clock> clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> leases_;  // guarded by mu_
  std::uint64_t fences_ = 0;                                                 // guarded by mu_
  std::size_t sweep_at_ = 64;                                                // guarded by mu_
};

}  // namespace

struct InMemoryLockApi::Impl {
  std::vector<std::shared_ptr<Shard>> shards;
  std::size_t mask = 0;

  Shard& shard_for(std::string_view key) const { return *shards[KeyHash{}(key)&mask]; }
};

InMemoryLockApi::InMemoryLockApi(MemoryOptions options) : impl_(std::make_unique<Impl>()) {
  std::shared_ptr<const Clock> clock =
      options.clock ? std::move(options.clock) : std::make_shared<SteadyClock>();
  std::size_t n = 1;
  while (n < options.shards && n < 4096) n *= 2;
  impl_->mask = n - 1;
  impl_->shards.reserve(n);
  for (std::size_t i = 0; i < n; ++i) impl_->shards.push_back(std::make_shared<Shard>(clock));
}

InMemoryLockApi::~InMemoryLockApi() = default;

std::optional<Lock> InMemoryLockApi::try_acquire(std::string_view key,
                                                 std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return impl_->shard_for(key).try_acquire(key, ttl);
}

bool InMemoryLockApi::release(std::string_view key, std::string_view token) {
  validate_key(key);
  return impl_->shard_for(key).release(key, token);
}

bool InMemoryLockApi::extend(std::string_view key, std::string_view token,
                             std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return impl_->shard_for(key).extend(key, token, ttl);
}

std::optional<LockInfo> InMemoryLockApi::status(std::string_view key) {
  validate_key(key);
  return impl_->shard_for(key).status(key);
}

std::vector<LockInfo> InMemoryLockApi::list(std::string_view prefix) {
  std::vector<LockInfo> out;
  for (const auto& shard : impl_->shards) shard->collect(prefix, out);
  std::sort(out.begin(), out.end(),
            [](const LockInfo& a, const LockInfo& b) { return a.key < b.key; });
  return out;
}

std::size_t InMemoryLockApi::table_size() const {
  std::size_t n = 0;
  for (const auto& shard : impl_->shards) n += shard->size();
  return n;
}

std::unique_ptr<LockApi> make_memory_lock_api(MemoryOptions options) {
  return std::make_unique<InMemoryLockApi>(std::move(options));
}

}  // namespace lockkit
