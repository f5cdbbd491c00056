// SPDX-License-Identifier: MIT
// `lockkit run`: runs a command under a lock, renews the lease, and stops the command before
// the lease can run out.
//
// One thread waits for everything that can happen to the command (a signalfd for SIGCHLD and
// the signals to forward, an eventfd poked by the keep-alive, a timer for the kill deadline).
// Renewal is the library's own `Lock::keep_alive`, whose threads never block this one, so a
// store that hangs can never delay the kill.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "json.hpp"
#include "lockkit/errors.hpp"
#include "signals.hpp"
#include "wait.hpp"

namespace lockkit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

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

// What the event loop and the keep-alive's hooks share. Owned by both: a release that is still
// blocked in a call to a hanging store when lockkit exits is left behind (see `release_until`),
// and must still find everything it uses.
// Thread safety: the atomics and the members guarded by `mu` may be used from any thread;
// `lock` by the event loop's thread, then by the releasing thread.
struct LeaseState {
  LeaseState(Lock held, milliseconds lease_ttl)
      : lock(std::move(held)), ttl(lease_ttl), notify(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (notify.get() < 0) throw std::runtime_error("eventfd failed");
  }

  void poke() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(notify.get(), &one, sizeof one);
  }

  // Renews `lock` with the library's keep-alive: not while the command is stopped (`paused`),
  // never after `max_hold`; a loss pokes the event loop.
  void keep_alive(milliseconds max_hold) {
    lock->keep_alive(KeepAliveOptions{.on_lost =
                                          [this](std::string_view reason) {
                                            {
                                              std::lock_guard<std::mutex> guard(mu);
                                              lost_reason = reason;
                                            }
                                            lost.store(true);
                                            poke();
                                          },
                                      .max_hold = max_hold,
                                      .should_renew =
                                          [this] {
                                            if (paused.load()) return false;
                                            renewal_since.store(
                                                Clock::now().time_since_epoch().count());
                                            return true;
                                          },
                                      .on_renewal_error =
                                          [this](std::string_view error) {
                                            {
                                              std::lock_guard<std::mutex> guard(mu);
                                              last_error = error;
                                            }
                                            renewal_since.store(0);
                                            poke();
                                          }});
  }

  std::optional<Lock> lock;
  const milliseconds ttl;
  Fd notify;                                 // an eventfd: poked by the keep-alive's hooks
  std::atomic<bool> lost{false};             // the keep-alive declared the lease lost
  std::atomic<bool> paused{false};           // the command is stopped: no renewals
  std::atomic<Clock::rep> renewal_since{0};  // start of the latest renewal; 0: it failed
  std::mutex mu;
  std::string lost_reason;  // guarded by mu
  std::string last_error;   // guarded by mu
};

// Runs `release` on a thread of its own and waits for it until `deadline`. Returns true/false
// as `release` did, rethrows what it threw, or returns an empty optional if it had not finished
// by then: the thread is then left to finish on its own (see `note_detached_thread`).
std::optional<bool> release_until(std::function<bool()> release, Clock::time_point deadline) {
  struct Call {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;         // guarded by mu
    bool ours = false;         // guarded by mu
    std::exception_ptr error;  // guarded by mu
  };
  auto call = std::make_shared<Call>();
  std::thread worker([call, release = std::move(release)] {
    bool ours = false;
    std::exception_ptr error;
    try {
      ours = release();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> guard(call->mu);
    call->done = true;
    call->ours = ours;
    call->error = error;
    call->cv.notify_all();
  });
  std::unique_lock<std::mutex> lk(call->mu);
  if (!call->cv.wait_until(lk, deadline, [&] { return call->done; })) {
    lk.unlock();
    worker.detach();
    note_detached_thread();
    return std::nullopt;
  }
  lk.unlock();
  worker.join();
  if (call->error) std::rethrow_exception(call->error);
  return call->ours;
}

// What the SIGALRM handler of `ExitDeadline` writes and exits with; set before it is armed.
const char* g_deadline_message = nullptr;
std::size_t g_deadline_message_size = 0;
int g_deadline_status = 0;

void exit_at_deadline(int) {
  // Async-signal-safe only: whatever the interrupted thread was doing is abandoned.
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, g_deadline_message, g_deadline_message_size);
  ::_exit(g_deadline_status);
}

