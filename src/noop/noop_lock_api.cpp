// SPDX-License-Identifier: MIT
// The noop: backend: always or never hands out a lock.
#include <atomic>

#include "lockkit/noop.hpp"

namespace lockkit {
namespace {

class NoOpOps final : public LeaseOps {
 public:
  std::string_view backend() const noexcept override { return "noop"; }
  bool release(std::string_view, std::string_view) override { return true; }
  bool extend(std::string_view, std::string_view, std::chrono::milliseconds) override {
    return true;
  }
  std::uint64_t next_fence() noexcept {
    return fences_.fetch_add(1, std::memory_order_relaxed) + 1;
  }

 private:
  std::atomic<std::uint64_t> fences_{0};
};

}  // namespace

NoOpLockApi::NoOpLockApi(bool locked) : locked_(locked), ops_(std::make_shared<NoOpOps>()) {}

std::optional<Lock> NoOpLockApi::try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  if (locked_) return std::nullopt;
  auto fence = static_cast<NoOpOps&>(*ops_).next_fence();
  return Lock(ops_, std::string(key), make_token(), fence, std::chrono::steady_clock::now() + ttl);
}

// Unlocked: every token "holds" every key, so release and extend succeed; locked: none does.
bool NoOpLockApi::release(std::string_view key, std::string_view) {
  validate_key(key);
  return !locked_;
}

bool NoOpLockApi::extend(std::string_view key, std::string_view, std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return !locked_;
}

std::optional<LockInfo> NoOpLockApi::status(std::string_view key) {
  validate_key(key);
  return std::nullopt;
}

std::vector<LockInfo> NoOpLockApi::list(std::string_view) {
  return {};
}

}  // namespace lockkit
