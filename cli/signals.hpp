// SPDX-License-Identifier: MIT
// Reading the signals that would otherwise kill lockkit from a signalfd, for `run` and `acquire`.
#ifndef LOCKKIT_CLI_SIGNALS_HPP_
#define LOCKKIT_CLI_SIGNALS_HPP_

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace lockkit::cli {

// Signals that lockkit reads instead of dying from them (`run` forwards them to the command).
inline constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

// Blocks the forwarded signals (plus SIGCHLD with `with_sigchld`) and reads them through a
// signalfd instead; also blocks SIGTTOU (so that handing the terminal back and forth never stops
// us). Restores the mask when destroyed. Create it before any thread starts, so that every thread
// inherits the mask. Thread safety: one thread (the event loop) at a time.
class SignalGuard {
 public:
  explicit SignalGuard(bool with_sigchld) {
    sigemptyset(&set_);
    for (int sig : kForwarded) sigaddset(&set_, sig);
    if (with_sigchld) sigaddset(&set_, SIGCHLD);
    sigset_t blocked = set_;
    sigaddset(&blocked, SIGTTOU);
    if (int err = pthread_sigmask(SIG_BLOCK, &blocked, &old_); err != 0) {
      throw std::runtime_error(std::string("pthread_sigmask: ") + std::strerror(err));
    }
    fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd_ < 0) {
      int err = errno;
      pthread_sigmask(SIG_SETMASK, &old_, nullptr);
      throw std::runtime_error(std::string("signalfd: ") + std::strerror(err));
    }
  }
  ~SignalGuard() {
    ::close(fd_);
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

  int fd() const { return fd_; }
  const sigset_t& old_mask() const { return old_; }

  // Returns the next pending signal, or 0.
  int next() const {
    signalfd_siginfo info{};
    if (::read(fd_, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return 0;
    return static_cast<int>(info.ssi_signo);
  }

 private:
  sigset_t set_{};
  sigset_t old_{};
  int fd_ = -1;
};

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_SIGNALS_HPP_
