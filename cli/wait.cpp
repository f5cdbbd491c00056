// SPDX-License-Identifier: MIT
// The --wait loop shared by `run` and `acquire`, with its terminal progress line.
#include "wait.hpp"

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <string>

#include "common.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/retry.hpp"

namespace lockkit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Sleeps up to `d`, returning early with the signal number if one arrives on `signal_fd`.
int sleep_or_signal(milliseconds d, int signal_fd) {
  auto until = Clock::now() + d;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now());
    if (left.count() <= 0) return 0;
    pollfd p{signal_fd, POLLIN, 0};
    int n = ::poll(&p, signal_fd >= 0 ? 1 : 0, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      signalfd_siginfo info{};
      if (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        return static_cast<int>(info.ssi_signo);
      }
    }
  }
}

// The terminal line "lockkit: waiting for K (held, expires in 12.3s)", redrawn in place and
// erased when destroyed; nothing when stderr is not a terminal.
// Thread safety: one thread at a time.
class ProgressLine {
 public:
  ProgressLine(LockApi& api, std::string_view key)
      : api_(api), key_(key), enabled_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() {
    if (shown_) put("\r\033[K");
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void update() {
    if (!enabled_) return;
    auto now = Clock::now();
    if (shown_ && now - last_ < milliseconds(250)) return;
    last_ = now;
    std::string state = "held";
    try {
      if (auto info = api_.status(key_)) {
        state = "held, expires in " + format_remaining(info->remaining);
      } else {
        state = "just released";
      }
    } catch (const std::exception&) {  // status is optional for a backend; the wait goes on
    }
    put("\r\033[Klockkit: waiting for " + display_key(key_) + " (" + state + ")");
    shown_ = true;
  }

 private:
  static void put(const std::string& s) {
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, s.data(), s.size());
  }

  LockApi& api_;
  std::string_view key_;
  bool enabled_;
  bool shown_ = false;
  Clock::time_point last_{};
};

}  // namespace

std::optional<Lock> take_lock(LockApi& api, std::string_view key, milliseconds ttl,
                              std::optional<milliseconds> wait, int signal_fd, WaitEnd& end) {
  if (auto lock = api.try_acquire(key, ttl)) return lock;
  if (!wait || wait->count() == 0) return std::nullopt;
  const bool forever = *wait == kWaitForever;
  RetryPolicy policy;
  policy.max_wait = forever ? kMaxTtl : *wait;
  policy.initial_delay = milliseconds(10);
  policy.max_delay = milliseconds(200);  // a freed key is noticed quickly, cheap for the store
  // --wait forever: no deadline; only the key becoming free or a signal ends the wait.
  const auto deadline = forever ? Clock::time_point::max() : Clock::now() + *wait;
  ProgressLine progress(api, key);
  std::exception_ptr last_error;  // of the latest attempt, if it failed
  for (unsigned attempt = 0;; ++attempt) {
    progress.update();
    auto now = Clock::now();
    if (now >= deadline) {
      if (last_error) std::rethrow_exception(last_error);
      return std::nullopt;
    }
    auto delay = backoff_delay(policy, attempt);
    auto left = std::chrono::duration_cast<milliseconds>(deadline - now);
    if (delay > left) delay = left;  // the last attempt lands on the deadline
    if (int sig = sleep_or_signal(delay, signal_fd); sig != 0) {
      end.signal = sig;
      return std::nullopt;
    }
    try {
      last_error = nullptr;
      if (auto lock = api.try_acquire(key, ttl)) return lock;
    } catch (const BackendError& e) {
      // The store answered the first attempt, so this is likely a blip (a restart, a busy
      // file): keep trying until the deadline, then report it.
      if (!e.retryable()) throw;
      last_error = std::current_exception();
    }
  }
}

}  // namespace lockkit::cli
