// SPDX-License-Identifier: MIT
// The memory: store's shard table: bounded by live leases, fences, long keys, probing.
#include "memory/lease_table.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>

namespace lockkit::detail {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

constexpr std::string_view kToken = "0123456789abcdef0123456789abcdef";

// Sanitizer builds run these loops ten times shorter (TSan makes each step ~25x dearer).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kScale = 10;
#else
constexpr int kScale = 1;
#endif

std::uint64_t hash_of(std::string_view key) {
  return hash_key(key, 42);
}

TEST(LeaseTable, AMillionFreshKeysLeaveTheTableSmall) {
  LeaseShard shard;
  const auto now = Steady::now();
  for (int i = 0; i < 1000000 / kScale; ++i) {
    const std::string key = "order/" + std::to_string(i);
    const auto h = hash_of(key);
    ASSERT_TRUE(shard.acquire(key, h, kToken, now, 30s));
    ASSERT_TRUE(shard.release(key, h, kToken, [](auto) { return false; }));
  }
  EXPECT_EQ(shard.size(), 0u);
  EXPECT_LE(shard.capacity_for_tests(), 4u);
}

TEST(LeaseTable, GrowsWithLiveLeasesAndShrinksWhenTheyGo) {
  LeaseShard shard;
  const auto now = Steady::now();
  for (int i = 0; i < 10000; ++i) {
    const std::string key = "k/" + std::to_string(i);
    ASSERT_TRUE(shard.acquire(key, hash_of(key), kToken, now, 30s));
  }
  EXPECT_EQ(shard.size(), 10000u);
  EXPECT_LE(shard.capacity_for_tests(), 4u * 10000u);
  for (int i = 0; i < 10000; ++i) {
    const std::string key = "k/" + std::to_string(i);
    // Still findable after the removals before it shifted entries around.
    ASSERT_TRUE(shard.status(key, hash_of(key), now)) << key;
    ASSERT_TRUE(shard.release(key, hash_of(key), kToken, [](auto) { return false; }));
  }
  EXPECT_EQ(shard.size(), 0u);
  EXPECT_LE(shard.capacity_for_tests(), 8u);
}

TEST(LeaseTable, ExpiredLeasesAreReclaimedWhenTheTableWouldGrow) {
  LeaseShard shard;
  auto now = Steady::now();
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 1000; ++i) {
      const std::string key = "r" + std::to_string(round) + "/" + std::to_string(i);
      ASSERT_TRUE(shard.acquire(key, hash_of(key), kToken, now, 1s));
    }
    now += 2s;  // never released: they expire
  }
  // 100,000 keys used, at most 1,000 unexpired at once.
  EXPECT_LE(shard.size(), 2001u);
  EXPECT_LE(shard.capacity_for_tests(), 4096u);
}

TEST(LeaseTable, FencesIncreasePerKeyAcrossReleasesAndReusedSlots) {
  LeaseShard shard;
  auto now = Steady::now();
  std::uint64_t last = 0;
  const std::string key = "the/key";
  for (int i = 0; i < 1000; ++i) {
    auto fence = shard.acquire(key, hash_of(key), kToken, now, 1s);
    ASSERT_TRUE(fence);
    EXPECT_GT(*fence, last);
    last = *fence;
    if (i % 3 == 0) {
      ASSERT_TRUE(shard.release(key, hash_of(key), kToken, [](auto) { return false; }));
    } else if (i % 3 == 1) {
      now += 1s;  // expire in place
    } else {
      // Expire, then let other keys take over the slots and shift the table around.
      now += 1s;
      for (int j = 0; j < 50; ++j) {
        const std::string other = "other/" + std::to_string(i) + "/" + std::to_string(j);
        ASSERT_TRUE(shard.acquire(other, hash_of(other), kToken, now, 1ms));
      }
      now += 1s;
    }
  }
}

// A shard keeps one lease inline and the rest in its table: a key that moves between the two
// (its place taken, freed, reclaimed after expiry) still gets increasing fences, and an expired
// inline lease is reclaimed by the next key without disturbing the live ones.
TEST(LeaseTable, KeysMovingBetweenInlineAndTableKeepIncreasingFences) {
  LeaseShard shard;
  auto now = Steady::now();
  std::map<std::string, std::uint64_t> last;
  auto take = [&](const std::string& key, std::chrono::milliseconds ttl) {
    auto fence = shard.acquire(key, hash_of(key), kToken, now, ttl);
    EXPECT_TRUE(fence) << key;
    if (!fence) return;
    EXPECT_GT(*fence, last[key]) << key;
    last[key] = *fence;
  };
  for (int round = 0; round < 200; ++round) {
    const std::string a = "a/" + std::to_string(round % 3);
    const std::string b = "b/" + std::to_string(round % 5);
    take(a, 1s);    // inline if free
    take(b, 10ms);  // in the table while a is held
    EXPECT_FALSE(shard.acquire(b, hash_of(b), kToken, now, 1s));
    ASSERT_TRUE(shard.release(a, hash_of(a), kToken, [](auto) { return false; }));
    if (round % 2 == 0) {
      ASSERT_TRUE(shard.release(b, hash_of(b), kToken, [](auto) { return false; }));
    } else {
      now += 20ms;  // b expires in the table; the next a takes the inline place
    }
    EXPECT_LE(shard.size(), 6u);  // five b keys, one a
  }
  // A live inline lease is never reclaimed, an expired one is.
  take("short/lived", 1ms);  // inline: the place is free
  take("long/held", 1h);
  now += 2ms;
  take("next", 1h);
  EXPECT_TRUE(shard.status("long/held", hash_of("long/held"), now));
  EXPECT_FALSE(shard.status("short/lived", hash_of("short/lived"), now));
  EXPECT_TRUE(shard.status("next", hash_of("next"), now));
}

