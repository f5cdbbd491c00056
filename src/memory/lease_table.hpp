// SPDX-License-Identifier: MIT
// Internal: the shards of the memory: store: a lease inline in each shard's own cache lines, the
// shard's other leases in an open-addressing overflow table with inline keys.
//
// Why not std::unordered_map<std::string, ...>: every new key cost a node allocation (and a
// second one for keys longer than the small-string buffer), every lookup chased a bucket
// pointer to a node, and insert/erase wrote the table header. Here a shard is 128 bytes: its
// spinlock, its fence counter and one lease, so that the common case (a key alone in its shard)
// touches one line pair that no other key's operations write. Further leases of the shard are
// 128-byte slots in a flat array (key inline up to LeaseSlot::kInlineKeyBytes), found by linear
// probing from the hash, removed at once by backward-shift deletion (no tombstones, so a table
// that has seen a million fresh keys is as short as one that has seen ten). The lock is a
// spinlock: the critical sections are a few dozen instructions, and unlocking is a plain store.
#ifndef LOCKKIT_SRC_MEMORY_LEASE_TABLE_HPP_
#define LOCKKIT_SRC_MEMORY_LEASE_TABLE_HPP_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "lockkit/backend.hpp"

namespace lockkit::detail {

// A test-and-set lock for critical sections of a few dozen instructions. A waiter spins
// briefly, then yields its core, so that a holder preempted on an oversubscribed machine gets
// to finish.
class SpinLock {
 public:
  void lock() noexcept {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  void lock_slow() noexcept {
    for (unsigned spins = 0;; ++spins) {
      if (!locked_.load(std::memory_order_relaxed) &&
          !locked_.exchange(true, std::memory_order_acquire)) {
        return;
      }
      if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

  std::atomic<bool> locked_{false};
};

// Hashes a key with a per-store seed, wyhash's way: up to 16 bytes are read as two words
// (overlapping loads, no byte loop) and folded by one 64x64->128-bit multiply; longer keys take
// one multiply per 16 bytes. Three multiplies for a 17..32-byte order id, where a multiply and
// shifts per 8 bytes made the hash a tenth of an uncontended acquire.
// Never returns 0 (the empty-slot marker).
inline std::uint64_t hash_key(std::string_view key, std::uint64_t seed) noexcept {
  constexpr std::uint64_t kP0 = 0xa0761d6478bd642full;
  constexpr std::uint64_t kP1 = 0xe7037ed1a0b428dbull;
  __extension__ using U128 = unsigned __int128;
  auto mum = [](std::uint64_t a, std::uint64_t b) noexcept {
    const U128 r = static_cast<U128>(a) * b;
    return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
  };
  auto load64 = [](const unsigned char* q) noexcept {
    std::uint64_t w;
    std::memcpy(&w, q, 8);
    return w;
  };
  auto load32 = [](const unsigned char* q) noexcept {
    std::uint32_t w;
    std::memcpy(&w, q, 4);
    return std::uint64_t{w};
  };
  const auto* p = reinterpret_cast<const unsigned char*>(key.data());
  const std::size_t size = key.size();
  seed ^= kP0;
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  if (size <= 16) {
    if (size >= 4) {
      const std::size_t mid = (size >> 3) << 2;  // 0 or 4: together the loads cover every byte
      a = (load32(p) << 32) | load32(p + mid);
      b = (load32(p + size - 4) << 32) | load32(p + size - 4 - mid);
    } else if (size > 0) {
      a = (std::uint64_t{p[0]} << 16) | (std::uint64_t{p[size >> 1]} << 8) | p[size - 1];
    }
  } else {
    std::size_t left = size;
    for (; left > 16; left -= 16, p += 16) seed = mum(load64(p) ^ kP1, load64(p + 8) ^ seed);
    // The last 16 bytes of the key (overlapping what the loop read).
    a = load64(p + left - 16);
    b = load64(p + left - 8);
  }
  const std::uint64_t h = mum(kP1 ^ size, mum(a ^ kP1, b ^ seed));
  return h == 0 ? 1 : h;
}

// The core's tokens are always 32 bytes: copied and compared as such with a few vector moves,
// not through a memcpy/memcmp call for a size known only at run time.
inline void copy_token(char* to, std::string_view token) noexcept {
  if (token.size() == 32) {
    std::memcpy(to, token.data(), 32);
  } else {
    std::memcpy(to, token.data(), token.size());
  }
}
inline bool same_token(const char* held, std::string_view token) noexcept {
  if (token.size() == 32) return std::memcmp(held, token.data(), 32) == 0;
  return std::memcmp(held, token.data(), token.size()) == 0;
}

// One lease: trivially copyable, so that the table moves slots with memcpy. A key longer than
// kInlineKeyBytes lives on the heap, owned by the slot.
struct alignas(128) LeaseSlot {
  static constexpr std::size_t kTokenBytes = 32;
  static constexpr std::size_t kInlineKeyBytes = 128 - 8 - 8 - 8 - 4 - 1 - kTokenBytes;

  std::uint64_t hash;  // 0: empty
  std::chrono::steady_clock::time_point expires;
  std::uint64_t fence;
  std::uint32_t key_size;
  std::uint8_t token_size;
  char token[kTokenBytes];
  char key_bytes[kInlineKeyBytes];  // the key, or a char* to it when longer

  bool inline_key() const noexcept { return key_size <= kInlineKeyBytes; }
  const char* key_data() const noexcept {
    if (inline_key()) return key_bytes;
    const char* heap;
    std::memcpy(&heap, key_bytes, sizeof(heap));
    return heap;
  }
  std::string_view key() const noexcept { return {key_data(), key_size}; }

  void set_key(std::string_view k) {
    key_size = static_cast<std::uint32_t>(k.size());
    if (inline_key()) {
      std::memcpy(key_bytes, k.data(), k.size());
    } else {
      char* heap = new char[k.size()];
      std::memcpy(heap, k.data(), k.size());
      std::memcpy(key_bytes, &heap, sizeof(heap));
    }
  }
  void free_key() noexcept {
    if (!inline_key()) delete[] key_data();
  }

  void set_token(std::string_view t) noexcept {
    copy_token(token, t);
    token_size = static_cast<std::uint8_t>(t.size());
  }
  bool owned_by(std::string_view t) const noexcept {
    return t.size() == token_size && same_token(token, t);
  }
};
static_assert(sizeof(LeaseSlot) == 128);

// The overflow of one shard: a flat open-addressing table of slots, grown and shrunk with its
// live entries. No lock and no fence counter of its own: its shard guards it and hands out the
// fences. Capacity follows the live entries: the table grows when an insert would fill it
// beyond 3/4 (first dropping expired entries, so expired-but-never-released leases are
// reclaimed then), and shrinks when a removal leaves it under 1/8 full.
class LeaseTable {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  LeaseTable() = default;
  LeaseTable(const LeaseTable&) = delete;
  LeaseTable& operator=(const LeaseTable&) = delete;
  ~LeaseTable() {
    for (std::size_t i = 0; i < capacity(); ++i) {
      if (slots_[i].hash) slots_[i].free_key();
    }
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_ ? std::size_t{mask_} + 1 : 0; }

  LeaseSlot* find(std::string_view key, std::uint64_t hash) noexcept {
    if (!slots_) return nullptr;
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      LeaseSlot& s = slots_[i];
      if (s.hash == 0) return nullptr;
      if (s.hash == hash && s.key_size == key.size() &&
          std::memcmp(s.key_data(), key.data(), key.size()) == 0) {
        return &s;
      }
    }
  }

  // Returns a fresh slot for `key`, known to be absent; its lease fields are for the caller.
  LeaseSlot* insert(std::string_view key, std::uint64_t hash, TimePoint now) {
    if (4 * (size_ + 1) > 3 * capacity()) {
      // Full: drop what has expired, then size for what is left.
      rehash(&now);
    }
    std::size_t i = hash & mask_;
    while (slots_[i].hash != 0) i = (i + 1) & mask_;
    LeaseSlot& s = slots_[i];
    s.set_key(key);  // may throw bad_alloc: the slot is still empty then
    s.hash = hash;
    ++size_;
    return &s;
  }

  // Backward-shift deletion: moves later entries of the probe run up, so no tombstone is left.
  void erase(LeaseSlot* slot) noexcept {
    std::size_t i = static_cast<std::size_t>(slot - slots_.get());
    slots_[i].free_key();
    --size_;
    for (std::size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      LeaseSlot& s = slots_[j];
      if (s.hash == 0) break;
      const std::size_t home = s.hash & mask_;
      // s may move to i if i lies (cyclically) between its home and j.
      const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (movable) {
        std::memcpy(static_cast<void*>(&slots_[i]), &s, sizeof(LeaseSlot));
        i = j;
      }
    }
    slots_[i].hash = 0;
    if (capacity() > kMinCapacity && 8 * std::size_t{size_} < capacity()) {
      try {
        rehash(nullptr);
      } catch (...) {  // out of memory: the table stays as large as it was
      }
    }
  }

  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity(); ++i) {
      if (slots_[i].hash) f(slots_[i]);
    }
  }

