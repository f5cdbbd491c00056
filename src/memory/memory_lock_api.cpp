// SPDX-License-Identifier: MIT
// The memory: backend: a sharded, process-local LeaseStore with an injectable clock.
#include <sys/mman.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/clocked_store.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/memory.hpp"
#include "memory/lease_table.hpp"
#include "memory/memory_store.hpp"

namespace lockkit {
namespace {

using TimePoint = std::chrono::steady_clock::time_point;
using detail::LeaseShard;

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

 private:
  static TimePoint coarse() noexcept {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return TimePoint(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec)));
  }

  std::chrono::nanoseconds tick_{0};
};

// Fetches the line at `p` into this core's cache in a state that lets it be written (PREFETCHW):
// a read prefetch of a line the other core last wrote would leave it shared there, and the
// acquire's lock exchange would then have to take it over in a second cross-core round trip.
// A read prefetch on CPUs without PREFETCHW.
#if defined(__x86_64__) && defined(__GNUC__)
// Set while the library loads; false (read prefetches) for a store used before that.
const bool g_have_prefetchw = [] {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 8)) != 0;
}();

void prefetch_for_write(const void* p) noexcept {
  if (g_have_prefetchw) {
    // Spelled in assembly: the compiler emits a read prefetch unless built for PREFETCHW.
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
  } else {
    __builtin_prefetch(p, 1);
  }
}
#else
void prefetch_for_write(const void* p) noexcept {
  __builtin_prefetch(p, 1);
}
#endif

// The shard array: a large one is mapped on its own, 2 MiB aligned and advised to be one huge
// page, so that a fresh key's random shard costs no TLB miss (a 4 KiB page per 32 shards
// otherwise: 256 pages for the default 8192 shards).
class ShardArray {
 public:
  explicit ShardArray(std::size_t n) : count_(n) {
    const std::size_t bytes = n * sizeof(LeaseShard);
    if (bytes >= kHuge / 2) {
      mapped_ = (bytes + kHuge - 1) / kHuge * kHuge;
      void* p = mmap(nullptr, mapped_ + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      auto base = reinterpret_cast<std::uintptr_t>(p);
      const std::uintptr_t aligned = (base + kHuge - 1) & ~(kHuge - 1);
      // Give back the unaligned head and the tail beyond the aligned span.
      if (aligned > base) munmap(p, aligned - base);
      munmap(reinterpret_cast<void*>(aligned + mapped_), base + kHuge - aligned);
      madvise(reinterpret_cast<void*>(aligned), mapped_, MADV_HUGEPAGE);
      shards_ = reinterpret_cast<LeaseShard*>(aligned);
    } else {
      shards_ =
          static_cast<LeaseShard*>(::operator new[](bytes, std::align_val_t(alignof(LeaseShard))));
    }
    for (std::size_t i = 0; i < n; ++i) new (&shards_[i]) LeaseShard();
  }
  ShardArray(const ShardArray&) = delete;
  ShardArray& operator=(const ShardArray&) = delete;
  ~ShardArray() {
    for (std::size_t i = 0; i < count_; ++i) shards_[i].~LeaseShard();
    if (mapped_) {
      munmap(shards_, mapped_);
    } else {
      ::operator delete[](shards_, std::align_val_t(alignof(LeaseShard)));
    }
  }
  LeaseShard& operator[](std::size_t i) const noexcept { return shards_[i]; }

 private:
  static constexpr std::size_t kHuge = std::size_t{2} << 20;
  LeaseShard* shards_ = nullptr;
  std::size_t count_;
  std::size_t mapped_ = 0;  // 0: from operator new
};

std::uint64_t random_seed() {
  std::random_device device;
  return (std::uint64_t{device()} << 32) ^ device();
}

// The memory: LeaseStore: keys hash to shards by the hash's high 16 bits (the overflow tables
// inside use the low ones for their slots). The hash is seeded per store, so that nobody who
// picks keys can pile them into one shard.
class MemoryStore final : public LeaseStore, public detail::ClockedStore {
 public:
  static constexpr std::size_t kMaxShards = std::size_t{1} << 16;

  explicit MemoryStore(MemoryOptions options)
      : clock_(options.clock), steady_(!options.clock), seed_(random_seed()) {
    std::size_t n = 1;
    while (n < options.shards && n < kMaxShards) n *= 2;
    mask_ = n - 1;
    shards_ = std::make_unique<ShardArray>(n);
    count_ = n;
  }

  std::string_view backend() const noexcept override { return "memory"; }

  // The real steady clock is read directly, without the virtual Clock call.
  TimePoint now() const noexcept override {
    return steady_ ? std::chrono::steady_clock::now() : clock_->now();
  }

  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    const std::uint64_t hash = detail::hash_key(key, seed_);
    return acquire_at(key, hash, token, ttl, now());
  }

  // The core's path: `t` is the reading it took for `valid_until`, so the lease ends exactly at
  // the caller's start + ttl, never before a `valid_until` computed from it; `hash` is what
  // `prefetch(key)` returned.
  std::optional<std::uint64_t> acquire_at(std::string_view key, std::uint64_t hash,
                                          std::string_view token, std::chrono::milliseconds ttl,
                                          TimePoint t) override {
    if (token.empty() || token.size() > LeaseShard::kTokenBytes) {
      throw std::invalid_argument("token: must be 1..32 bytes, got " +
                                  std::to_string(token.size()));
    }
    return shard_for(hash).acquire(key, hash, token, t, ttl);
  }

  // A key's shard is a cache line no other key of the thread is likely to share, so it is
  // usually not in this core's cache (a fresh key, or the other thread wrote it last).
  std::uint64_t prefetch(std::string_view key) const noexcept override {
    const std::uint64_t hash = detail::hash_key(key, seed_);
    // Both lines of the shard: the acquire writes its header and token in the first and the
    // key in the second.
    const auto* shard = reinterpret_cast<const char*>(&shard_for(hash));
    prefetch_for_write(shard);
    prefetch_for_write(shard + 64);
    return hash;
  }

  bool release(std::string_view key, std::string_view token) override {
    const std::uint64_t hash = detail::hash_key(key, seed_);
    return shard_for(hash).release(key, hash, token, [this](TimePoint expires) {
      // The coarse clock settles most releases of live leases without a precise clock read.
      if (steady_ && coarse_.surely_before(expires)) return false;
      return expires <= now();
    });
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    const std::uint64_t hash = detail::hash_key(key, seed_);
    return shard_for(hash).extend(key, hash, token, now(), ttl);
  }

  std::optional<LockInfo> status(std::string_view key) override {
    const std::uint64_t hash = detail::hash_key(key, seed_);
    return shard_for(hash).status(key, hash, now());
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    std::vector<LockInfo> out;
    TimePoint t = now();
    for (std::size_t i = 0; i < count_; ++i) (*shards_)[i].collect(prefix, t, out);
    return out;
  }

  std::size_t table_size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < count_; ++i) n += (*shards_)[i].size();
    return n;
  }

 private:
  LeaseShard& shard_for(std::uint64_t hash) const noexcept {
    return (*shards_)[(hash >> 48) & mask_];
  }

  const std::shared_ptr<const Clock> clock_;  // null: the real steady clock
  const bool steady_;
  const CoarseSteady coarse_;
  const std::uint64_t seed_;
  std::size_t mask_ = 0;
  std::size_t count_ = 0;
  std::unique_ptr<ShardArray> shards_;
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
