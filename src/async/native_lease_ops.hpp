// SPDX-License-Identifier: MIT
// What the `LeaseOps` of the native async clients (redis://, redlock://, postgres://) share.
#ifndef LOCKKIT_ASYNC_NATIVE_LEASE_OPS_HPP_
#define LOCKKIT_ASYNC_NATIVE_LEASE_OPS_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "core/keeper.hpp"
#include "core/lease_ops.hpp"

namespace lockkit::detail {

// Looks tokens up by string_view, without making a std::string (the native clients' registries
// of natively granted locks).
struct TokenHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// The `LeaseOps` of a natively granted `Lock`: forwards to the core's (`inner_`), except that a
// release done natively is settled here first (`settle`), so that the `Lock` then releases
// without I/O. Each client says how its leases are renewed in batches (`BatchRenewer`).
// Thread safety: safe to share, like the core's.
class NativeLeaseOps : public LeaseOps, public BatchRenewer {
 public:
  // The outcome of the native release (true: it was ours).
  void settle(bool ours) noexcept { settled_.store(ours ? 1 : 0); }

  std::string_view backend() const noexcept override { return inner_->backend(); }
  bool release(std::string_view key, std::string_view token) override {
    const int settled = settled_.exchange(-1);
    if (settled >= 0) return settled == 1;
    return inner_->release(key, token);
  }
  bool release_held(std::string_view key, std::string_view token,
                    std::chrono::steady_clock::time_point acquired) override {
    const int settled = settled_.exchange(-1);
    if (settled >= 0) return settled == 1;
    return inner_->release_held(key, token, acquired);
  }
  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    return inner_->extend(key, token, ttl);
  }
  std::chrono::steady_clock::time_point now() const noexcept override { return inner_->now(); }
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return inner_->drift(ttl);
  }

 protected:
  explicit NativeLeaseOps(std::shared_ptr<LeaseOps> inner)
      : inner_(std::move(inner)), batch_(dynamic_cast<BatchRenewer*>(inner_.get())) {}

  // Renews through the blocking store: in its batch if it has one, else one by one.
  std::string renew_blocking(std::span<const ExtendRequest> requests,
                             std::span<ExtendOutcome> out) noexcept {
    if (batch_) return batch_->renew_many(requests, out);
    std::string error;
    for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
      try {
        out[i] = inner_->extend(requests[i].key, requests[i].token, requests[i].ttl)
                     ? ExtendOutcome::kExtended
                     : ExtendOutcome::kNotOurs;
      } catch (const std::exception& e) {
        out[i] = ExtendOutcome::kFailed;
        error = e.what();
      }
    }
    return error;
  }

  const std::shared_ptr<LeaseOps> inner_;
  BatchRenewer* const batch_;  // the blocking store's batch, if any

 private:
  std::atomic<int> settled_{-1};  // -1: not released natively
};

}  // namespace lockkit::detail

#endif  // LOCKKIT_ASYNC_NATIVE_LEASE_OPS_HPP_
