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
// slot, the slot's fence counter and the lock's holder record. Internal keys look like
// `prefix + "lockkit:{N}fence"` and `prefix + "lockkit:{N}h:" + key`, where N is chosen per slot
// so that the `{N}` tag (or the prefix's own tag) lands in the lock key's slot.
// Thread safety: immutable after construction; safe to share.
class KeyLayout {
 public:
  // Throws `std::invalid_argument` for a prefix whose first '{' is directly followed by '}' (an
  // empty hash tag makes Redis hash whole keys, so a lock's keys could not share a slot).
  explicit KeyLayout(std::string prefix);

  const std::string& prefix() const noexcept { return prefix_; }
  // Returns true if `key` (without prefix) lies in the reserved internal namespace.
  static bool reserved(std::string_view key) noexcept;
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
