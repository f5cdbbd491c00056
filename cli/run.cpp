// SPDX-License-Identifier: MIT
// `lockkit run`: runs a command under a lock, renews the lease, and stops the command before
// the lease can run out.
//
// One thread waits for everything that can happen to the command (a signalfd for SIGCHLD and
// the signals to forward, an eventfd from the renewal thread, a timer for the kill deadline);
// renewals run on their own thread so that a store that hangs can never delay the kill.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "lockkit/errors.hpp"
#include "wait.hpp"

namespace lockkit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Signals that lockkit passes on to the command's process group instead of dying from them.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

template <class T>
T clamp_ms(T d, long long lo, long long hi) {
  return std::clamp(d, T(milliseconds(lo)), T(milliseconds(hi)));
}

// The schedule for stopping the command: SIGTERM `grace + margin` before the lease's local
// deadline, SIGKILL `margin` before it, so that the command is gone before the lease is.
struct KillSchedule {
  milliseconds grace;   // between SIGTERM and SIGKILL
  milliseconds margin;  // between SIGKILL and the deadline (scheduling, signal delivery)
  explicit KillSchedule(milliseconds ttl)
      : grace(clamp_ms(ttl / 10, 10, 5'000)), margin(clamp_ms(ttl / 20, 5, 1'000)) {}
};

// Blocks the forwarded signals and SIGCHLD (read through a signalfd instead) and SIGTTOU (so
// that handing the terminal back and forth never stops us); restores the mask when destroyed.
// Create it before any thread starts, so that every thread inherits the mask.
// Thread safety: one thread (the event loop) at a time.
class SignalGuard {
 public:
  SignalGuard() {
    sigemptyset(&set_);
    for (int sig : kForwarded) sigaddset(&set_, sig);
    sigaddset(&set_, SIGCHLD);
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

// An fd that closes itself. Thread safety: one thread at a time.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Renews the lease every ttl/3 on its own thread; after a failed renewal it retries every
// ttl/10 (10 ms..1 s) until stopped. Publishes the lease's local deadline and whether the store
// said the lease is gone, and pokes `notify_fd` (an eventfd) on every change.
// Thread safety: `valid_until`, `lost` and `last_error` may be called from any thread; the
// `Lock` is used only by the renewal thread between `start` and `stop`.
class Renewer {
 public:
  Renewer(Lock& lock, milliseconds ttl, int notify_fd)
      : lock_(lock),
        ttl_(ttl),
        notify_fd_(notify_fd),
        valid_until_(lock.valid_until().time_since_epoch().count()) {}
  ~Renewer() { stop(); }
  Renewer(const Renewer&) = delete;
  Renewer& operator=(const Renewer&) = delete;

  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> guard(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  Clock::time_point valid_until() const {
    return Clock::time_point(Clock::duration(valid_until_.load()));
  }
  bool lost() const { return lost_.load(); }
  std::string last_error() const {
    std::lock_guard<std::mutex> guard(mu_);
    return last_error_;
  }

 private:
  void loop() {
    const auto period = std::max(Clock::duration(ttl_ / 3), Clock::duration(milliseconds(1)));
    const auto retry = clamp_ms(Clock::duration(ttl_ / 10), 10, 1'000);
    auto next = Clock::now() + period;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (cv_.wait_until(lk, next, [this] { return stop_; })) return;
      }
      auto attempt = Clock::now();
      try {
        if (!lock_.extend(ttl_)) {
          set_error("the store says the lease is no longer ours");
          lost_.store(true);
          poke();
          return;
        }
        valid_until_.store(lock_.valid_until().time_since_epoch().count());
        next = attempt + period;
      } catch (const std::exception& e) {
        set_error(e.what());
        next = attempt + retry;
      }
      poke();
    }
  }

  void set_error(std::string message) {
    std::lock_guard<std::mutex> guard(mu_);
    last_error_ = std::move(message);
  }

  void poke() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(notify_fd_, &one, sizeof one);
  }

  Lock& lock_;
  const milliseconds ttl_;
  const int notify_fd_;
  std::atomic<Clock::rep> valid_until_;
  std::atomic<bool> lost_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;       // guarded by mu_
  std::string last_error_;  // guarded by mu_
  std::thread thread_;
};

int status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 70;
}