// Ends lockkit with `status`, after printing `message` (one diagnostic line), if it is still
// running at `deadline`. For a call made on this thread that must not outlast the lease (a
// store can hang): a timer signal instead of a thread of its own, so that the common case, a
// call that returns at once, costs no thread start and no switch to and from it.
// Thread safety: one at a time, on the event loop's thread.
class ExitDeadline {
 public:
  ExitDeadline(Clock::time_point deadline, int status, std::string_view message)
      : message_(format_diagnostic(message)) {
    g_deadline_message = message_.data();
    g_deadline_message_size = message_.size();
    g_deadline_status = status;
    struct sigaction action {};
    action.sa_handler = &exit_at_deadline;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGALRM, &action, &old_action_) != 0) {
      throw std::runtime_error("sigaction failed");
    }
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    ::pthread_sigmask(SIG_UNBLOCK, &alarm, &old_mask_);  // it may have been blocked at start
    // At least 1 µs: a zero value would disarm the timer instead of firing it at once.
    auto left = std::max(std::chrono::ceil<std::chrono::microseconds>(deadline - Clock::now()),
                         std::chrono::microseconds(1));
    itimerval timer{};
    timer.it_value.tv_sec = static_cast<time_t>(left.count() / 1'000'000);
    timer.it_value.tv_usec = static_cast<suseconds_t>(left.count() % 1'000'000);
    if (::setitimer(ITIMER_REAL, &timer, nullptr) != 0) {
      ::sigaction(SIGALRM, &old_action_, nullptr);
      ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
      throw std::runtime_error("setitimer failed");
    }
  }
  ~ExitDeadline() {
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    ::sigaction(SIGALRM, &old_action_, nullptr);
  }
  ExitDeadline(const ExitDeadline&) = delete;
  ExitDeadline& operator=(const ExitDeadline&) = delete;

 private:
  std::string message_;
  struct sigaction old_action_ {};
  sigset_t old_mask_{};
};

int status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 70;
}

// Sets the command's LOCKKIT_* variables. An environment variable cannot hold a NUL byte, and
// any escaping would make some keys look like others, so: LOCKKIT_KEY is the key exactly as it
// is when it has no NUL byte and is unset otherwise; LOCKKIT_KEY_HEX is always its exact bytes.
// Unset explicitly: a lockkit run inside another one must not pass on the outer key.
void set_environment(const Lock& lock) {
  if (lock.key().find('\0') == std::string::npos) {
    ::setenv("LOCKKIT_KEY", lock.key().c_str(), 1);
  } else {
    ::unsetenv("LOCKKIT_KEY");
  }
  ::setenv("LOCKKIT_KEY_HEX", hex(lock.key()).c_str(), 1);
  ::setenv("LOCKKIT_TOKEN", std::string(lock.token()).c_str(), 1);
  ::setenv("LOCKKIT_FENCE", std::to_string(lock.fence()).c_str(), 1);
}

struct Spawned {
  pid_t pid = -1;
  int exec_errno = 0;  // non-zero: the command could not be executed
};

// The child of `spawn`, until exec. It shares lockkit's memory (vfork): system calls only, no
// allocation; a failed exec's errno goes to `error_fd`.
[[noreturn]] void exec_child(char* const* argv, const sigset_t& mask, pid_t parent, bool terminal,
                             int error_fd) noexcept {
  ::setpgid(0, 0);
  // If lockkit is killed (even by SIGKILL), so is the command: nobody would stop it before
  // the lease runs out otherwise.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(70);               // lockkit died before the line above
  if (terminal) ::tcsetpgrp(STDIN_FILENO, ::getpid());  // SIGTTOU is blocked here
  ::sigprocmask(SIG_SETMASK, &mask, nullptr);
  ::execvp(argv[0], argv);
  int err = errno;
  [[maybe_unused]] auto n = ::write(error_fd, &err, sizeof err);
  ::_exit(127);
}

