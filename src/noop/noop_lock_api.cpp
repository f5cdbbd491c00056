// SPDX-License-Identifier: MIT
// The noop: backend: a LeaseStore that always or never grants.
#include <atomic>

#include "lockkit/backend.hpp"
#include "lockkit/noop.hpp"

namespace lockkit {
namespace {

// Unlocked: every token "holds" every key, so release and extend succeed; locked: none does.
class NoOpStore final : public LeaseStore {
 public:
  explicit NoOpStore(bool locked) : locked_(locked) {}

  std::string_view backend() const noexcept override { return "noop"; }
  std::optional<std::uint64_t> acquire(std::string_view, std::string_view,
                                       std::chrono::milliseconds) override {
    if (locked_) return std::nullopt;
    return fences_.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  bool release(std::string_view, std::string_view) override { return !locked_; }
  bool extend(std::string_view, std::string_view, std::chrono::milliseconds) override {
    return !locked_;
  }
  std::optional<LockInfo> status(std::string_view) override { return std::nullopt; }
  std::vector<LockInfo> list(std::string_view) override { return {}; }

 private:
  const bool locked_;
  std::atomic<std::uint64_t> fences_{0};
};

}  // namespace

NoOpLockApi::NoOpLockApi(bool locked)
    : locked_(locked), api_(make_lock_api(std::make_shared<NoOpStore>(locked))) {}

std::optional<Lock> NoOpLockApi::try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  return api_->try_acquire(key, ttl);
}

std::optional<Lock> NoOpLockApi::acquire(std::string_view key, std::chrono::milliseconds ttl,
                                         const RetryPolicy& policy) {
  return api_->acquire(key, ttl, policy);
}

bool NoOpLockApi::release(std::string_view key, std::string_view token) {
  return api_->release(key, token);
}

bool NoOpLockApi::extend(std::string_view key, std::string_view token,
                         std::chrono::milliseconds ttl) {
  return api_->extend(key, token, ttl);
}

std::optional<LockInfo> NoOpLockApi::status(std::string_view key) {
  return api_->status(key);
}

std::vector<LockInfo> NoOpLockApi::list(std::string_view prefix) {
  return api_->list(prefix);
}

std::shared_ptr<LeaseStore> make_noop_store(bool locked) {
  return std::make_shared<NoOpStore>(locked);
}

void NoOpLockApi::set_observer(std::shared_ptr<LockObserver> observer) {
  api_->set_observer(std::move(observer));
}

}  // namespace lockkit