// The value of LOCKKIT_KEY: the key itself, or its escaped form if it contains a NUL byte.
std::string key_for_environment(const std::string& key) {
  return key.find('\0') == std::string::npos ? key : display_key(key);
}

struct Spawned {
  pid_t pid = -1;
  int exec_errno = 0;  // non-zero: the command could not be executed
};

// Starts `argv` in its own process group with the signal mask lockkit started with, killed if
// lockkit dies. With `terminal`, the child's group becomes the terminal's foreground group.
Spawned spawn(const std::vector<std::string>& command, const sigset_t& mask, bool terminal) {
  std::vector<char*> argv;
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  Fd read_end(fds[0]), write_end(fds[1]);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: async-signal-safe calls only until exec.
    ::setpgid(0, 0);
    // If lockkit is killed (even by SIGKILL), so is the command: nobody would stop it before
    // the lease runs out otherwise.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(70);
    if (terminal) ::tcsetpgrp(STDIN_FILENO, ::getpid());  // SIGTTOU is blocked here
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);
    ::execvp(argv[0], argv.data());
    int err = errno;
    [[maybe_unused]] auto n = ::write(write_end.get(), &err, sizeof err);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before we signal it
  if (terminal) ::tcsetpgrp(STDIN_FILENO, pid);
  write_end.reset();
  Spawned out{pid, 0};
  int err = 0;
  ssize_t n;
  do {
    n = ::read(read_end.get(), &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof err)) out.exec_errno = err;
  return out;
}

}  // namespace

