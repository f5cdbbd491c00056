// SPDX-License-Identifier: MIT
// The command that the CLI tests run under `lockkit run`: one small program, several behaviours.
//   child increment COUNTER LOG   read-increment-write COUNTER, append "start end fence" to LOG
//   child sleep PIDFILE SECONDS   write "pid pgid" to PIDFILE, then sleep
//   child stubborn PIDFILE SECONDS  like sleep, but ignores SIGTERM, SIGINT and SIGHUP
//   child signals PIDFILE OUTFILE write PIDFILE, wait for SIGINT/SIGTERM/SIGHUP, write its
//                                 number to OUTFILE and exit 40 + number
//   child env OUTFILE             write LOCKKIT_KEY, LOCKKIT_TOKEN, LOCKKIT_FENCE, LOCKKIT_KEY_HEX
//                                 (one a line; "<unset>" for a variable that is not set)
//   child tty                     print "foreground" if it owns the terminal, else "background"
//   child stamp FILE              write the CLOCK_MONOTONIC time in ns to FILE
//   child exit N                  exit with status N
//   child raise SIG               kill itself with signal SIG
//   child no-alarm PROGRAM ARGS... exec PROGRAM with SIGALRM blocked and ignored
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

namespace {

long long now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

// Writes `text` to `path` atomically (temp file + rename), so a reader never sees half of it.
void write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
  }
  std::rename(tmp.c_str(), path.c_str());
}

void write_pidfile(const std::string& path) {
  write_file(path, std::to_string(getpid()) + " " + std::to_string(getpgrp()) + "\n");
}

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

int increment(const std::string& counter, const std::string& log) {
  long long start = now_ns();
  long long value = 0;
  {
    std::ifstream in(counter);
    in >> value;
  }
  // Widen the window in which an overlapping critical section would lose an update.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  write_file(counter, std::to_string(value + 1) + "\n");
  long long end = now_ns();
  std::string line =
      std::to_string(start) + " " + std::to_string(end) + " " + env_or("LOCKKIT_FENCE", "0") + "\n";
  int fd = open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return 90;
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  close(fd);
  return ok ? 0 : 91;
}

int wait_for_signal(const std::string& pidfile, const std::string& outfile) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  write_pidfile(pidfile);
  int sig = 0;
  timespec timeout{30, 0};
  sig = sigtimedwait(&set, nullptr, &timeout);
  if (sig < 0) return 99;
  write_file(outfile, std::to_string(sig) + "\n");
  return 40 + sig;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 98;
  std::string mode = argv[1];
  if (mode == "increment" && argc == 4) return increment(argv[2], argv[3]);
  if ((mode == "sleep" || mode == "stubborn") && argc == 4) {
    if (mode == "stubborn") {
      signal(SIGTERM, SIG_IGN);
      signal(SIGINT, SIG_IGN);
      signal(SIGHUP, SIG_IGN);
    }
    write_pidfile(argv[2]);
    std::this_thread::sleep_for(std::chrono::duration<double>(std::atof(argv[3])));
    return 0;
  }
  if (mode == "signals" && argc == 4) return wait_for_signal(argv[2], argv[3]);
  if (mode == "env" && argc == 3) {
    write_file(argv[2], std::string(env_or("LOCKKIT_KEY", "<unset>")) + "\n" +
                            env_or("LOCKKIT_TOKEN", "<unset>") + "\n" +
                            env_or("LOCKKIT_FENCE", "<unset>") + "\n" +
                            env_or("LOCKKIT_KEY_HEX", "<unset>") + "\n");
    return 0;
  }
  if (mode == "tty" && argc == 2) {
    bool foreground = isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp();
    std::printf("%s\n", foreground ? "foreground" : "background");
    return 0;
  }
  if (mode == "stamp" && argc == 3) {
    write_file(argv[2], std::to_string(now_ns()) + "\n");
    return 0;
  }
  if (mode == "exit" && argc == 3) return std::atoi(argv[2]);
  if (mode == "no-alarm" && argc >= 3) {
    signal(SIGALRM, SIG_IGN);
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alarm, nullptr);
    execv(argv[2], argv + 2);
    return 96;
  }
  if (mode == "raise" && argc == 3) {
    int sig = std::atoi(argv[2]);
    signal(sig, SIG_DFL);
    raise(sig);
    return 97;
  }
  return 98;
}
