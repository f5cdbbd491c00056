// SPDX-License-Identifier: MIT
// The memory: backend: a sharded, process-local LeaseStore with an injectable clock.
#include <time.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/memory.hpp"
#include "memory/memory_store.hpp"

namespace lockkit {
namespace {

using TimePoint = std::chrono::steady_clock::time_point;
constexpr std::size_t kMaxTokenBytes = 32;

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
  bool surely_before(TimePoint t) const noexcept { return coarse() + tick_ < t; }
  // Returns true if the steady clock is certainly less than one tick past `t` (a time it showed).
  bool within_a_tick_of(TimePoint t) const noexcept { return coarse() <= t; }

 private:
  static TimePoint coarse() noexcept {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return TimePoint(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec)));
  }

  std::chrono::nanoseconds tick_{0};
};

// The token lives in the entry itself, so that an acquisition allocates nothing: the core mints
// 32 bytes, and callers of the bare store may use up to 32 (checked in `MemoryStore::acquire`).
struct Entry {
  std::array<char, 32> token;
  std::uint8_t token_size = 0;
  std::uint64_t fence = 0;
  TimePoint expires;

  void set_token(std::string_view t) noexcept {
    std::memcpy(token.data(), t.data(), t.size());
    token_size = static_cast<std::uint8_t>(t.size());
  }

  bool owned_by(std::string_view t) const noexcept {
    return t.size() == token_size && std::memcmp(t.data(), token.data(), token_size) == 0;
  }
};

// One independent sub-table with its own mutex and fence counter.
class alignas(64) Shard {
 public:
  std::optional<std::uint64_t> acquire(HashedKey key, std::string_view token, TimePoint now,
                                       std::chrono::milliseconds ttl) {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end()) {
      if (leases_.size() >= sweep_at_) sweep(now);
      it = insert(key);
    } else if (it->second.expires > now) {
      return std::nullopt;
    }
    const std::uint64_t fence = ++fences_;
    it->second.set_token(token);
    it->second.fence = fence;
    it->second.expires = now + ttl;
    return fence;
  }

  // A released entry leaves the table at once, but its node goes to the shard's spare cache:
  // the next new key (the same one again, or an order id never seen) reuses it instead of
  // allocating. `expired(t)` says whether expiry time t has passed; it is asked only when the
  // token matches.
  template <class Expired>
  bool release(HashedKey key, std::string_view token, Expired expired) {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || !it->second.owned_by(token)) return false;
    const bool ours = !expired(it->second.expires);
    auto node = leases_.extract(it);
    if (spare_.size() < kMaxSpare) spare_.push_back(std::move(node));
    return ours;
  }

  bool extend(HashedKey key, std::string_view token, TimePoint now, std::chrono::milliseconds ttl) {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= now || !it->second.owned_by(token)) {
      return false;
    }
    it->second.expires = now + ttl;
    return true;
  }

  std::optional<LockInfo> status(HashedKey key, TimePoint now) const {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= now) return std::nullopt;
    return info(it->first.key, it->second, now);
  }

  void collect(std::string_view prefix, TimePoint now, std::vector<LockInfo>& out) const {
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
  using Table = std::unordered_map<StoredKey, Entry, KeyHash, KeyEqual>;
  // Nodes kept per shard for reuse: enough for the keys a few threads cycle through at once,
  // small enough (about 100 bytes each) to bound the cache at a few KiB per shard.
  static constexpr std::size_t kMaxSpare = 16;

  Table::iterator insert(HashedKey key) {
    if (spare_.empty())
      return leases_.emplace(StoredKey{std::string(key.key), key.hash}, Entry{}).first;
    Table::node_type node = std::move(spare_.back());
    spare_.pop_back();
    node.key().key.assign(key.key);  // reuses the string's buffer when the key fits in it
    node.key().hash = key.hash;
    node.mapped() = Entry{};
    return leases_.insert(std::move(node)).position;
  }

  static LockInfo info(const std::string& key, const Entry& entry, TimePoint now) {
    return LockInfo{key, entry.fence,
                    std::chrono::ceil<std::chrono::milliseconds>(entry.expires - now)};
  }

  // Drops expired entries (released ones left at once). Runs when an insert finds the table at
  // twice its size after the previous sweep, so its cost is amortised O(1) per insert and a shard
  // never holds more than max(64, 2 x the live entries at the previous sweep).
  void sweep(TimePoint now) {
    std::erase_if(leases_, [now](const auto& kv) { return kv.second.expires <= now; });
    sweep_at_ = std::max<std::size_t>(64, 2 * leases_.size());
  }

  // Layout: what every call writes (the mutex, the fence counter) shares one cache line; the
  // table header, read-mostly once warm, sits on lines of its own, so that threads on other
  // keys of this shard bounce one line per call, not three.
  alignas(64) mutable std::mutex mu_;
  std::uint64_t fences_ = 0;             // guarded by mu_
  std::size_t sweep_at_ = 64;            // guarded by mu_
  alignas(64) Table leases_;             // guarded by mu_
  std::vector<Table::node_type> spare_;  // guarded by mu_
};