Result run(const RunArgs& args) {
  std::string key = resolve_key(args.key, "key");
  if (args.ttl.empty()) throw UsageError("missing --ttl");
  auto ttl = parse_ttl(args.ttl, "ttl");
  std::optional<milliseconds> wait;
  if (args.wait) wait = parse_wait(*args.wait);
  if (!args.saw_separator) {
    throw UsageError("missing \"--\" before the command (lockkit run --key K --ttl D -- CMD)");
  }
  if (args.command.empty()) throw UsageError("no command after \"--\"");

  // Before anything that may start threads, so that every thread has these signals blocked.
  SignalGuard signals;
  auto api = open_backend(args.common);
  WaitEnd end;
  auto lock = take_lock(*api, key, ttl, wait, signals.fd(), end);
  if (!lock) {
    if (end.signal != 0) {
      diagnose("run: interrupted by signal " + std::to_string(end.signal) +
               " while waiting for \"" + display_key(key) + "\"");
      return {Outcome::kChild, 128 + end.signal};
    }
    diagnose("run: \"" + display_key(key) + "\" is held by someone else" +
             (wait ? " (waited " + *args.wait + ")" : ""));
    return {Outcome::kBusy};
  }

  // The child inherits these; we are still single-threaded, so setenv is safe.
  ::setenv("LOCKKIT_KEY", key_for_environment(key).c_str(), 1);
  ::setenv("LOCKKIT_TOKEN", lock->token().c_str(), 1);
  ::setenv("LOCKKIT_FENCE", std::to_string(lock->fence()).c_str(), 1);

  const bool terminal = ::isatty(STDIN_FILENO) == 1 && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp();
  Spawned child = spawn(args.command, signals.old_mask(), terminal);
  auto give_back_terminal = [&] {
    if (terminal) ::tcsetpgrp(STDIN_FILENO, ::getpgrp());
  };
  if (child.exec_errno != 0) {
    int st = 0;
    while (::waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
    }
    give_back_terminal();
    bool missing = child.exec_errno == ENOENT || child.exec_errno == ENOTDIR;
    diagnose("run: cannot execute \"" + args.command[0] + "\": " + std::strerror(child.exec_errno));
    try {
      lock->release();
    } catch (const BackendError&) {  // the lease ends by itself; the status says what happened
    }
    return {Outcome::kChild, missing ? 127 : 126};
  }

  // If lockkit itself fails from here on, the command must not outlive the lock handle.
  struct Reaper {
    pid_t pid;
    bool armed = true;
    ~Reaper() {
      if (!armed) return;
      ::killpg(pid, SIGKILL);
      int st;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
  } reaper{child.pid};

  Fd notify(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (notify.get() < 0) throw std::runtime_error("eventfd failed");
  Renewer renewer(*lock, ttl, notify.get());
  if (!args.no_renew) renewer.start();

  const KillSchedule schedule(ttl);
  bool stopping = false;  // we sent SIGTERM because the lease is (about to be) lost
  bool killed = false;    // ... and then SIGKILL
  Clock::time_point kill_at{};
  int wait_status = 0;
  for (;;) {
    pid_t r = ::waitpid(child.pid, &wait_status, WNOHANG | WUNTRACED);
    if (r == child.pid && WIFSTOPPED(wait_status)) {
      // Ctrl-Z would leave the holder paused, the terminal stuck and the lease renewed
      // forever: job control of CMD is not supported, it simply continues.
      if (WSTOPSIG(wait_status) == SIGTSTP) ::killpg(child.pid, SIGCONT);
      continue;
    }
    if (r == child.pid) {
      reaper.armed = false;
      break;
    }
    if (r < 0 && errno != EINTR) throw std::runtime_error("waitpid failed");

    auto now = Clock::now();
    auto valid_until = renewer.valid_until();
    auto term_at = valid_until - schedule.grace - schedule.margin;
    if (!stopping && (renewer.lost() || now >= term_at)) {
      stopping = true;
      ::killpg(child.pid, SIGTERM);
      kill_at = renewer.lost() ? std::min(now + schedule.grace, valid_until - schedule.margin)
                               : valid_until - schedule.margin;
      kill_at = std::max(kill_at, now);
      std::string why = args.no_renew ? "--no-renew was given"
                                      : "it could not be renewed (" + renewer.last_error() + ")";
      if (renewer.lost()) why = renewer.last_error();
      diagnose("run: lease on \"" + display_key(key) + "\" is ending and " + why +
               "; stopping the command (SIGTERM, SIGKILL after " +
               format_remaining(std::chrono::duration_cast<milliseconds>(kill_at - now)) + ")");
    }
    if (stopping && !killed && now >= kill_at) {
      ::killpg(child.pid, SIGKILL);
      killed = true;
    }

    int timeout_ms = -1;
    if (!stopping || !killed) {
      auto next = stopping ? kill_at : term_at;
      auto left = std::chrono::ceil<milliseconds>(next - now).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
    }
    pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {notify.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, timeout_ms);
    if (n < 0 && errno != EINTR) throw std::runtime_error("poll failed");
    if (n > 0 && (fds[0].revents & POLLIN)) {
      while (int sig = signals.next()) {
        if (sig != SIGCHLD) ::killpg(child.pid, sig);  // waitpid above handles SIGCHLD
      }
    }
    if (n > 0 && (fds[1].revents & POLLIN)) {
      std::uint64_t count;
      [[maybe_unused]] auto m = ::read(notify.get(), &count, sizeof count);
    }
  }
  give_back_terminal();
  renewer.stop();

  if (stopping) {
    try {
      lock->release();                 // ours or not, nothing is left to protect
    } catch (const std::exception&) {  // the lease expires by itself
    }
    return {Outcome::kLeaseLost};
  }
  try {
    if (!lock->release()) {
      diagnose("run: warning: the lease on \"" + display_key(key) +
               "\" had already ended when the command exited");
    }
  } catch (const BackendError& e) {
    diagnose(std::string("run: warning: release failed, the lease ends by itself within ") +
             format_remaining(ttl) + ": " + e.what());
  }
  return {Outcome::kChild, status_of(wait_status)};
}

}  // namespace lockkit::cli
