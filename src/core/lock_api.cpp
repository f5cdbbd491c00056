// SPDX-License-Identifier: MIT
// LockApi's shared parts: acquire with backoff, argument checks, defaults for optional calls.
#include "lockkit/lock_api.hpp"

#include <stdexcept>
#include <string>
#include <thread>

#include "core/store_lock_api.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/errors.hpp"

namespace lockkit {

void validate_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    throw std::invalid_argument("key: must be 1..1024 bytes, got " + std::to_string(key.size()));
  }
}

void validate_ttl(std::chrono::milliseconds ttl) {
  if (ttl < kMinTtl || ttl > kMaxTtl) {
    throw std::invalid_argument("ttl: must be 1ms..7d, got " + format_duration(ttl));
  }
}

void LeaseStore::wait_for_release(std::string_view, std::chrono::steady_clock::time_point until) {
  std::this_thread::sleep_until(until);
}

namespace detail {

std::optional<Lock> acquire_loop(LockApi& api, std::string_view key, std::chrono::milliseconds ttl,
                                 const RetryPolicy& policy, unsigned& attempts, LeaseStore* store) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + policy.max_wait;
  for (unsigned attempt = 0;; ++attempt) {
    attempts = attempt + 1;
    if (auto lock = api.try_acquire(key, ttl)) return lock;
    auto now = Clock::now();
    if (now >= deadline) return std::nullopt;
    auto delay = std::chrono::duration_cast<Clock::duration>(backoff_delay(policy, attempt));
    if (delay > deadline - now) delay = deadline - now;  // the last try lands on the deadline
    const auto until = now + delay;
    if (store == nullptr) {
      std::this_thread::sleep_until(until);
      continue;
    }
    try {
      store->wait_for_release(key, until);
    } catch (...) {  // only a hint: the backoff still holds, and the next attempt reports failures
      std::this_thread::sleep_until(until);
    }
  }
}

}  // namespace detail

std::optional<Lock> LockApi::acquire(std::string_view key, std::chrono::milliseconds ttl,
                                     const RetryPolicy& policy) {
  validate_retry_policy(policy);
  validate_key(key);
  validate_ttl(ttl);
  unsigned attempts = 0;
  return detail::acquire_loop(*this, key, ttl, policy, attempts);
}

namespace {
[[noreturn]] void unsupported(const LockApi& api, std::string_view what) {
  throw BackendError(api.backend(), ErrorKind::kUnsupported,
                     std::string(what) + " is not supported by this backend");
}
}  // namespace

bool LockApi::release(std::string_view, std::string_view) {
  unsupported(*this, "release by token");
}

bool LockApi::extend(std::string_view, std::string_view, std::chrono::milliseconds) {
  unsupported(*this, "extend by token");
}

std::optional<LockInfo> LockApi::status(std::string_view) {
  unsupported(*this, "status");
}

std::vector<LockInfo> LockApi::list(std::string_view) {
  unsupported(*this, "list");
}

void LockApi::set_observer(std::shared_ptr<LockObserver>) {
  unsupported(*this, "set_observer");
}

}  // namespace lockkit