// The last precise reading of a steady `MemoryStore::now()` on this thread (constant
// initialised: no guard on access).
struct LastNow {
  const void* store = nullptr;
  TimePoint at;
};
thread_local LastNow t_last_now;

// The memory: LeaseStore: keys hash to shards by the hash's high bits (the tables inside use
// the low ones for their buckets).
class MemoryStore final : public LeaseStore {
 public:
  explicit MemoryStore(MemoryOptions options) : clock_(options.clock), steady_(!options.clock) {
    std::size_t n = 1;
    while (n < options.shards && n < 4096) n *= 2;
    mask_ = n - 1;
    shards_ = std::make_unique<Shard[]>(n);
    count_ = n;
  }

  std::string_view backend() const noexcept override { return "memory"; }

  // The real steady clock is read directly, without the virtual Clock call. The reading is
  // also left for this thread's next `acquire` (see there).
  TimePoint now() const noexcept override {
    if (!steady_) return clock_->now();
    TimePoint t = std::chrono::steady_clock::now();
    t_last_now = LastNow{this, t};
    return t;
  }

  // The core reads `now()` just before calling here, for `valid_until`; expiring the lease from
  // that same reading (as long as it is less than a coarse tick old) saves the second precise
  // clock read, a sixth of an acquisition. The lease then ends exactly at the caller's
  // start + ttl, never before a `valid_until` computed from it.
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    if (token.empty() || token.size() > kMaxTokenBytes) {
      throw std::invalid_argument("token: must be 1..32 bytes, got " +
                                  std::to_string(token.size()));
    }
    TimePoint t;
    if (steady_ && t_last_now.store == this && coarse_.within_a_tick_of(t_last_now.at)) {
      t = t_last_now.at;
    } else {
      t = steady_ ? std::chrono::steady_clock::now() : clock_->now();
    }
    t_last_now.store = nullptr;  // one acquisition per reading
    HashedKey hashed{key, hash_key(key)};
    return shard_for(hashed).acquire(hashed, token, t, ttl);
  }

  bool release(std::string_view key, std::string_view token) override {
    HashedKey hashed{key, hash_key(key)};
    return shard_for(hashed).release(hashed, token, [this](TimePoint expires) {
      // The coarse clock settles most releases of live leases without a precise clock read.
      if (steady_ && coarse_.surely_before(expires)) return false;
      return expires <= now();
    });
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    HashedKey hashed{key, hash_key(key)};
    return shard_for(hashed).extend(hashed, token, now(), ttl);
  }

  std::optional<LockInfo> status(std::string_view key) override {
    HashedKey hashed{key, hash_key(key)};
    return shard_for(hashed).status(hashed, now());
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    std::vector<LockInfo> out;
    TimePoint t = now();
    for (std::size_t i = 0; i < count_; ++i) shards_[i].collect(prefix, t, out);
    return out;
  }

  std::size_t table_size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < count_; ++i) n += shards_[i].size();
    return n;
  }

 private:
  Shard& shard_for(HashedKey key) const noexcept { return shards_[(key.hash >> 48) & mask_]; }

  const std::shared_ptr<const Clock> clock_;  // null: the real steady clock
  const bool steady_;
  const CoarseSteady coarse_;
  std::size_t mask_ = 0;
  std::size_t count_ = 0;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace

namespace detail {

std::size_t memory_table_size(const LeaseStore& store) {
  const auto* memory = dynamic_cast<const MemoryStore*>(&store);
  if (!memory) throw std::invalid_argument("store: not a memory: store");
  return memory->table_size();
}

}  // namespace detail

std::shared_ptr<LeaseStore> make_memory_store(MemoryOptions options) {
  return std::make_shared<MemoryStore>(std::move(options));
}

std::shared_ptr<LockApi> make_memory_lock_api(MemoryOptions options) {
  return make_lock_api(make_memory_store(std::move(options)));
}

}  // namespace lockkit