 private:
  static constexpr std::size_t kMinCapacity = 4;

  struct SlotsDeleter {
    void operator()(LeaseSlot* p) const noexcept {
      ::operator delete[](p, std::align_val_t(alignof(LeaseSlot)));
    }
  };
  using Slots = std::unique_ptr<LeaseSlot[], SlotsDeleter>;

  static Slots allocate(std::size_t n) {
    auto* p = static_cast<LeaseSlot*>(
        ::operator new[](n * sizeof(LeaseSlot), std::align_val_t(alignof(LeaseSlot))));
    for (std::size_t i = 0; i < n; ++i) p[i].hash = 0;
    return Slots(p);
  }

  // Moves every entry (but those expired by `*now`, if given) into the smallest table, a power
  // of two, that holds it at most half full.
  void rehash(const TimePoint* now) {
    std::size_t live = 0;
    for (std::size_t i = 0; i < capacity(); ++i) {
      const LeaseSlot& s = slots_[i];
      if (s.hash && !(now && s.expires <= *now)) ++live;
    }
    std::size_t n = kMinCapacity;
    while (n < 2 * (live + 1)) n *= 2;
    Slots fresh = allocate(n);
    const std::size_t mask = n - 1;
    for (std::size_t i = 0; i < capacity(); ++i) {
      LeaseSlot& s = slots_[i];
      if (!s.hash) continue;
      if (now && s.expires <= *now) {
        s.free_key();
        continue;
      }
      std::size_t j = s.hash & mask;
      while (fresh[j].hash != 0) j = (j + 1) & mask;
      std::memcpy(static_cast<void*>(&fresh[j]), &s, sizeof(LeaseSlot));
    }
    slots_ = std::move(fresh);
    mask_ = static_cast<std::uint32_t>(mask);
    size_ = static_cast<std::uint32_t>(live);
  }

