// SPDX-License-Identifier: MIT
// Test support: child processes (spawned, waited for with bounds, their output captured), the
// one helper every test binary and server fixture uses.
#ifndef LOCKKIT_TESTS_SUPPORT_PROCESS_HPP_
#define LOCKKIT_TESTS_SUPPORT_PROCESS_HPP_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace lockkit::testing {

// A finished process: its status as a shell reports it (exit code, or 128 + signal).
struct Finished {
  int status = -1;
  bool signaled = false;  // died by a signal (then status is 128 + signal)
  std::string out;        // its stdout
  std::string err;        // its stderr
  std::chrono::milliseconds elapsed{0};
};

// Where a process's stdin and stdout come from, when not the defaults (/dev/null; a file).
struct Stdio {
  std::string in = "/dev/null";  // a file to read stdin from
  int out_fd = -1;               // a descriptor of ours to use as its stdout (-1: captured)
};

// A running child process with stdout/stderr captured in files under `dir`.
// Thread safety: one thread at a time.
class Process {
 public:
  // Starts `argv` with the current environment plus `env` ("NAME=value", replacing).
  Process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
          const std::string& dir, const Stdio& stdio = {});
  ~Process();  // kills (SIGKILL) and reaps the process if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Waits up to `timeout` for the process to exit. Returns empty if it is still running.
  std::optional<Finished> wait(std::chrono::milliseconds timeout);
  // Sends `sig` to the process.
  void signal(int sig) const;

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::string out_path_, err_path_;
  std::chrono::steady_clock::time_point started_;
  bool reaped_ = false;
};

// Runs `argv` to completion (SIGKILL after `timeout`, reported as status 137).
Finished run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& dir,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30),
                     const Stdio& stdio = {});

// Waits up to `timeout` until `path` exists and is non-empty; returns its contents or empty.
std::optional<std::string> await_file(const std::string& path, std::chrono::milliseconds timeout);

// Waits up to `timeout` until process `pid` has `sig` blocked (SigBlk in /proc/PID/status).
bool await_signal_blocked(pid_t pid, int sig, std::chrono::milliseconds timeout);

// Returns true if process `pid` is gone or a zombie.
bool process_gone(pid_t pid);

// Returns the whole file (empty if missing).
std::string read_file(const std::string& path);

// Runs `argv` (no shell; argv[0] is looked up in PATH), waits for it, and returns its stdout.
// Sets `*status` to the exit status if given; otherwise throws `std::runtime_error` (with its
// stderr) unless it exited 0. Its stdin is /dev/null.
std::string run_command(const std::vector<std::string>& argv, int* status = nullptr);

// Starts `argv` (argv[0] looked up in PATH) with our stdin, stdout and stderr and the current
// environment plus `env` ("NAME=value", replacing). Returns its pid, for `wait_exit`. Throws
// `std::runtime_error` if it cannot start.
pid_t spawn_process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

// Waits up to `limit` for child `pid` (spawned or forked) to exit and reaps it. Returns its
// status as a shell reports it (exit code, or 128 + signal), or -1 if it was still running
// (it is then killed with SIGKILL and reaped).
int wait_exit(pid_t pid, std::chrono::milliseconds limit = std::chrono::seconds(120));

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_PROCESS_HPP_
