// SPDX-License-Identifier: MIT
// Clocks that decide expiry in the `memory:` backend: the real steady clock or a manual one.
#ifndef LOCKKIT_CLOCK_HPP_
#define LOCKKIT_CLOCK_HPP_

#include <atomic>
#include <chrono>

#include "lockkit/export.hpp"

namespace lockkit {

// A source of steady time. The `memory:` backend expires leases by it.
// Thread safety: implementations must be safe to call from any thread.
class LOCKKIT_EXPORT Clock {
 public:
  virtual ~Clock() = default;
  // Returns the current time; never goes backwards.
  virtual std::chrono::steady_clock::time_point now() const noexcept = 0;
};

// The real `std::chrono::steady_clock`.
// Thread safety: safe to share.
class LOCKKIT_EXPORT SteadyClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const noexcept override {
    return std::chrono::steady_clock::now();
  }
};

// A clock that moves only when told to: for tests of expiry without sleeping.
//   auto clock = std::make_shared<lockkit::ManualClock>();
//   auto api = lockkit::make_memory_lock_api({.clock = clock});
//   clock->advance(std::chrono::seconds(31));  // every 30 s lease has now expired
// Thread safety: safe to share; `advance` may race with `now`.
class LOCKKIT_EXPORT ManualClock final : public Clock {
 public:
  // Starts at `start` (by default the real steady clock's current time).
  explicit ManualClock(
      std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now())
      : ticks_(start.time_since_epoch().count()) {}

  std::chrono::steady_clock::time_point now() const noexcept override {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(ticks_.load(std::memory_order_acquire)));
  }

  // Moves the clock forward by `d`; a negative `d` is ignored (time never goes backwards).
  // Wakes the keep-alive scheduler, so renewals and loss deadlines on this clock come due.
  void advance(std::chrono::steady_clock::duration d) noexcept;

 private:
  std::atomic<std::chrono::steady_clock::rep> ticks_;
};

}  // namespace lockkit

#endif  // LOCKKIT_CLOCK_HPP_