  Slots slots_;
  std::uint32_t mask_ = 0;  // capacity - 1 once slots_ is allocated
  std::uint32_t size_ = 0;
};

// One shard of the memory: store: 128 bytes on their own two cache lines, holding a spinlock,
// the shard's fence counter, one lease inline (key up to kInlineKeyBytes) and the overflow
// table for the shard's other leases. A store has thousands of shards, so that threads on
// different keys rarely write the same line: an acquire or release of a key that sits inline
// touches nothing but its shard's line pair, and nothing shared by every key (no table header,
// no counter) is written per operation.
// Fences come from the shard's counter, so they increase strictly per key (a key always hashes
// to the same shard, inline or not) across releases and expiries without any state kept for
// released keys.
class alignas(128) LeaseShard {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr std::size_t kTokenBytes = LeaseSlot::kTokenBytes;
  static constexpr std::size_t kInlineKeyBytes = 48;

  LeaseShard() = default;
  LeaseShard(const LeaseShard&) = delete;
  LeaseShard& operator=(const LeaseShard&) = delete;

  // Grants `key` (hash `hash`) to `token` (1..32 bytes) until now + ttl unless an unexpired
  // lease holds it; returns the new fence.
  std::optional<std::uint64_t> acquire(std::string_view key, std::uint64_t hash,
                                       std::string_view token, TimePoint now,
                                       std::chrono::milliseconds ttl) {
    std::lock_guard<SpinLock> guard(lock_);
    if (inline_holds(key)) {
      if (expires_ > now) return std::nullopt;
    } else if (LeaseSlot* slot = overflow_.find(key, hash)) {
      if (slot->expires > now) return std::nullopt;
      slot->fence = ++fences_;
      slot->set_token(token);
      slot->expires = now + ttl;
      return slot->fence;
    } else if (key.size() <= kInlineKeyBytes && (token_size_ == 0 || expires_ <= now)) {
      // The inline place is free, or its lease has expired: reclaimed for this key.
      std::memcpy(key_, key.data(), key.size());
      key_size_ = static_cast<std::uint16_t>(key.size());
    } else {
      LeaseSlot* slot = overflow_.insert(key, hash, now);
      slot->fence = ++fences_;
      slot->set_token(token);
      slot->expires = now + ttl;
      return slot->fence;
    }
    fence_ = ++fences_;
    copy_token(token_, token);
    token_size_ = static_cast<std::uint8_t>(token.size());
    expires_ = now + ttl;
    return fence_;
  }