// Starts `argv` in its own process group with the signal mask lockkit started with, killed if
// lockkit dies. With `terminal`, the child's group becomes the terminal's foreground group.
// vfork, not fork: lockkit is suspended only until the child has called exec, and neither
// copies its page tables nor runs fork handlers for a child that execs at once. (Under
// ThreadSanitizer vfork is a fork; the pipe tells a failed exec either way.)
Spawned spawn(const std::vector<std::string>& command, const sigset_t& mask, bool terminal) {
  std::vector<char*> argv;
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  Fd read_end(fds[0]), write_end(fds[1]);
  const pid_t parent = ::getpid();
  pid_t pid = ::vfork();
  if (pid < 0) throw std::runtime_error(std::string("vfork: ") + std::strerror(errno));
  if (pid == 0) exec_child(argv.data(), mask, parent, terminal, write_end.get());
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
  const int conflict_status = parse_conflict_exit_code(args.conflict_exit_code);
  std::optional<milliseconds> max_hold;
  if (args.max_hold) {
    max_hold = parse_ttl(*args.max_hold, "max-hold");
    if (args.no_renew) throw UsageError("--max-hold and --no-renew: give one, not both");
  }
  if (!args.saw_separator) {
    throw UsageError("missing \"--\" before the command (lockkit run --key K --ttl D -- CMD)");
  }
  if (args.command.empty()) throw UsageError("no command after \"--\"");

  // Before anything that may start threads, so that every thread has these signals blocked.
  SignalGuard signals(/*with_sigchld=*/true);
  std::shared_ptr<LockApi> api = open_backend(args.common);
  WaitEnd end;
  auto taken = take_lock(*api, key, ttl, wait, signals.fd(), end);
  if (!taken) {
    if (end.signal != 0) {
      diagnose("run: interrupted by signal " + std::to_string(end.signal) +
               " while waiting for \"" + display_key(key) + "\"");
      return {Outcome::kInterrupted, end.signal};
    }
    diagnose("run: \"" + display_key(key) + "\" is held by someone else" +
             (wait ? " (waited " + *args.wait + ")" : ""));
    return {Outcome::kBusy, 0, conflict_status};
  }
  // The child inherits these; we are still single-threaded, so setenv is safe.
  set_environment(*taken);
  auto state = std::make_shared<LeaseState>(std::move(*taken), ttl);

  // Orphans of the command (its background jobs, once their parent exits) become our children,
  // so that we are told when they exit and can tell when the process group is empty.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  const bool terminal = ::isatty(STDIN_FILENO) == 1 && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp();
  Spawned child = spawn(args.command, signals.old_mask(), terminal);
  const pid_t group = child.pid;
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
      state->lock->release();
    } catch (const BackendError&) {  // the lease ends by itself; the status says what happened
    }
    return {Outcome::kChild, missing ? 127 : 126};
  }

  // If lockkit itself fails from here on, nothing the command started may outlive the lock
  // handle.
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

  const auto acquired = Clock::now();
  // The keep-alive (and with it the library's renewal threads) starts once the command has run
  // for ttl/6 (at most 100 ms), well before the first renewal is due at ttl/3: a command that
  // is done by then never needed one, and its run stays on this one thread.
  const auto keep_alive_from = acquired + std::min<Clock::duration>(ttl / 6, milliseconds(100));
  bool keep_alive_started = args.no_renew;  // or never to be started

  const KillSchedule schedule(ttl);
  bool stopping = false;  // we sent SIGTERM because the lease is (about to be) lost
  bool killed = false;    // ... and then SIGKILL
  Clock::time_point kill_at{};
  bool leader_done = false;  // the command itself has exited; its group may live on
  int leader_status = 0;
  int stop_signal = 0;  // non-zero while the command is stopped (SIGSTOP, SIGTTIN, SIGTTOU)
  Clock::time_point stopped_since{};
  for (;;) {
    auto now = Clock::now();
    for (;;) {
      int st = 0;
      pid_t r = ::waitpid(-1, &st, WNOHANG | WUNTRACED | WCONTINUED);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;             // none changed (ECHILD: none left)
      if (r != child.pid) continue;  // an orphan of the command's, reaped (we are its subreaper)
      if (WIFSTOPPED(st)) {
        // Ctrl-Z would leave the terminal stuck: job control of CMD is not supported, it simply
        // continues.
        if (WSTOPSIG(st) == SIGTSTP) {
          ::killpg(group, SIGCONT);
        } else if (stop_signal == 0) {
          // A stopped command makes no progress: renewing for it would keep the key locked for
          // nothing, for as long as it stays stopped. So the lease runs towards its deadline and
          // the stop schedule below ends the command, unless it is continued first.
          stop_signal = WSTOPSIG(st);
          stopped_since = now;
          state->paused.store(true);
        }
      } else if (WIFCONTINUED(st)) {
        // Once stopping, the SIGCONT was ours, for SIGTERM: no renewals for it.
        if (stop_signal != 0 && !stopping) state->paused.store(false);
        stop_signal = 0;
      } else {
        leader_done = true;
        leader_status = st;
      }
    }
    if (leader_done) {
      // The lease protects everything the command started in its group (background jobs hold
      // on like flock's inherited descriptor): released only once the group is empty.
      if (::kill(-group, 0) != 0 && errno == ESRCH) {
        reaper.armed = false;
        break;
      }
    }

    if (!keep_alive_started && !stopping && now >= keep_alive_from) {
      state->keep_alive(max_hold.value_or(milliseconds(0)));
      keep_alive_started = true;
    }

    auto valid_until = state->lock->valid_until();
    auto term_at = valid_until - schedule.grace - schedule.margin;
    if (!stopping && (state->lost.load() || now >= term_at)) {
      stopping = true;
      ::killpg(group, SIGTERM);
      ::killpg(group, SIGCONT);  // a stopped process sees SIGTERM only once continued
      kill_at = state->lost.load() ? std::min(now + schedule.grace, valid_until - schedule.margin)
                                   : valid_until - schedule.margin;
      kill_at = std::max(kill_at, now);
      std::string why;
      std::string error;
      std::string lost_reason;
      {
        std::lock_guard<std::mutex> guard(state->mu);
        error = state->last_error;
        lost_reason = state->lost_reason;
      }
      // A renewal is still unanswered if none failed since it started and valid_until has not
      // moved to its start + ttl (less drift): the keep-alive renews at ttl/3 at the latest.
      auto since = state->renewal_since.load();
      const bool unanswered =
          since != 0 &&
          valid_until < Clock::time_point(Clock::duration(since)) + state->ttl * 5 / 6;
      if (state->lost.load()) {
        why = lost_reason;
      } else if (stop_signal != 0) {
        why = "the command has been stopped (signal " + std::to_string(stop_signal) + ") for " +
              format_remaining(std::chrono::duration_cast<milliseconds>(now - stopped_since)) +
              " (the lease of a stopped command is not renewed)";
      } else if (args.no_renew) {
        why = "--no-renew was given";
      } else if (max_hold && now >= acquired + *max_hold) {
        why = "--max-hold " + *args.max_hold + " has passed (it is not renewed any more)";
      } else if (unanswered) {
        auto pending = now - Clock::time_point(Clock::duration(since));
        why = "it could not be renewed (the store has not answered a renewal for " +
              format_remaining(std::chrono::duration_cast<milliseconds>(pending)) +
              (error.empty() ? "" : "; before that: " + error) + ")";
      } else {
        why = "it could not be renewed (" + (error.empty() ? "no renewal succeeded" : error) + ")";
      }
      diagnose(
          "run: lease on \"" + display_key(key) + "\" is ending and " + why + "; stopping " +
          (leader_done ? "what the command left running in its process group" : "the command") +
          " (SIGTERM, SIGKILL after " +
          format_remaining(std::chrono::duration_cast<milliseconds>(kill_at - now)) + ")");
    }
    if (stopping && !killed && now >= kill_at) {
      ::killpg(group, SIGKILL);
      killed = true;
    }

    long long timeout_ms = -1;
    if (!stopping || !killed) {
      auto next = stopping ? kill_at : term_at;
      if (!keep_alive_started && !stopping) next = std::min(next, keep_alive_from);
      timeout_ms = std::chrono::ceil<milliseconds>(next - now).count();
    }
    // Once the command has exited, its group's last member may be a process whose end we are
    // not told about (its parent is still alive and not us): look again now and then.
    if (leader_done && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;
    pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {state->notify.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::clamp<long long>(timeout_ms, -1, 60'000)));
    if (n < 0 && errno != EINTR) throw std::runtime_error("poll failed");
    if (n > 0 && (fds[0].revents & POLLIN)) {
      while (int sig = signals.next()) {
        if (sig != SIGCHLD) ::killpg(group, sig);  // waitpid above handles SIGCHLD
      }
    }
    if (n > 0 && (fds[1].revents & POLLIN)) {
      std::uint64_t count;
      [[maybe_unused]] auto m = ::read(state->notify.get(), &count, sizeof count);
    }
  }
  give_back_terminal();

  // The command and its group are gone: give the lease back (the keep-alive stops first, and
  // waits for a renewal under way), but never wait for a hanging store longer than the lease
  // could still be ours (after that, releasing is pointless).
  const auto valid_until = state->lock->valid_until();
  if (stopping) {
    // On a thread of its own: a lease known lost has nothing to give back, so it is dropped
    // without waiting (a kept-alive Lock first waits for a renewal under way).
    const auto until = state->lost.load() ? Clock::now() : std::max(Clock::now(), valid_until);
    try {
      release_until([state] { return state->lock->release(); }, until);
    } catch (const std::exception&) {  // ours or not, nothing is left to protect
    }
    return {Outcome::kLeaseLost};
  }
  const int status = status_of(leader_status);
  try {
    bool ours = false;
    {
      // Past the lease's end lockkit exits with CMD's status whatever the release is doing.
      ExitDeadline deadline(valid_until, status,
                            "run: warning: the store did not confirm the release of \"" +
                                display_key(key) +
                                "\" before the lease's own end; it ends by itself");
      ours = state->lock->release();
    }
    if (!ours) {
      diagnose("run: warning: the lease on \"" + display_key(key) +
               "\" had already ended when the command exited");
    }
  } catch (const BackendError& e) {
    diagnose(std::string("run: warning: release failed, the lease ends by itself within ") +
             format_remaining(ttl) + ": " + e.what());
  }
  return {Outcome::kChild, status};
}

}  // namespace lockkit::cli