TEST(LeaseTable, CollidingHashesAndLongKeysStayApart) {
  LeaseShard shard;
  const auto now = Steady::now();
  const std::string long_a(300, 'a');
  const std::string long_b = std::string(299, 'a') + "b";
  // Same hash on purpose: only the bytes tell them apart.
  ASSERT_TRUE(shard.acquire(long_a, 7, kToken, now, 10s));
  ASSERT_TRUE(shard.acquire(long_b, 7, kToken, now, 10s));
  ASSERT_TRUE(shard.acquire("short", 7, kToken, now, 10s));
  EXPECT_FALSE(shard.acquire(long_b, 7, kToken, now, 10s));
  std::vector<LockInfo> all;
  shard.collect("", now, all);
  std::set<std::string> keys;
  for (const auto& info : all) keys.insert(info.key);
  EXPECT_EQ(keys, (std::set<std::string>{long_a, long_b, "short"}));
  EXPECT_FALSE(shard.release(long_a, 7, "not-the-token", [](auto) { return false; }));
  ASSERT_TRUE(shard.release(long_a, 7, kToken, [](auto) { return false; }));
  EXPECT_TRUE(shard.status(long_b, 7, now));
  EXPECT_TRUE(shard.status("short", 7, now));
  EXPECT_FALSE(shard.status(long_a, 7, now));
}

// Random acquires, releases and expiries on a few keys whose hashes collide in few slots (so
// probe runs wrap around the table's end and removals shift entries), checked against a map.
TEST(LeaseTable, MatchesAModelUnderRandomOperations) {
  LeaseShard shard;
  auto now = Steady::now();
  std::mt19937 rng(12345);
  struct Held {
    std::uint64_t fence;
    Steady::time_point expires;
  };
  std::map<std::string, Held> model;
  std::map<std::string, std::uint64_t> last_fence;
  // Seven hash values for forty keys: many share a home slot.
  auto crowded_hash = [](const std::string& k) {
    return ((std::hash<std::string>{}(k) % 7) << 1) | (std::uint64_t{1} << 40);
  };
  for (int step = 0; step < 200000 / kScale; ++step) {
    const std::string key = "k" + std::to_string(rng() % 40);
    const std::uint64_t hash = crowded_hash(key);
    switch (rng() % 4) {
      case 0:
      case 1: {
        auto fence = shard.acquire(key, hash, kToken, now, 10ms);
        auto it = model.find(key);
        const bool free = it == model.end() || it->second.expires <= now;
        ASSERT_EQ(fence.has_value(), free) << key << " step " << step;
        if (fence) {
          ASSERT_GT(*fence, last_fence[key]);
          last_fence[key] = *fence;
          model[key] = Held{*fence, now + 10ms};
        }
        break;
      }
      case 2: {
        const bool ours = shard.release(key, hash, kToken, [&](auto t) { return t <= now; });
        auto it = model.find(key);
        ASSERT_EQ(ours, it != model.end() && it->second.expires > now) << key << " step " << step;
        if (it != model.end()) model.erase(it);
        break;
      }
      default:
        now += std::chrono::milliseconds(rng() % 3);
        break;
    }
    if (step % 1000 == 0) {
      for (const auto& [k, held] : model) {
        auto info = shard.status(k, crowded_hash(k), now);
        ASSERT_EQ(info.has_value(), held.expires > now) << k;
        if (info) {
          ASSERT_EQ(info->fence, held.fence);
        }
      }
    }
  }
}

TEST(LeaseTable, HashNeverReturnsZeroAndDependsOnEveryByte) {
  std::set<std::uint64_t> seen;
  std::string key;
  for (int n = 0; n < 40; ++n) {
    EXPECT_NE(hash_key(key, 1), 0u);
    seen.insert(hash_key(key, 1));
    key.push_back('x');
  }
  EXPECT_EQ(seen.size(), 40u);
  for (std::size_t i = 0; i < 20; ++i) {
    std::string a(20, 'k');
    std::string b = a;
    b[i] = 'j';
    EXPECT_NE(hash_key(a, 1), hash_key(b, 1)) << i;
  }
  EXPECT_NE(hash_key("abc", 1), hash_key("abc", 2));
}

}  // namespace
}  // namespace lockkit::detail