  // Removes `key`'s lease if `token` holds it; returns whether it was still unexpired, as
  // `expired(expires)` says (asked only when the token matches).
  template <class Expired>
  bool release(std::string_view key, std::uint64_t hash, std::string_view token,
               Expired&& expired) {
    std::lock_guard<SpinLock> guard(lock_);
    if (inline_holds(key)) {
      if (!inline_owned_by(token)) return false;
      token_size_ = 0;
      return !expired(expires_);
    }
    LeaseSlot* slot = overflow_.find(key, hash);
    if (!slot || !slot->owned_by(token)) return false;
    const bool ours = !expired(slot->expires);
    overflow_.erase(slot);
    return ours;
  }

  bool extend(std::string_view key, std::uint64_t hash, std::string_view token, TimePoint now,
              std::chrono::milliseconds ttl) {
    std::lock_guard<SpinLock> guard(lock_);
    if (inline_holds(key)) {
      if (expires_ <= now || !inline_owned_by(token)) return false;
      expires_ = now + ttl;
      return true;
    }
    LeaseSlot* slot = overflow_.find(key, hash);
    if (!slot || slot->expires <= now || !slot->owned_by(token)) return false;
    slot->expires = now + ttl;
    return true;
  }

  std::optional<LockInfo> status(std::string_view key, std::uint64_t hash, TimePoint now) {
    std::lock_guard<SpinLock> guard(lock_);
    if (inline_holds(key)) {
      if (expires_ <= now) return std::nullopt;
      return info(key, fence_, expires_, now);
    }
    const LeaseSlot* slot = overflow_.find(key, hash);
    if (!slot || slot->expires <= now) return std::nullopt;
    return info(slot->key(), slot->fence, slot->expires, now);
  }

  void collect(std::string_view prefix, TimePoint now, std::vector<LockInfo>& out) {
    std::lock_guard<SpinLock> guard(lock_);
    if (token_size_ != 0 && expires_ > now) {
      const std::string_view key(key_, key_size_);
      if (key.substr(0, prefix.size()) == prefix) out.push_back(info(key, fence_, expires_, now));
    }
    overflow_.for_each([&](const LeaseSlot& s) {
      if (s.expires > now && s.key().substr(0, prefix.size()) == prefix) {
        out.push_back(info(s.key(), s.fence, s.expires, now));
      }
    });
  }

  // Entries held, live or expired but not yet reclaimed.
  std::size_t size() {
    std::lock_guard<SpinLock> guard(lock_);
    return (token_size_ != 0 ? 1 : 0) + overflow_.size();
  }
  // Slots of the overflow table.
  std::size_t capacity_for_tests() {
    std::lock_guard<SpinLock> guard(lock_);
    return overflow_.capacity();
  }

 private:
  bool inline_holds(std::string_view key) const noexcept {
    return token_size_ != 0 && key_size_ == key.size() &&
           std::memcmp(key_, key.data(), key.size()) == 0;
  }
  bool inline_owned_by(std::string_view t) const noexcept {
    return t.size() == token_size_ && same_token(token_, t);
  }

  static LockInfo info(std::string_view key, std::uint64_t fence, TimePoint expires,
                       TimePoint now) {
    return LockInfo{std::string(key), fence,
                    std::chrono::ceil<std::chrono::milliseconds>(expires - now)};
  }

  // Every field is guarded by lock_.
  SpinLock lock_;
  std::uint8_t token_size_ = 0;  // the inline lease's; 0: no inline lease
  std::uint16_t key_size_ = 0;
  std::uint64_t fences_ = 0;
  TimePoint expires_{};
  std::uint64_t fence_ = 0;
  LeaseTable overflow_;
  char token_[kTokenBytes];
  char key_[kInlineKeyBytes];
};
static_assert(sizeof(LeaseShard) == 128);

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_MEMORY_LEASE_TABLE_HPP_
