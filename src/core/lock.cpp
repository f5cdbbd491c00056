// SPDX-License-Identifier: MIT
// The Lock handle: RAII release, idempotent release, extend, keep-alive, stop token, error hook.
#include "lockkit/lock.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/keeper.hpp"
#include "core/store_lock_api.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

using Steady = std::chrono::steady_clock;

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

// Stops renewals of `s` and waits for one that is with the store: after this, the keeper sends
// nothing more for it. A renewal counts only if it was sent in this process (see keeper_epoch).
void stop_renewing(detail::LeaseState& s) {
  std::unique_lock<std::mutex> lk(s.mu);
  s.kept_alive = false;
  detail::await_send(s, lk);
}

}  // namespace

void set_error_hook(ErrorHook hook) {
  std::lock_guard<std::mutex> guard(g_hook_mu);
  g_hook = std::move(hook);
}

inline Lock::Lock(detail::LeaseOps* ops, detail::LockCount* count,
                  std::shared_ptr<detail::LeaseOps>&& own_ops, std::string_view key,
                  std::string_view token, std::uint64_t fence,
                  std::chrono::steady_clock::time_point valid_until,
                  std::chrono::steady_clock::time_point acquired,
                  std::chrono::milliseconds ttl) noexcept
    : ops_(ops),
      count_(count),
      own_ops_(std::move(own_ops)),
      // Short: no allocation anyway. Long: the one allocation, made now, so that key() of a
      // long key never allocates. Else inline (set_key).
      key_(inline_key(key.size()) ? std::string_view() : key),
      fence_(fence),
      valid_until_(valid_until),
      acquired_(acquired),
      ttl_(ttl) {
  set_key(key);
  set_token(token);
}

Lock::Lock(detail::CoreLockTag, std::shared_ptr<detail::LeaseOps> ops, std::string_view key,
           std::string_view token, std::uint64_t fence,
           std::chrono::steady_clock::time_point valid_until,
           std::chrono::steady_clock::time_point acquired, std::chrono::milliseconds ttl) noexcept
    // `ops` is bound, not moved, by the call: ops.get() reads it whichever argument comes first.
    : Lock(ops.get(), nullptr, std::move(ops), key, token, fence, valid_until, acquired, ttl) {}

Lock::Lock(detail::CoreLockTag, detail::LockCount& count, std::string_view key,
           std::string_view token, std::uint64_t fence,
           std::chrono::steady_clock::time_point valid_until,
           std::chrono::steady_clock::time_point acquired, std::chrono::milliseconds ttl) noexcept
    : Lock(&count.ops(), &count, nullptr, key, token, fence, valid_until, acquired, ttl) {}

void Lock::drop_ops() noexcept {
  ops_ = nullptr;
  own_ops_.reset();
  // Last: the count may free the ops (and their store) when this was the last lock.
  if (count_) std::exchange(count_, nullptr)->drop();
}

void Lock::set_key(std::string_view key) noexcept {
  // Keys are at most 1024 bytes (validated before any Lock is made).
  key_size_ = static_cast<std::uint16_t>(key.size());
  if (inline_key(key.size())) {
    // An order id or a path: no allocation unless someone asks for key().
    std::memcpy(key_buf_.data(), key.data(), key.size());
    key_state_.store(kKeyInline, std::memory_order_relaxed);
  }
}

void Lock::take_key(Lock& other) noexcept {
  key_ = std::move(other.key_);
  key_size_ = other.key_size_;
  // Only the bytes of an inline key: the rest of the buffer was never written.
  if (inline_key(key_size_)) {
    std::memcpy(key_buf_.data(), other.key_buf_.data(), key_size_);
  }
  key_state_.store(other.key_state_.load(std::memory_order_acquire), std::memory_order_relaxed);
  // The moved-from lock's key is empty (made, so that its key() never reads the buffer).
  other.key_.clear();
  other.key_size_ = 0;
  other.key_state_.store(kKeyMade, std::memory_order_relaxed);
}

void Lock::make_key() const noexcept {
  std::uint8_t expected = kKeyInline;
  if (key_state_.compare_exchange_strong(expected, kKeyMaking, std::memory_order_acquire)) {
    key_.assign(key_buf_.data(), key_size_);  // at most 48 bytes
    key_state_.store(kKeyMade, std::memory_order_release);
    return;
  }
  // Another thread is making it: a copy of at most 48 bytes.
  while (key_state_.load(std::memory_order_acquire) != kKeyMade) std::this_thread::yield();
}

