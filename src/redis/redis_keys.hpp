// SPDX-License-Identifier: MIT
// Internal: Redis Cluster hash slots and the names of the keys a lock uses.
#ifndef LOCKKIT_SRC_REDIS_REDIS_KEYS_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_KEYS_HPP_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lockkit::detail::redis {

inline constexpr std::uint32_t kSlots = 16384;

// Returns the Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the bytes between
// the first '{' and the first '}' after it, if not empty), else of the whole key, mod 16384.
std::uint16_t key_slot(std::string_view key) noexcept;

// The Redis keys of one lock: the lock itself at exactly `prefix + key`, and, in the same hash
// slot, the slot's fence counter and the lock's holder record (both hashes). Internal keys are
// `prefix + "lockkit:{N}"` and `prefix + "lockkit:{N}h:" + key`, where N is chosen per slot so
// that the `{N}` tag (or the prefix's own tag) lands in the lock key's slot. Every internal name
// contains "lockkit:{" and no lock key's Redis name may (under any prefix), so bookkeeping never
// shares a name with a lockkit lock.
// Thread safety: immutable after construction; safe to share.
class KeyLayout {
 public:
  // Throws `std::invalid_argument` for a prefix whose first '{' is directly followed by '}' (an
  // empty hash tag makes Redis hash whole keys, so a lock's keys could not share a slot) or
  // that contains the reserved "lockkit:{".
  explicit KeyLayout(std::string prefix);

  const std::string& prefix() const noexcept { return prefix_; }
  // Returns true if the Redis name of `key` (prefix + key) contains the reserved "lockkit:{".
  bool reserved(std::string_view key) const noexcept;
  // Returns the key whose holder record is the Redis key `name`, or an empty view if `name` is
  // not a holder record under this prefix.
  std::string_view holder_key(std::string_view name) const noexcept;
  // Returns the SCAN MATCH pattern of the holder records of keys starting with `key_prefix`.
  std::string holder_pattern(std::string_view key_prefix) const;
  // Writes the lock key, fence counter key and holder key of `key` into the three strings.
  void keys_of(std::string_view key, std::string& lock, std::string& fence,
               std::string& holder) const;

 private:
  std::string prefix_;
  bool single_slot_ = false;                                 // the prefix carries a complete tag
  std::shared_ptr<const std::vector<std::uint32_t>> table_;  // slot -> N
};

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_KEYS_HPP_
