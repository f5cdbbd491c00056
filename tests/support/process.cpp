// SPDX-License-Identifier: MIT
// posix_spawn with captured output, and waits bounded by pidfd + poll (no sleeping loops).
#include "support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace lockkit::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::atomic<unsigned> g_counter{0};

std::vector<std::string> merged_environment(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string s(*e);
    vars[s.substr(0, s.find('='))] = s;
  }
  for (const auto& s : extra) vars[s.substr(0, s.find('='))] = s;
  std::vector<std::string> out;
  for (auto& [name, value] : vars) out.push_back(value);
  return out;
}

}  // namespace

Process::Process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                 const std::string& dir, const Stdio& stdio) {
  unsigned n = g_counter.fetch_add(1);
  out_path_ = dir + "/proc" + std::to_string(n) + ".out";
  err_path_ = dir + "/proc" + std::to_string(n) + ".err";
  std::vector<std::string> envs = merged_environment(env);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, stdio.in.c_str(), O_RDONLY, 0);
  if (stdio.out_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, stdio.out_fd, 1);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
  }
  posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  started_ = Clock::now();
  int err = posix_spawn(&pid_, cargv[0], &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(err));
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) throw std::runtime_error(std::string("pidfd_open: ") + std::strerror(errno));
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

std::optional<Finished> Process::wait(milliseconds timeout) {
  if (reaped_) throw std::logic_error("process already waited for");
  pollfd p{pidfd_, POLLIN, 0};
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    int n = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
    if (n > 0) break;
    if (n == 0) return std::nullopt;
    if (errno != EINTR) throw std::runtime_error("poll failed");
  }
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid failed");
  }
  reaped_ = true;
  Finished f;
  f.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - started_);
  if (WIFEXITED(st)) {
    f.status = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    f.signaled = true;
    f.status = 128 + WTERMSIG(st);
  }
  f.out = read_file(out_path_);
  f.err = read_file(err_path_);
  return f;
}

void Process::signal(int sig) const {
  if (!reaped_) ::kill(pid_, sig);
}

Finished run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& dir, milliseconds timeout, const Stdio& stdio) {
  Process p(argv, env, dir, stdio);
  if (auto f = p.wait(timeout)) return *f;
  p.signal(SIGKILL);
  auto f = p.wait(std::chrono::seconds(10));
  return f ? *f : Finished{};
}

std::optional<std::string> await_file(const std::string& path, milliseconds timeout) {
  // Files written by another process give no event to wait on; poll with a short period.
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::string text = read_file(path);
    if (!text.empty()) return text;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

bool await_signal_blocked(pid_t pid, int sig, milliseconds timeout) {
  // Nothing to wait on for another process's signal mask; poll with a short period.
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("SigBlk:", 0) != 0) continue;
      unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      if (mask & (1ULL << (sig - 1))) return true;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z' ||
         line[close + 2] == 'X';
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string run_command(const std::vector<std::string>& argv, int* status) {
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int spawn_error = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(err[1]);
  // Both pipes are read as data arrives: a child that fills one while we block on the other
  // would otherwise never finish.
  std::string output, errors;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&output, &errors};
  int open_fds = spawn_error == 0 ? 2 : 0;
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // poll ignores negative descriptors
        --open_fds;
      }
    }
  }
  ::close(out[0]);
  ::close(err[0]);
  if (spawn_error != 0) {
    throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(spawn_error));
  }
  int code = wait_exit(pid);
  if (status) {
    *status = code;
  } else if (code != 0) {
    throw std::runtime_error(argv[0] + " exited with " + std::to_string(code) + ": " + errors);
  }
  return output;
}

pid_t spawn_process(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<std::string> envs = merged_environment(env);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = -1;
  int err = ::posix_spawnp(&pid, cargv[0], nullptr, nullptr, cargv.data(), cenv.data());
  if (err != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(err));
  return pid;
}

int wait_exit(pid_t pid, milliseconds limit) {
  // A pidfd becomes readable when the process exits: a bounded wait without polling in a loop.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = true;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    auto deadline = Clock::now() + limit;
    for (;;) {
      auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
      int n = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
      if (n > 0) break;
      if (n == 0) {
        exited = false;
        break;
      }
      if (errno != EINTR) break;  // fall back to a plain waitpid
    }
    ::close(pidfd);
  }
  if (!exited) ::kill(pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (!exited) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace lockkit::testing