void Lock::set_token(std::string_view token) noexcept {
  // Every token the library mints is 32 bytes (make_token); only the core constructs a Lock.
  token_size_ = static_cast<std::uint8_t>(std::min(token.size(), kMaxTokenBytes));
  if (token_size_ == kMaxTokenBytes) {
    std::memcpy(token_.data(), token.data(), kMaxTokenBytes);  // a few moves, no call
  } else {
    std::memcpy(token_.data(), token.data(), token_size_);
  }
}

Lock::Lock(Lock&& other) noexcept
    : ops_(std::exchange(other.ops_, nullptr)),
      count_(std::exchange(other.count_, nullptr)),
      own_ops_(std::move(other.own_ops_)),
      token_(other.token_),
      token_size_(other.token_size_),
      fence_(other.fence_),
      valid_until_(other.valid_until_),
      acquired_(other.acquired_),
      ttl_(other.ttl_),
      state_(std::move(other.state_)) {
  take_key(other);
  other.token_size_ = 0;
}

Lock& Lock::operator=(Lock&& other) noexcept {
  if (this != &other) {
    release_quietly();
    ops_ = std::exchange(other.ops_, nullptr);
    count_ = std::exchange(other.count_, nullptr);
    own_ops_ = std::move(other.own_ops_);
    take_key(other);
    token_ = other.token_;
    token_size_ = other.token_size_;
    other.token_size_ = 0;
    fence_ = other.fence_;
    valid_until_ = other.valid_until_;
    acquired_ = other.acquired_;
    ttl_ = other.ttl_;
    state_ = std::move(other.state_);
  }
  return *this;
}

Lock::~Lock() noexcept {
  release_quietly();
}

void Lock::release_quietly() noexcept {
  if (!ops_) return;
  try {
    (void)release_now();
  } catch (const std::exception& e) {
    report(key_view(), e);
  } catch (...) {
  }
  state_.reset();
  drop_ops();
}

bool Lock::release_now() {
  if (state_) stop_renewing(*state_);
  if (state_ && state_->inherited()) {
    // A forked child's copy of a lease its parent keeps alive or watches: the parent's, which
    // goes on renewing and using it. The child neither renews nor releases it.
    drop_ops();
    return false;
  }
  // On throw, ops_ stays: the caller may retry.
  bool ours = ops_->release_held(key_view(), token(), acquired_);
  if (state_) {
    {
      std::lock_guard<std::mutex> guard(state_->mu);
      if (state_->phase == detail::LeaseState::Phase::kHeld) {
        state_->phase = detail::LeaseState::Phase::kReleased;
      }
    }
    // Neither the keeper nor this handle keeps the store referenced after a release: a process
    // that exits right after it still closes its store (e.g. SQLite's last connection
    // checkpoints the WAL).
    valid_until_ = valid_until();
    detail::keeper_forget(state_);
    state_.reset();
  }
  drop_ops();
  return ours;
}

std::chrono::steady_clock::time_point Lock::valid_until() const noexcept {
  if (!state_) return valid_until_;
  return Steady::time_point(
      Steady::duration(state_->valid_until_ticks.load(std::memory_order_acquire)));
}

bool Lock::held() const noexcept {
  if (!ops_) return false;
  if (state_ && state_->lost.load(std::memory_order_acquire)) return false;
  std::chrono::milliseconds ttl = ttl_;
  if (state_) {
    std::lock_guard<std::mutex> guard(state_->mu);
    ttl = state_->ttl;
  }
  return ops_->now() < valid_until() - loss_margin(ttl);
}

bool Lock::release() {
  if (!ops_) return false;
  return release_now();
}

