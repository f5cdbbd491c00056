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

std::shared_ptr<LeaseStore> make_noop_store(bool locked) {
  return std::make_shared<NoOpStore>(locked);
}

std::shared_ptr<LockApi> make_noop_lock_api(bool locked) {
  return make_lock_api(make_noop_store(locked));
}

}  // namespace lockkit
