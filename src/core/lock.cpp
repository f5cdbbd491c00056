// SPDX-License-Identifier: MIT
// The Lock handle: RAII release, idempotent release, extend, error hook.
#include "lockkit/lock.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>

#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

std::mutex g_hook_mu;
ErrorHook g_hook;

void report(std::string_view key, const std::exception& e) noexcept {
  ErrorHook hook;
  {
    std::lock_guard<std::mutex> guard(g_hook_mu);
    hook = g_hook;
  }
  if (!hook) return;
  try {
    hook(key, e);
  } catch (...) {  // a hook must not throw; never let it escape a destructor
  }
}

}  // namespace

void set_error_hook(ErrorHook hook) {
  std::lock_guard<std::mutex> guard(g_hook_mu);
  g_hook = std::move(hook);
}

Lock::Lock(std::shared_ptr<LeaseOps> ops, std::string key, std::string token, std::uint64_t fence,
           std::chrono::steady_clock::time_point valid_until) noexcept
    : Lock(std::move(ops), std::move(key), std::move(token), fence, valid_until, valid_until) {}

Lock::Lock(std::shared_ptr<LeaseOps> ops, std::string key, std::string token, std::uint64_t fence,
           std::chrono::steady_clock::time_point valid_until,
           std::chrono::steady_clock::time_point acquired) noexcept
    : ops_(std::move(ops)),
      key_(std::move(key)),
      fence_(fence),
      valid_until_(valid_until),
      acquired_(acquired) {
  set_token(token);
}

Lock::Lock(detail::CoreLockTag, std::shared_ptr<LeaseOps> ops, std::string_view key,
           std::string_view token, std::uint64_t fence,
           std::chrono::steady_clock::time_point valid_until,
           std::chrono::steady_clock::time_point acquired, std::chrono::milliseconds) noexcept
    : ops_(std::move(ops)),
      key_(key),
      fence_(fence),
      valid_until_(valid_until),
      acquired_(acquired) {
  set_token(token);
}

void Lock::set_token(std::string_view token) noexcept {
  // Every token the library mints is 32 bytes (make_token); at most 32 is the constructors'
  // documented precondition, and only the library's own backends call them.
  token_size_ = static_cast<std::uint8_t>(std::min(token.size(), kMaxTokenBytes));
  std::memcpy(token_.data(), token.data(), token_size_);
}

Lock::Lock(Lock&& other) noexcept
    : ops_(std::move(other.ops_)),
      key_(std::move(other.key_)),
      token_(other.token_),
      token_size_(other.token_size_),
      fence_(other.fence_),
      valid_until_(other.valid_until_),
      acquired_(other.acquired_) {
  other.ops_.reset();
  other.token_size_ = 0;
}

Lock& Lock::operator=(Lock&& other) noexcept {
  if (this != &other) {
    release_quietly();
    ops_ = std::move(other.ops_);
    other.ops_.reset();
    key_ = std::move(other.key_);
    token_ = other.token_;
    token_size_ = other.token_size_;
    other.token_size_ = 0;
    fence_ = other.fence_;
    valid_until_ = other.valid_until_;
    acquired_ = other.acquired_;
  }
  return *this;
}

Lock::~Lock() noexcept {
  release_quietly();
}

void Lock::release_quietly() noexcept {
  if (!ops_) return;
  try {
    ops_->release_held(key_, token(), acquired_);
  } catch (const std::exception& e) {
    report(key_, e);
  } catch (...) {
  }
  ops_.reset();
}

bool Lock::held() const noexcept {
  return ops_ && ops_->now() < valid_until_;
}

bool Lock::release() {
  if (!ops_) return false;
  bool ours =
      ops_->release_held(key_, token(), acquired_);  // on throw, ops_ stays: the caller may retry
  ops_.reset();
  return ours;
}

bool Lock::extend(std::chrono::milliseconds ttl) {
  validate_ttl(ttl);
  if (!ops_) return false;
  // Validity counts from before the request: the store's new expiry is at least this late.
  auto start = ops_->now();
  if (!ops_->extend(key_, token(), ttl)) {
    ops_.reset();  // lost: nothing left to release
    return false;
  }
  valid_until_ = start + ttl - ops_->drift(ttl);
  return true;
}

}  // namespace lockkit
