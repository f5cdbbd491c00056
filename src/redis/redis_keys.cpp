// SPDX-License-Identifier: MIT
// Redis Cluster hash slots and per-slot internal key names.
#include "redis/redis_keys.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>

namespace lockkit::detail::redis {
namespace {

constexpr std::array<std::uint16_t, 256> make_crc_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[i] = crc;
  }
  return table;
}

constexpr std::array<std::uint16_t, 256> kCrcTable = make_crc_table();

std::uint16_t crc16(std::string_view bytes, std::uint16_t crc = 0) noexcept {
  for (char c : bytes) {
    crc = static_cast<std::uint16_t>(
        (crc << 8) ^ kCrcTable[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]);
  }
  return crc;
}

constexpr std::string_view kInternal = "lockkit:{";
constexpr std::uint32_t kUnset = std::numeric_limits<std::uint32_t>::max();

// Finds, for every slot, the smallest N whose internal key `... lockkit:{N}` lands in it. The
// hash tag of that key is `tag_head + N` (`tag_head` is what precedes N inside the tag), so the
// CRC of `tag_head` is computed once: about 170k short CRCs, a millisecond.
std::shared_ptr<const std::vector<std::uint32_t>> build_table(std::string_view tag_head) {
  auto table = std::make_shared<std::vector<std::uint32_t>>(kSlots, kUnset);
  const std::uint16_t head = crc16(tag_head);
  std::uint32_t left = kSlots;
  char digits[16];
  for (std::uint32_t n = 0; left > 0; ++n) {
    if (n == 100'000'000) throw std::logic_error("redis: hash slot table did not converge");
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    auto& entry = (*table)[crc16(std::string_view(digits, end - digits), head) & (kSlots - 1)];
    if (entry == kUnset) {
      entry = n;
      --left;
    }
  }
  return table;
}

// Tables for prefixes with an unclosed '{', shared by every layout with the same prefix.
std::shared_ptr<const std::vector<std::uint32_t>> cached_table(const std::string& tag_head) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const std::vector<std::uint32_t>>> cache;
  std::lock_guard<std::mutex> guard(mu);
  auto& entry = cache[tag_head];
  if (!entry) entry = build_table(tag_head);
  return entry;
}

}  // namespace

std::uint16_t key_slot(std::string_view key) noexcept {
  std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<std::uint16_t>(crc16(key) & (kSlots - 1));
}

KeyLayout::KeyLayout(std::string prefix) : prefix_(std::move(prefix)) {
  if (prefix_.find(kInternal) != std::string::npos) {
    throw std::invalid_argument(
        "prefix: must not contain \"lockkit:{\" (reserved for lockkit's bookkeeping keys)");
  }
  std::size_t open = prefix_.find('{');
  if (open == std::string::npos) {
    // Without a '{' in the prefix the slot depends on N alone: one table serves all prefixes.
    static const auto shared = build_table("");
    table_ = shared;
    return;
  }
  std::size_t close = prefix_.find('}', open + 1);
  if (close == open + 1) {
    throw std::invalid_argument(
        "prefix: must not start a hash tag with \"{}\" (Redis would hash whole keys, so a lock's "
        "keys could not share a cluster slot)");
  }
  if (close != std::string::npos) {
    single_slot_ = true;  // every key under this prefix hashes by the prefix's own tag
    return;
  }
  // An open '{' in the prefix: our '}' closes its tag, which then starts inside the prefix.
  table_ = cached_table(prefix_.substr(open + 1) + std::string(kInternal));
}

bool KeyLayout::reserved(std::string_view key) const noexcept {
  // The marker may start inside the prefix and end inside the key.
  std::size_t overlap = std::min(prefix_.size(), kInternal.size() - 1);
  std::string_view tail = std::string_view(prefix_).substr(prefix_.size() - overlap);
  for (std::size_t i = 0; i < overlap; ++i) {
    std::string_view head = tail.substr(i);
    std::size_t need = kInternal.size() - head.size();
    if (kInternal.substr(0, head.size()) == head &&
        key.substr(0, need) == kInternal.substr(head.size())) {
      return true;
    }
  }
  return key.find(kInternal) != std::string_view::npos;
}

std::string_view KeyLayout::holder_key(std::string_view name) const noexcept {
  if (name.substr(0, prefix_.size()) != prefix_) return {};
  name.remove_prefix(prefix_.size());
  if (name.substr(0, kInternal.size()) != kInternal) return {};
  name.remove_prefix(kInternal.size());
  std::size_t digits = 0;
  while (digits < name.size() && name[digits] >= '0' && name[digits] <= '9') ++digits;
  if (digits == 0 || name.substr(digits, 3) != "}h:") return {};
  return name.substr(digits + 3);
}

std::string KeyLayout::holder_pattern(std::string_view key_prefix) const {
  // SCAN MATCH takes a glob: escape its metacharacters in the prefixes.
  std::string pattern;
  auto escaped = [&](std::string_view part) {
    for (char c : part) {
      if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') pattern.push_back('\\');
      pattern.push_back(c);
    }
  };
  escaped(prefix_);
  escaped(kInternal);
  pattern.append("*}h:");
  escaped(key_prefix);
  pattern.push_back('*');
  return pattern;
}

void KeyLayout::keys_of(std::string_view key, std::string& lock, std::string& fence,
                        std::string& holder) const {
  lock.assign(prefix_);
  lock.append(key);
  std::uint32_t n = single_slot_ ? 0 : (*table_)[key_slot(lock)];
  fence.assign(prefix_);
  fence.append(kInternal);
  fence.append(std::to_string(n));
  fence.push_back('}');
  holder.assign(fence);
  holder.append("h:");
  holder.append(key);
}

}  // namespace lockkit::detail::redis