bool Lock::extend(std::chrono::milliseconds ttl) {
  validate_ttl(ttl);
  if (!ops_) return false;
  if (!state_) {
    // Validity counts from before the request: the store's new expiry is at least this late.
    auto start = ops_->now();
    if (!ops_->extend(key_view(), token(), ttl)) {
      drop_ops();  // lost: nothing left to release
      return false;
    }
    valid_until_ = start + ttl - ops_->drift(ttl);
    ttl_ = ttl;
    return true;
  }
  detail::LeaseState& s = *state_;
  {
    // Never alongside a renewal: whichever the store saw last would decide the expiry.
    std::unique_lock<std::mutex> lk(s.mu);
    detail::await_send(s, lk);
    s.sending = true;
    s.send_started = true;
    s.sending_epoch = detail::keeper_epoch();
    s.sending_until = Steady::time_point::max();
    ++s.send_id;
  }
  auto start = ops_->now();
  bool ours = false;
  try {
    ours = ops_->extend(key_view(), token(), ttl);
  } catch (...) {
    std::lock_guard<std::mutex> guard(s.mu);
    s.sending = false;
    s.cv.notify_all();
    throw;
  }
  bool now_lost = false;
  std::uint64_t seq = 0;
  Steady::time_point wake;
  {
    std::lock_guard<std::mutex> guard(s.mu);
    s.sending = false;
    s.cv.notify_all();
    if (ours) {
      s.ttl = ttl;
      s.valid_until = start + ttl - ops_->drift(ttl);
      s.valid_until_ticks.store(s.valid_until.time_since_epoch().count(),
                                std::memory_order_release);
      s.renew_at = start + std::max<Steady::duration>(ttl / 3, std::chrono::milliseconds(1));
    } else {
      now_lost = detail::mark_lost(s);
    }
    seq = ++s.seq;
    wake = detail::next_wake(s);
  }
  ttl_ = ttl;
  if (ours) {
    detail::keeper_schedule(state_, wake, seq);
    return true;
  }
  if (now_lost) detail::notify_lost(s, "the store says the lease is no longer ours");
  drop_ops();  // lost: nothing left to release
  return false;
}

detail::LeaseState& Lock::state() const {
  if (!state_) {
    state_ = std::make_shared<detail::LeaseState>(count_ ? count_->share() : own_ops_, key_view(),
                                                  token(), ttl_, acquired_, valid_until_);
  }
  return *state_;
}

std::stop_token Lock::stop_token() const {
  if (!ops_) {
    std::stop_source done;
    done.request_stop();
    return done.get_token();
  }
  const bool fresh = !state_;
  detail::LeaseState& s = state();
  if (!fresh && s.inherited()) detail::keeper_watch_inherited();
  if (fresh) {
    std::uint64_t seq;
    Steady::time_point wake;
    {
      std::lock_guard<std::mutex> guard(s.mu);
      seq = ++s.seq;
      wake = detail::next_wake(s);
    }
    detail::keeper_schedule(state_, wake, seq);
  }
  return s.stop.get_token();
}

void Lock::keep_alive(KeepAliveOptions options) {
  keep_alive_on(nullptr, std::move(options));
}

void Lock::keep_alive_on(std::shared_ptr<detail::LeaseScheduler> scheduler,
                         KeepAliveOptions options) {
  if (!ops_)
    throw std::invalid_argument("keep_alive: the lock is not held (released or moved from)");
  if (options.max_hold < std::chrono::milliseconds(0)) {
    throw std::invalid_argument("max_hold: must not be negative");
  }
  detail::LeaseState& s = state();
  std::uint64_t seq;
  Steady::time_point wake;
  bool already_lost = false;
  {
    std::lock_guard<std::mutex> guard(s.mu);
    const auto max_hold = options.max_hold;
    s.options = std::move(options);
    already_lost = s.phase == detail::LeaseState::Phase::kLost;
    s.kept_alive = true;
    s.scheduler = scheduler;
    s.renewer_gone = false;
    s.hold_until =
        max_hold > std::chrono::milliseconds(0) ? s.acquired + max_hold : Steady::time_point::max();
    const Steady::time_point last = s.valid_until - s.ttl + ops_->drift(s.ttl);
    s.renew_at = last + std::max<Steady::duration>(s.ttl / 3, std::chrono::milliseconds(1));
    seq = ++s.seq;
    wake = detail::next_wake(s);
  }
  if (already_lost) {
    // Lost before it was kept alive: this `on_lost` hears of it at once.
    detail::notify_lost(s, "the lease was already lost when keep_alive was called");
    return;
  }
  detail::keeper_schedule(state_, wake, seq);
}

}  // namespace lockkit
