// SPDX-License-Identifier: MIT
// The memory: backend: a sharded, process-local lease table with an injectable clock.
#include <time.h>

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

std::size_t hash_key(std::string_view key) noexcept {
  return std::hash<std::string_view>{}(key);
}

// A key with its hash, computed once per call: it picks the shard and finds the entry.
struct HashedKey {
  std::string_view key;
  std::size_t hash;
};

// The table's key type: the bytes plus their hash, so lookups never hash twice.
struct StoredKey {
  std::string key;
  std::size_t hash;
};

struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(const StoredKey& k) const noexcept { return k.hash; }
  std::size_t operator()(const HashedKey& k) const noexcept { return k.hash; }
};

struct KeyEqual {
  using is_transparent = void;
  bool operator()(const StoredKey& a, const StoredKey& b) const noexcept { return a.key == b.key; }
  bool operator()(const HashedKey& a, const StoredKey& b) const noexcept { return a.key == b.key; }
  bool operator()(const StoredKey& a, const HashedKey& b) const noexcept { return a.key == b.key; }
};

// The real steady clock read cheaply: CLOCK_MONOTONIC_COARSE costs a fifth of CLOCK_MONOTONIC
// and lags it by at most one tick, so `coarse + tick < t` proves that t has not passed yet.
class CoarseSteady {
 public:
  CoarseSteady() {
    timespec res{};
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    tick_ = std::chrono::seconds(res.tv_sec) + std::chrono::nanoseconds(res.tv_nsec);
  }
  // Returns true if the steady clock has certainly not reached `t`.
  bool surely_before(TimePoint t) const noexcept {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    auto coarse = TimePoint(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec)));
    return coarse + tick_ < t;
  }

 private:
  std::chrono::nanoseconds tick_{0};
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
class alignas(64) Shard final : public LeaseOps {
 public:
  // `steady` says that `clock` is the real steady clock (libstdc++: CLOCK_MONOTONIC), which
  // lets release skip most precise clock reads.
  Shard(std::shared_ptr<const Clock> clock, bool steady)
      : clock_(std::move(clock)), steady_(steady) {}

  std::string_view backend() const noexcept override { return "memory"; }
  TimePoint now() const noexcept override { return clock_->now(); }

  // `self` is this shard's own shared_ptr (cheaper to copy than shared_from_this()).
  std::optional<Lock> try_acquire(const std::shared_ptr<Shard>& self, HashedKey key,
                                  std::chrono::milliseconds ttl) {
    std::string token = make_token();  // outside the mutex: the critical section stays tiny
    TimePoint now = clock_->now();
    std::uint64_t fence;
    {
      std::lock_guard<std::mutex> guard(mu_);
      auto it = leases_.find(key);
      if (it == leases_.end()) {
        if (leases_.size() >= sweep_at_) sweep(now);
        it = leases_.emplace(StoredKey{std::string(key.key), key.hash}, Entry{}).first;
      } else if (it->second.expires > now) {
        return std::nullopt;
      }
      fence = ++fences_;
      std::memcpy(it->second.token.data(), token.data(), it->second.token.size());
      it->second.fence = fence;
      it->second.expires = now + ttl;
    }
    return Lock(self, std::string(key.key), std::move(token), fence, now + ttl);
  }

  // A released entry stays in the table as expired, so that taking the key again reuses its
  // node instead of allocating; sweeps reclaim it like any expired entry.
  bool release(std::string_view key, std::string_view token) override {
    return release(HashedKey{key, hash_key(key)}, token);
  }

  bool release(HashedKey key, std::string_view token) {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || !it->second.owned_by(token)) return false;
    TimePoint expires = it->second.expires;
    if (!(steady_ && coarse_.surely_before(expires)) && expires <= clock_->now()) return false;
    it->second.expires = TimePoint::min();
    return true;
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(HashedKey{key, hash_key(key)});
    if (it == leases_.end() || it->second.expires <= now || !it->second.owned_by(token)) {
      return false;
    }
    it->second.expires = now + ttl;
    return true;
  }

  std::optional<LockInfo> status(HashedKey key) const {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= now) return std::nullopt;
    return info(it->first.key, it->second, now);
  }

  void collect(std::string_view prefix, std::vector<LockInfo>& out) const {
    TimePoint now = clock_->now();
    std::lock_guard<std::mutex> guard(mu_);
    for (const auto& [stored, entry] : leases_) {
      const std::string& key = stored.key;
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
  static LockInfo info(const std::string& key, const Entry& entry, TimePoint now) {
    return LockInfo{key, entry.fence,
                    std::chrono::ceil<std::chrono::milliseconds>(entry.expires - now)};
  }

  // Drops expired and released entries. Runs when an insert finds the table at twice its size
  // after the previous sweep, so its cost is amortised O(1) per insert and a shard never holds
  // more than max(64, 2 x the live entries at the previous sweep).
  void sweep(TimePoint now) {
    std::erase_if(leases_, [now](const auto& kv) { return kv.second.expires <= now; });
    sweep_at_ = std::max<std::size_t>(64, 2 * leases_.size());
  }

  // Layout: what every call writes (the mutex, the fence counter) shares one cache line; the
  // table header, read-mostly once warm, sits on lines of its own, so that threads on other
  // keys of this shard bounce one line per call, not three.
  const std::shared_ptr<const Clock> clock_;
  const bool steady_;
  const CoarseSteady coarse_;
  alignas(64) mutable std::mutex mu_;
  std::uint64_t fences_ = 0;                                                    // guarded by mu_
  std::size_t sweep_at_ = 64;                                                   // guarded by mu_
  alignas(64) std::unordered_map<StoredKey, Entry, KeyHash, KeyEqual> leases_;  // guarded by mu_
};

}  // namespace

struct InMemoryLockApi::Impl {
  std::vector<std::shared_ptr<Shard>> shards;
  std::size_t mask = 0;

  // Shards by the hash's high bits: the table inside uses the low ones for its buckets.
  const std::shared_ptr<Shard>& shard_for(HashedKey key) const {
    return shards[(key.hash >> 48) & mask];
  }
};

InMemoryLockApi::InMemoryLockApi(MemoryOptions options) : impl_(std::make_unique<Impl>()) {
  bool steady = !options.clock;
  std::shared_ptr<const Clock> clock =
      options.clock ? std::move(options.clock) : std::make_shared<SteadyClock>();
  std::size_t n = 1;
  while (n < options.shards && n < 4096) n *= 2;
  impl_->mask = n - 1;
  impl_->shards.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    impl_->shards.push_back(std::make_shared<Shard>(clock, steady));
}

InMemoryLockApi::~InMemoryLockApi() = default;

std::optional<Lock> InMemoryLockApi::try_acquire(std::string_view key,
                                                 std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  HashedKey hashed{key, hash_key(key)};
  const auto& shard = impl_->shard_for(hashed);
  return shard->try_acquire(shard, hashed, ttl);
}

bool InMemoryLockApi::release(std::string_view key, std::string_view token) {
  validate_key(key);
  HashedKey hashed{key, hash_key(key)};
  return impl_->shard_for(hashed)->release(hashed, token);
}

bool InMemoryLockApi::extend(std::string_view key, std::string_view token,
                             std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return impl_->shard_for(HashedKey{key, hash_key(key)})->extend(key, token, ttl);
}

std::optional<LockInfo> InMemoryLockApi::status(std::string_view key) {
  validate_key(key);
  HashedKey hashed{key, hash_key(key)};
  return impl_->shard_for(hashed)->status(hashed);
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
