// SPDX-License-Identifier: MIT
// End-to-end tests of the `lockkit` tool: real processes of the built binary on a real SQLite
// file, contending, crashing, losing their lease, and being called wrongly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "lockkit/open.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#ifdef LOCKKIT_CLI_TEST_REDIS
#include "support/fault_proxy.hpp"
#include "support/redis_server.hpp"
#endif

namespace lockkit::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kLockkit = LOCKKIT_CLI_PATH;
const std::string kChild = LOCKKIT_CLI_CHILD_PATH;
// Time a process may need beyond what the tested behaviour takes (start-up, scheduling).
constexpr milliseconds kSchedulingSlack{1000};

// Returns the text after `"name":` in a one-line JSON object, up to the next ',' or '}'.
// (No std::regex: GCC 12 warns inside it under the sanitizers.)
std::string json_raw(const std::string& json, const std::string& name) {
  std::string needle = "\"" + name + "\":";
  auto at = json.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  return json.substr(at, json.find_first_of(",}", at) - at);
}

// Returns the number in `"name":<digits>`, or -1.
long long json_number(const std::string& json, const std::string& name) {
  std::string raw = json_raw(json, name);
  return raw.empty() || raw[0] == '"' ? -1 : std::stoll(raw);
}

// Returns the string in `"name":"..."` (no escapes), or "".
std::string json_text(const std::string& json, const std::string& name) {
  std::string raw = json_raw(json, name);
  return raw.size() >= 2 && raw.front() == '"' ? raw.substr(1, raw.size() - 2) : "";
}

bool is_token(const std::string& s) {
  return s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

bool one_diagnostic_line(const std::string& err) {
  return err.rfind("lockkit: ", 0) == 0 && err.find('\n') == err.size() - 1;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir();
    backend_ = "sqlite://" + dir_ + "/locks.db";
  }
  void TearDown() override { remove_tree(dir_); }

  std::vector<std::string> env() const {
    return {"LOCKKIT_BACKEND=" + backend_, "XDG_STATE_HOME=" + dir_ + "/state"};
  }
  // Runs `lockkit ARGS...` to completion.
  Finished lockkit(std::vector<std::string> args, milliseconds timeout = seconds(30)) const {
    args.insert(args.begin(), kLockkit);
    return run_process(args, env(), dir_, timeout);
  }
  // Runs `lockkit ARGS...` to completion with `stdio` and `extra_env` added to `env()`.
  Finished lockkit_with(std::vector<std::string> args, const Stdio& stdio,
                        std::vector<std::string> extra_env = {}) const {
    args.insert(args.begin(), kLockkit);
    auto e = env();
    e.insert(e.end(), extra_env.begin(), extra_env.end());
    return run_process(args, e, dir_, seconds(30), stdio);
  }
  std::unique_ptr<Process> start(std::vector<std::string> args) const {
    args.insert(args.begin(), kLockkit);
    return std::make_unique<Process>(args, env(), dir_);
  }
  // Writes `text` to the file `name` in the test directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::trunc) << text;
    return path(name);
  }
  bool held(const std::string& key) const {
    return lockkit({"status", "--key", key, "--json"}).out.find("\"held\":true") !=
           std::string::npos;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Returns a lower bound of the store's deadline for the lease on `key` on this host's steady
  // clock (the sqlite backend's store clock is CLOCK_MONOTONIC too): now + remaining time.
  // In-process, so that the bound is tight even on a loaded machine.
  Clock::time_point lease_deadline(const std::string& key) const {
    auto api = lockkit::open(backend_);
    auto before = Clock::now();
    auto info = api->status(key);
    EXPECT_TRUE(info.has_value()) << "the lease on " << key << " is gone already";
    return before + (info ? info->remaining : milliseconds(0));
  }

  std::string dir_;
  std::string backend_;
};

// --- Help and version -------------------------------------------------------------------------

TEST_F(Cli, EveryHelpPageIsWellFormedForHelp2man) {
  // help2man turns each page into a manual: a "Usage:" line first, then headed sections.
  std::vector<std::vector<std::string>> pages = {{"--help"}, {"-h"}, {"help"}};
  for (const char* sub : {"run", "acquire", "release", "extend", "status", "list"}) {
    pages.push_back({sub, "--help"});
    pages.push_back({sub, "-h"});
    pages.push_back({"help", sub});
  }
  for (const auto& args : pages) {
    Finished f = lockkit(args);
    std::string shown = args[0] + (args.size() > 1 ? " " + args[1] : "");
    EXPECT_EQ(f.status, 0) << shown;
    EXPECT_TRUE(f.err.empty()) << f.err;
    EXPECT_EQ(f.out.rfind("Usage: lockkit", 0), 0u) << shown << ":\n" << f.out;
    for (const char* section : {"\nOptions:\n", "\nExamples:\n", "\nExit status:\n", "75", "70",
                                "74", "77", "--backend-file"}) {
      EXPECT_NE(f.out.find(section), std::string::npos) << section << " missing in " << shown;
    }
  }
  Finished run_help = lockkit({"run", "--help"});
  for (const char* text : {"LOCKKIT_FENCE", "LOCKKIT_KEY_HEX", "SIGKILL", "--wait forever",
                           "--conflict-exit-code", "-k, --key", "-t, --ttl", "-w, --wait"}) {
    EXPECT_NE(run_help.out.find(text), std::string::npos) << text;
  }
  for (const char* sub : {"release", "extend"}) {
    Finished f = lockkit({sub, "--help"});
    EXPECT_NE(f.out.find("--token-file"), std::string::npos) << sub;
    EXPECT_NE(f.out.find("LOCKKIT_TOKEN"), std::string::npos) << sub;
  }
  for (const char* flag : {"--version", "-V"}) {
    Finished version = lockkit({flag});
    EXPECT_EQ(version.status, 0) << flag;
    EXPECT_EQ(version.out.rfind("lockkit ", 0), 0u) << flag;
  }
}

// --- Bad invocations --------------------------------------------------------------------------

TEST_F(Cli, BadInvocationsExitWithOneLineAndTheRightStatus) {
  std::string not_a_db = path("garbage.db");
  {
    std::ofstream out(not_a_db);
    out << std::string(4096, 'x');
  }
  const std::string key_1025(1025, 'k');
  const std::string key_1024(1024, 'k');
  struct Case {
    std::vector<std::string> args;
    int status;
  };
  const std::vector<Case> cases = {
      {{}, 64},
      {{"--frob"}, 64},
      {{"frob"}, 64},
      {{"help", "frob"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "true"}, 64},  // missing --
      {{"run", "--key", "k", "--ttl", "1s", "--"}, 64},    // no command
      {{"run", "--ttl", "1s", "--", "true"}, 64},          // no key
      {{"run", "--key", "", "--ttl", "1s", "--", "true"}, 64},
      {{"run", "--key", key_1025, "--ttl", "1s", "--", "true"}, 64},
      {{"run", "--key", "k", "--", "true"}, 64},  // no ttl
      {{"run", "--key", "k", "--ttl", "0", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "0ms", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "-5s", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "10x", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "8d", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "10", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--wait", "-1s", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--wait", "soon", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--wait"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--frob", "--", "true"}, 64},
      {{"run", "--key", "k", "--key-hex", "6b", "--ttl", "1s", "--", "true"}, 64},
      {{"status", "--key-hex", "0g"}, 64},
      {{"status", "--key-hex", "abc"}, 64},
      {{"status", "--key", key_1025}, 64},
      {{"status"}, 64},
      {{"status", "--key", "k", "extra"}, 64},
      {{"release", "--key", "k"}, 64},  // no token
      {{"release", "--key", "k", "--token", "t", "--", "true"}, 64},
      {{"extend", "--key", "k", "--token", "t"}, 64},  // no ttl
      {{"extend", "--key", "k", "--token", "t", "--ttl", "1w"}, 64},
      {{"list", "--prefix", "a", "--prefix-hex", "61"}, 64},
      {{"acquire", "--key", "k"}, 64},
      {{"status", "--key", "k", "--backend", "frob://x"}, 64},  // unknown scheme
      {{"status", "--key", "k", "--backend", "sqlite"}, 64},    // no scheme
      {{"status", "--key", "k", "--backend", "memory://host"}, 64},
      {{"status", "--key", "k", "--backend", "sqlite:///tmp/x.db?frob=1"}, 64},
      {{"status", "--key", "k", "--backend", "sqlite:///tmp/x.db?busy_timeout=5"}, 64},
      {{"status", "--key", "k", "--backend", "sqlite:///tmp/%zz.db"}, 64},
      {{"status", "--key", "k", "--backend", ""}, 64},  // explicitly empty: not the default
      {{"status", "--key", "k", "-b", ""}, 64},
      {{"status", "--key", "k", "--backend", "noop:", "--backend-file", "/dev/null"}, 64},
      {{"status", "--key", "k", "--backend-file", "/dev/null"}, 64},  // empty file
      {{"status", "--key", "k", "--backend-file", "/nonexistent/url"}, 64},
      {{"release", "--key", "k", "--token", "00", "--token-file", "/dev/null"}, 64},
      {{"release", "--key", "k", "--token-file", "/dev/null"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--conflict-exit-code", "256", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--conflict-exit-code", "x", "--", "true"}, 64},
      {{"run", "--key", "k", "--ttl", "1s", "--wait", "Forever", "--", "true"}, 64},
      // Unwritable paths: below a regular file, and in /proc (where even root cannot create).
      {{"status", "--key", "k", "--backend", "sqlite:///etc/passwd/locks.db"}, 69},
      {{"status", "--key", "k", "--backend", "sqlite:///proc/lockkit/locks.db"}, 69},
      {{"status", "--key", "k", "--backend", "sqlite://" + not_a_db}, 69},
      {{"status", "--key", "k", "--backend", "sqlite://" + dir_}, 69},  // a directory
      {{"run", "--backend", "noop:locked", "--key", "k", "--ttl", "1s", "--", "true"}, 75},
      {{"release", "--key", key_1024, "--token", "00"}, 1},
      {{"extend", "--key", "k", "--token", "00", "--ttl", "1s"}, 1},
  };
  ASSERT_GE(cases.size(), 25u);
  for (const Case& c : cases) {
    std::string shown;
    for (const auto& a : c.args) shown += (a.size() > 40 ? a.substr(0, 40) + "..." : a) + " ";
    Finished f = lockkit(c.args, seconds(10));
    EXPECT_FALSE(f.signaled) << shown;
    EXPECT_EQ(f.status, c.status) << shown << "\n" << f.err;
    EXPECT_TRUE(one_diagnostic_line(f.err)) << shown << "\nstderr: " << f.err;
    EXPECT_TRUE(f.out.empty()) << shown << "\nstdout: " << f.out;
    EXPECT_LT(f.elapsed, seconds(2)) << shown;
  }
}

TEST_F(Cli, DiagnosticsNeverShowPasswordsOrTokens) {
  Finished f = lockkit({"status", "--key", "k", "--backend", "frob://user:hunter2@host/"});
  EXPECT_EQ(f.status, 64);
  EXPECT_EQ(f.err.find("hunter2"), std::string::npos) << f.err;
}

// --- Exit statuses of the command -------------------------------------------------------------

// Each `lockkit run` adds three WAL frames (acquire, release): however it leaves the file, the
// WAL stays short, or every later run would re-read all of it at open.
TEST_F(Cli, RunAfterRunKeepsTheWalShort) {
  for (int i = 0; i < 50; ++i) {
    Finished f = lockkit({"run", "--key", "k", "--ttl", "10s", "--", "true"});
    ASSERT_EQ(f.status, 0) << f.err;
  }
  struct stat st {};
  ASSERT_EQ(::stat(path("locks.db-wal").c_str(), &st), 0);
  EXPECT_LE(st.st_size, 51 * 4120 + 32) << "150 frames written, too few cut";
}

TEST_F(Cli, RunExitsWithTheCommandsStatus) {
  struct Case {
    std::vector<std::string> cmd;
    int status;
  };
  for (const Case& c : std::vector<Case>{{{kChild, "exit", "0"}, 0},
                                         {{kChild, "exit", "3"}, 3},
                                         {{kChild, "exit", "255"}, 255},
                                         {{kChild, "raise", "15"}, 128 + 15},
                                         {{kChild, "raise", "9"}, 128 + 9},
                                         {{kChild, "raise", "6"}, 128 + 6}}) {
    std::vector<std::string> args = {"run", "--key", "k", "--ttl", "5s", "--"};
    args.insert(args.end(), c.cmd.begin(), c.cmd.end());
    Finished f = lockkit(args);
    EXPECT_EQ(f.status, c.status) << c.cmd[1] << " " << c.cmd[2] << "\n" << f.err;
    EXPECT_FALSE(f.signaled);
    EXPECT_TRUE(f.err.empty()) << f.err;
    // Released on exit: the key is free at once.
    EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "5s", "--", "true"}).status, 0);
  }
}

TEST_F(Cli, CommandThatCannotRunGives127Or126AndReleases) {
  std::string script = path("not-executable.sh");
  {
    std::ofstream out(script);
    out << "#!/bin/sh\nexit 0\n";
  }
  struct Case {
    std::string cmd;
    int status;
  };
  for (const Case& c : std::vector<Case>{{path("missing"), 127},
                                         {"lockkit-no-such-command-on-path", 127},
                                         {script, 126},
                                         {dir_, 126}}) {
    Finished f = lockkit({"run", "--key", "k", "--ttl", "30s", "--", c.cmd});
    EXPECT_EQ(f.status, c.status) << c.cmd;
    EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
    Finished status = lockkit({"status", "--key", "k", "--json"});
    EXPECT_NE(status.out.find("\"held\":false"), std::string::npos) << status.out;
  }
}

TEST_F(Cli, CommandSeesKeyTokenAndFence) {
  std::string out = path("env.txt");
  Finished f = lockkit({"run", "--key", "jobs/42", "--ttl", "5s", "--", kChild, "env", out});
  ASSERT_EQ(f.status, 0) << f.err;
  std::istringstream in(read_file(out));
  std::string key, token, fence, key_hex;
  std::getline(in, key);
  std::getline(in, token);
  std::getline(in, fence);
  std::getline(in, key_hex);
  EXPECT_EQ(key, "jobs/42");
  EXPECT_EQ(key_hex, "6a6f62732f3432");
  EXPECT_TRUE(is_token(token)) << token;
  EXPECT_GT(std::stoull(fence), 0u);
  // Only the first "--" ends lockkit's options; later ones belong to the command.
  Finished dashes = lockkit({"run", "--key", "k", "--ttl", "5s", "--", "/bin/sh", "-c",
                             "echo \"$@\"", "sh", "--", "--key"});
  EXPECT_EQ(dashes.status, 0) << dashes.err;
  EXPECT_EQ(dashes.out, "-- --key\n");
  Finished second = lockkit({"run", "--key", "jobs/42", "--ttl", "5s", "--", kChild, "env", out});
  std::istringstream in2(read_file(out));
  std::getline(in2, key);
  std::string token2, fence2;
  std::getline(in2, token2);
  std::getline(in2, fence2);
  EXPECT_NE(token2, token);
  EXPECT_GT(std::stoull(fence2), std::stoull(fence));
}

// --- Signals ----------------------------------------------------------------------------------

TEST_F(Cli, SignalsAreForwardedToTheCommandsProcessGroup) {
  for (int sig : {SIGHUP, SIGINT, SIGTERM}) {
    std::string pidfile = path("pid" + std::to_string(sig));
    std::string got = path("got" + std::to_string(sig));
    auto p = start({"run", "--key", "k", "--ttl", "5s", "--", kChild, "signals", pidfile, got});
    auto pids = await_file(pidfile, seconds(10));
    ASSERT_TRUE(pids) << "the command did not start";
    pid_t pid = 0, pgid = 0;
    std::istringstream(*pids) >> pid >> pgid;
    EXPECT_EQ(pid, pgid) << "the command must lead its own process group";
    EXPECT_NE(pgid, ::getpgrp());
    p->signal(sig);
    auto f = p->wait(seconds(10));
    ASSERT_TRUE(f) << "lockkit did not exit after forwarding signal " << sig;
    EXPECT_EQ(f->status, 40 + sig) << f->err;  // the child's own status, not lockkit's death
    EXPECT_FALSE(f->signaled);
    EXPECT_EQ(read_file(got), std::to_string(sig) + "\n");
  }
}

TEST_F(Cli, StoppedCommandIsContinuedNotLeftHoldingTheLock) {
  // `raise 20` stops itself with SIGTSTP (Ctrl-Z); once continued it exits 97.
  Finished f =
      lockkit({"run", "--key", "k", "--ttl", "5s", "--", kChild, "raise", "20"}, seconds(10));
  EXPECT_EQ(f.status, 97) << f.err;
}

TEST_F(Cli, ForwardedSignalThatKillsTheCommandGives128PlusSignal) {
  std::string pidfile = path("pid");
  auto p = start({"run", "--key", "k", "--ttl", "5s", "--", kChild, "sleep", pidfile, "30"});
  ASSERT_TRUE(await_file(pidfile, seconds(10)));
  p->signal(SIGTERM);
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 128 + SIGTERM);
  EXPECT_FALSE(f->signaled) << "lockkit itself must survive and report the command's death";
  EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "5s", "--", "true"}).status, 0);
}

// --- Contention across processes ---------------------------------------------------------------

TEST_F(Cli, ConcurrentRunsNeverOverlapAndFencesIncrease) {
  constexpr int kWorkers = 8;
  constexpr int kCycles = 25;
  const std::string counter = path("counter"), log = path("log");
  // The database does not exist yet: the first workers also race to create it.
  std::atomic<int> successes{0}, failures{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < kCycles; ++i) {
        Finished f = lockkit({"run", "--key", "counter", "--ttl", "10s", "--wait", "60s", "--",
                              kChild, "increment", counter, log},
                             seconds(90));
        (f.status == 0 ? successes : failures).fetch_add(1);
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(successes.load(), kWorkers * kCycles);
  EXPECT_EQ(std::stoi(read_file(counter)), successes.load());

  std::vector<std::tuple<long long, long long, unsigned long long>> sections;
  std::istringstream in(read_file(log));
  long long start = 0, end = 0;
  unsigned long long fence = 0;
  while (in >> start >> end >> fence) sections.emplace_back(start, end, fence);
  ASSERT_EQ(static_cast<int>(sections.size()), successes.load());
  std::sort(sections.begin(), sections.end());
  for (std::size_t i = 1; i < sections.size(); ++i) {
    auto [s0, e0, f0] = sections[i - 1];
    auto [s1, e1, f1] = sections[i];
    EXPECT_LT(e0, s1) << "critical sections " << i - 1 << " and " << i << " overlap";
    EXPECT_LT(f0, f1) << "fences must increase in the order of the critical sections";
  }
}

TEST_F(Cli, KilledHolderFreesTheKeyWithinTtlAndTakesItsCommandAlong) {
  const milliseconds ttl{1000};
  std::string pidfile = path("pid");
  auto holder = start({"run", "--key", "k", "--ttl", "1s", "--", kChild, "sleep", pidfile, "30"});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t child = std::stoi(*pids);
  holder->signal(SIGKILL);
  auto killed_at = Clock::now();
  ASSERT_TRUE(holder->wait(seconds(5)));
  // The next holder's command stamps the moment it runs (CLOCK_MONOTONIC = steady_clock).
  std::string stamp = path("stamp");
  Finished next =
      lockkit({"run", "--key", "k", "--ttl", "1s", "--wait", "10s", "--", kChild, "stamp", stamp});
  EXPECT_EQ(next.status, 0) << next.err;
  auto got_it =
      Clock::time_point(std::chrono::nanoseconds(std::stoll(read_file(stamp)))) - killed_at;
  EXPECT_LT(got_it, ttl + seconds(1));
  // The orphaned command got SIGKILL with lockkit (parent-death signal), not left running.
  auto deadline = Clock::now() + seconds(5);
  while (!process_gone(child) && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_TRUE(process_gone(child));
}

TEST_F(Cli, WaitGivesUpWith75AndWaitingWorksWhenReleased) {
  Finished held = lockkit({"acquire", "--key", "k", "--ttl", "30s"});
  ASSERT_EQ(held.status, 0) << held.err;
  std::string token = json_text(held.out, "token");
  ASSERT_EQ(token.size(), 32u) << held.out;

  Finished busy = lockkit({"run", "--key", "k", "--ttl", "1s", "--", "true"});
  EXPECT_EQ(busy.status, 75) << busy.err;
  EXPECT_TRUE(one_diagnostic_line(busy.err)) << busy.err;
  Finished waited = lockkit({"run", "--key", "k", "--ttl", "1s", "--wait", "400ms", "--", "true"});
  EXPECT_EQ(waited.status, 75) << waited.err;
  EXPECT_GE(waited.elapsed, milliseconds(400));
  EXPECT_LT(waited.elapsed, milliseconds(400) + kSchedulingSlack);
  EXPECT_EQ(waited.err.find(token), std::string::npos);

  // A signal ends the wait at once, like it would end the command.
  auto interrupted = start({"run", "--key", "k", "--ttl", "1s", "--wait", "20s", "--", "true"});
  // Once lockkit has blocked SIGTERM it reads it from its signalfd instead of dying from it.
  ASSERT_TRUE(await_signal_blocked(interrupted->pid(), SIGTERM, seconds(10)));
  interrupted->signal(SIGTERM);
  auto i = interrupted->wait(seconds(2));
  ASSERT_TRUE(i) << "SIGTERM did not end the wait";
  EXPECT_EQ(i->status, 128 + SIGTERM);
  EXPECT_FALSE(i->signaled);

  // A waiter gets the key once the holder releases it.
  auto waiter = start({"run", "--key", "k", "--ttl", "1s", "--wait", "20s", "--", "true"});
  EXPECT_FALSE(waiter->wait(milliseconds(300))) << "the waiter must still be waiting";
  EXPECT_EQ(lockkit({"release", "--key", "k", "--token", token}).status, 0);
  auto f = waiter->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 0) << f->err;
}

TEST_F(Cli, OnATerminalWaitingShowsOneLineAndTheCommandGetsTheForeground) {
  Finished held = lockkit({"acquire", "--key", "k", "--ttl", "1500ms"});
  ASSERT_EQ(held.status, 0) << held.err;
  // script(1) runs the command on a pseudo-terminal of its own, as its foreground job.
  Finished f = run_process(
      {"/usr/bin/script", "-qec",
       "'" + kLockkit + "' run --key k --ttl 5s --wait 10s -- '" + kChild + "' tty", "/dev/null"},
      env(), dir_, seconds(20));
  EXPECT_EQ(f.status, 0) << f.out << f.err;
  EXPECT_NE(f.out.find("lockkit: waiting for k (held, expires in "), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("\r\x1b[K"), std::string::npos) << "the line is redrawn in place";
  EXPECT_NE(f.out.find("foreground"), std::string::npos) << f.out;
}

// --- Lease loss -------------------------------------------------------------------------------

TEST_F(Cli, NoRenewStopsALongCommandBeforeTheLeaseEndsWith70) {
  const milliseconds ttl{2000};
  std::string pidfile = path("pid");
  auto started = Clock::now();
  auto p = start(
      {"run", "--key", "k", "--ttl", "2s", "--no-renew", "--", kChild, "sleep", pidfile, "30"});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t child = std::stoi(*pids);
  auto deadline = lease_deadline("k");
  while (!process_gone(child) && Clock::now() - started < seconds(10)) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  auto gone_at = Clock::now();
  EXPECT_LT(gone_at, deadline) << "the command outlived its lease";
  EXPECT_GT(gone_at - started, ttl / 2) << "stopped long before it had to be";
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 70) << f->err;
  EXPECT_TRUE(one_diagnostic_line(f->err)) << f->err;
  // The next holder gets the key right away (released, not left to expire).
  EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "1s", "--", "true"}).status, 0);
}

TEST_F(Cli, MaxHoldStopsACommandThatRunsTooLongBeforeTheLeaseEndsWith70) {
  std::string pidfile = path("pid");
  auto started = Clock::now();
  auto p = start({"run", "--key", "k", "--ttl", "1s", "--max-hold", "1500ms", "--", kChild, "sleep",
                  pidfile, "30"});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t child = std::stoi(*pids);
  while (!process_gone(child) && Clock::now() - started < seconds(10)) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  auto gone_after = Clock::now() - started;
  // Renewed past its ttl until --max-hold, then stopped before the last renewal's lease ends.
  EXPECT_GT(gone_after, milliseconds(1500)) << "stopped before --max-hold";
  EXPECT_LT(gone_after, milliseconds(2500) + kSchedulingSlack) << "renewed past --max-hold";
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 70) << f->err;
  EXPECT_TRUE(one_diagnostic_line(f->err)) << f->err;
  EXPECT_NE(f->err.find("--max-hold 1500ms has passed"), std::string::npos) << f->err;
  EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "1s", "--max-hold", "5s", "--", "true"}).status,
            0);
  EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "1s", "--max-hold", "0s", "--", "true"}).status,
            64);
  EXPECT_EQ(
      lockkit({"run", "--key", "k", "--ttl", "1s", "--max-hold", "5s", "--no-renew", "--", "true"})
          .status,
      64);
}

TEST_F(Cli, LeaseLossStopsTheWholeProcessGroupNotJustTheCommand) {
  // A shell whose background grandchild would outlive it if only the shell were signalled.
  std::string pidfile = path("grandchild");
  auto p = start({"run", "--key", "k", "--ttl", "2s", "--no-renew", "--", "/bin/sh", "-c",
                  "\"$0\" sleep \"$1\" 30 & wait", kChild, pidfile});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t grandchild = std::stoi(*pids);
  auto deadline = lease_deadline("k");
  while (!process_gone(grandchild) && Clock::now() < deadline + seconds(5)) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_LT(Clock::now(), deadline) << "the grandchild outlived the lease";
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 70) << f->err;
}

TEST_F(Cli, NoRenewCommandThatFinishesInTimeKeepsItsStatus) {
  Finished f =
      lockkit({"run", "--key", "k", "--ttl", "5s", "--no-renew", "--", kChild, "exit", "7"});
  EXPECT_EQ(f.status, 7) << f.err;
}

TEST_F(Cli, RenewalKeepsALongCommandRunningPastItsTtl) {
  std::string pidfile = path("pid");
  Finished f =
      lockkit({"run", "--key", "k", "--ttl", "900ms", "--", kChild, "sleep", pidfile, "2"});
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_GE(f.elapsed, milliseconds(2000));
}

// Holds SQLite's write lock on the database from this process, so that every renewal times out.
class WriteBlocker {
 public:
  explicit WriteBlocker(const std::string& file) {
    if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("open failed");
    sqlite3_busy_timeout(db_, 5000);
    char* err = nullptr;
    if (sqlite3_exec(db_, "BEGIN EXCLUSIVE", nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error("BEGIN EXCLUSIVE: " + msg);
    }
  }
  ~WriteBlocker() {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
  }
  WriteBlocker(const WriteBlocker&) = delete;
  WriteBlocker& operator=(const WriteBlocker&) = delete;

 private:
  sqlite3* db_ = nullptr;
};

TEST_F(Cli, UnrenewableLeaseStopsEvenAStubbornCommandBeforeTheDeadlineWith70) {
  // A short busy timeout, so that lockkit's renewal attempts fail fast and retry.
  backend_ += "?busy_timeout=100ms";
  const milliseconds ttl{3000};
  std::string pidfile = path("pid");
  auto started = Clock::now();
  auto p = start({"run", "--key", "k", "--ttl", "3s", "--", kChild, "stubborn", pidfile, "30"});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t child = std::stoi(*pids);
  std::optional<Finished> f;
  {
    WriteBlocker blocker(dir_ + "/locks.db");
    // No renewal can succeed from here on (reads still work in WAL mode).
    auto deadline = lease_deadline("k");
    while (!process_gone(child) && Clock::now() - started < seconds(10)) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    auto gone_at = Clock::now();
    EXPECT_LT(gone_at, deadline) << "the command outlived a lease that could not be renewed";
    EXPECT_GT(gone_at - started, ttl / 2) << "stopped long before it had to be";
    f = p->wait(seconds(10));
  }
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 70) << f->err;
  EXPECT_TRUE(one_diagnostic_line(f->err)) << f->err;
  EXPECT_NE(f->err.find("renew"), std::string::npos) << f->err;
}

TEST_F(Cli, StoreThatFailsAtOnceGives69EvenWithWait) {
  backend_ += "?busy_timeout=100ms";
  ASSERT_EQ(lockkit({"list"}).status, 0);  // creates the database
  WriteBlocker blocker(dir_ + "/locks.db");
  Finished f = lockkit({"run", "--key", "k", "--ttl", "1s", "--wait", "30s", "--", "true"});
  EXPECT_EQ(f.status, 69) << f.err;
  EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
  EXPECT_LT(f.elapsed, seconds(2)) << "an unusable store must be reported, not waited for";
}

// --- acquire / status / list / extend / release -----------------------------------------------

TEST_F(Cli, AcquireLeavesTheLockHeldForReleaseAndExtend) {
  Finished a = lockkit({"acquire", "--key", "maint", "--ttl", "30s"});
  ASSERT_EQ(a.status, 0) << a.err;
  std::string token = json_text(a.out, "token");
  long long fence = json_number(a.out, "fence");
  long long expires = json_number(a.out, "expires_at_ms");
  auto now_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_EQ(json_text(a.out, "key"), "maint");
  EXPECT_EQ(token.size(), 32u);
  EXPECT_GT(fence, 0);
  EXPECT_GT(expires, now_ms + 25'000);
  EXPECT_LE(expires, now_ms + 30'000);

  Finished st = lockkit({"status", "--key", "maint", "--json"});
  EXPECT_EQ(st.status, 0);
  EXPECT_NE(st.out.find("\"held\":true"), std::string::npos) << st.out;
  EXPECT_EQ(json_number(st.out, "fence"), fence);
  EXPECT_GT(json_number(st.out, "remaining_ms"), 25'000);
  EXPECT_EQ(st.out.find(token), std::string::npos) << "status must never show the token";
  Finished text = lockkit({"status", "--key", "maint"});
  EXPECT_NE(text.out.find("fence " + std::to_string(fence)), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find(token), std::string::npos);

  EXPECT_EQ(lockkit({"acquire", "--key", "maint", "--ttl", "1s"}).status, 75);
  EXPECT_EQ(lockkit({"extend", "--key", "maint", "--token", token, "--ttl", "1m"}).status, 0);
  Finished extended = lockkit({"status", "--key", "maint", "--json"});
  EXPECT_GT(json_number(extended.out, "remaining_ms"), 55'000) << extended.out;
  EXPECT_EQ(
      lockkit({"extend", "--key", "maint", "--token", std::string(32, '0'), "--ttl", "1m"}).status,
      1);
  EXPECT_EQ(lockkit({"release", "--key", "maint", "--token", std::string(32, '0')}).status, 1);
  EXPECT_EQ(lockkit({"release", "--key", "maint", "--token", token}).status, 0);
  EXPECT_EQ(lockkit({"release", "--key", "maint", "--token", token}).status, 1);
  EXPECT_EQ(lockkit({"extend", "--key", "maint", "--token", token, "--ttl", "1s"}).status, 1);
  Finished after = lockkit({"acquire", "--key", "maint", "--ttl", "1s"});
  EXPECT_EQ(after.status, 0);
  EXPECT_GT(json_number(after.out, "fence"), fence);
}

TEST_F(Cli, ListShowsHeldKeysUnderAPrefixWithoutTokens) {
  std::vector<std::string> tokens;
  for (const char* key : {"jobs/1", "jobs/2", "other"}) {
    Finished a = lockkit({"acquire", "--key", key, "--ttl", "30s"});
    ASSERT_EQ(a.status, 0);
    tokens.push_back(json_text(a.out, "token"));
  }
  Finished json = lockkit({"list", "--prefix", "jobs/", "--json"});
  EXPECT_EQ(json.status, 0);
  EXPECT_EQ(json.out.front(), '[');
  EXPECT_NE(json.out.find("\"key\":\"jobs/1\""), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"key\":\"jobs/2\""), std::string::npos);
  EXPECT_EQ(json.out.find("other"), std::string::npos);
  Finished text = lockkit({"list"});
  EXPECT_NE(text.out.find("other"), std::string::npos) << text.out;
  for (const auto& t : tokens) {
    EXPECT_EQ(json.out.find(t), std::string::npos);
    EXPECT_EQ(text.out.find(t), std::string::npos);
  }
}

TEST_F(Cli, BinaryKeysRoundTripThroughHex) {
  Finished a = lockkit({"acquire", "--key-hex", "00ff6b", "--ttl", "30s"});
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(json_text(a.out, "key_hex"), "00ff6b") << a.out;
  EXPECT_NE(a.out.find("\"key\":\"\\u0000\\ufffdk\""), std::string::npos) << a.out;
  Finished st = lockkit({"status", "--key-hex", "00FF6B", "--json"});
  EXPECT_NE(st.out.find("\"held\":true"), std::string::npos) << st.out;
  Finished other = lockkit({"status", "--key-hex", "00ff6c", "--json"});
  EXPECT_NE(other.out.find("\"held\":false"), std::string::npos) << other.out;
  Finished utf8 = lockkit({"acquire", "--key", "caf\xc3\xa9", "--ttl", "30s"});
  EXPECT_NE(utf8.out.find("\"key\":\"caf\xc3\xa9\""), std::string::npos) << utf8.out;
  EXPECT_EQ(utf8.out.find("key_hex"), std::string::npos);
}

TEST_F(Cli, DefaultBackendIsSqliteUnderXdgStateHome) {
  Finished f = run_process({kLockkit, "acquire", "--key", "k", "--ttl", "30s"},
                           {"LOCKKIT_BACKEND=", "XDG_STATE_HOME=" + dir_ + "/state"}, dir_);
  ASSERT_EQ(f.status, 0) << f.err;
  EXPECT_FALSE(read_file(dir_ + "/state/lockkit/locks.db").empty());
  // A relative XDG_STATE_HOME is ignored (XDG spec): then it is ~/.local/state.
  Finished h = run_process({kLockkit, "acquire", "--key", "k", "--ttl", "30s"},
                           {"LOCKKIT_BACKEND=", "XDG_STATE_HOME=relative", "HOME=" + dir_}, dir_);
  ASSERT_EQ(h.status, 0) << h.err;
  EXPECT_FALSE(read_file(dir_ + "/.local/state/lockkit/locks.db").empty());
  // --backend wins over LOCKKIT_BACKEND.
  Finished g = lockkit({"status", "--key", "k", "--json", "--backend",
                        "sqlite://" + dir_ + "/state/lockkit/locks.db"});
  EXPECT_NE(g.out.find("\"held\":true"), std::string::npos) << g.out;
}

// --- The key in the command's environment -----------------------------------------------------

TEST_F(Cli, KeyInTheEnvironmentIsUnambiguous) {
  // A key with a NUL byte cannot be an environment variable: LOCKKIT_KEY is then unset rather
  // than some escaped text that another key could equal; LOCKKIT_KEY_HEX is always exact.
  struct Case {
    std::vector<std::string> key_args;
    std::string key, key_hex;
  };
  for (const Case& c : std::vector<Case>{{{"--key-hex", "00"}, "<unset>", "00"},
                                         {{"--key", "\\x00"}, "\\x00", "5c783030"},
                                         {{"--key-hex", "6b00ff"}, "<unset>", "6b00ff"},
                                         {{"--key", "caf\xc3\xa9"}, "caf\xc3\xa9", "636166c3a9"}}) {
    std::string out = path("env.txt");
    std::vector<std::string> args = {"run"};
    args.insert(args.end(), c.key_args.begin(), c.key_args.end());
    args.insert(args.end(), {"--ttl", "5s", "--", kChild, "env", out});
    Finished f = run_process(
        [&] {
          args.insert(args.begin(), kLockkit);
          return args;
        }(),
        {"LOCKKIT_BACKEND=" + backend_, "LOCKKIT_KEY=outer"}, dir_);
    ASSERT_EQ(f.status, 0) << f.err;
    std::istringstream in(read_file(out));
    std::string key, token, fence, key_hex;
    std::getline(in, key);
    std::getline(in, token);
    std::getline(in, fence);
    std::getline(in, key_hex);
    EXPECT_EQ(key, c.key) << c.key_hex;
    EXPECT_EQ(key_hex, c.key_hex);
  }
}

// --- Stopped commands and what the command leaves behind ---------------------------------------

TEST_F(Cli, StoppedCommandIsNotRenewedForAndIsEndedBeforeTheLeaseWith70) {
  // SIGSTOP (unlike Ctrl-Z) is not undone by lockkit: a stopped command makes no progress, so
  // its lease is not renewed, and it is ended like any command whose lease runs out.
  std::string pidfile = path("pid");
  auto p = start({"run", "--key", "k", "--ttl", "2s", "--", kChild, "sleep", pidfile, "30"});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t child = std::stoi(*pids);
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  auto stopped_at = Clock::now();
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f) << "a stopped command kept its lease renewed";
  EXPECT_EQ(f->status, 70) << f->err;
  EXPECT_TRUE(process_gone(child));
  EXPECT_LT(Clock::now() - stopped_at, milliseconds(2000) + kSchedulingSlack);
  EXPECT_TRUE(one_diagnostic_line(f->err)) << f->err;
  EXPECT_NE(f->err.find("stopped (signal 19)"), std::string::npos) << f->err;
  EXPECT_FALSE(held("k"));
}

TEST_F(Cli, CommandContinuedInTimeKeepsItsLease) {
  std::string pidfile = path("pid");
  auto p = start({"run", "--key", "k", "--ttl", "1500ms", "--", kChild, "sleep", pidfile, "2"});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t child = std::stoi(*pids);
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  std::this_thread::sleep_for(milliseconds(200));  // stopped for a while, not past the schedule
  ASSERT_EQ(::kill(child, SIGCONT), 0);
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 0) << f->err;
  EXPECT_TRUE(f->err.empty()) << f->err;
}

TEST_F(Cli, LeaseIsKeptUntilTheCommandsProcessGroupIsEmpty) {
  // The shell exits at once; its background job is still working on the resource.
  std::string pidfile = path("background");
  auto p = start({"run", "--key", "k", "--ttl", "1s", "--", "/bin/sh", "-c",
                  "\"$0\" sleep \"$1\" 1.5 & exit 3", kChild, pidfile});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t background = std::stoi(*pids);
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_TRUE(process_gone(background)) << "the lock was released while the job still ran";
  EXPECT_EQ(f->status, 3) << f->err;  // the command's own status
  EXPECT_TRUE(f->err.empty()) << f->err;
  EXPECT_GE(f->elapsed, milliseconds(1500));  // past the ttl: renewed while waiting
  EXPECT_FALSE(held("k"));
}

TEST_F(Cli, SignalsReachWhatTheCommandLeftBehind) {
  std::string pidfile = path("background");
  auto p = start({"run", "--key", "k", "--ttl", "5s", "--", "/bin/sh", "-c",
                  "\"$0\" sleep \"$1\" 30 & exit 0", kChild, pidfile});
  auto pids = await_file(pidfile, seconds(10));
  ASSERT_TRUE(pids);
  pid_t background = std::stoi(*pids);
  EXPECT_FALSE(p->wait(milliseconds(300))) << "lockkit must wait for the background job";
  EXPECT_TRUE(held("k"));
  p->signal(SIGTERM);
  auto f = p->wait(seconds(10));
  ASSERT_TRUE(f);
  EXPECT_FALSE(f->signaled);
  EXPECT_TRUE(process_gone(background));
  EXPECT_FALSE(held("k"));
}

// --- Secrets off the command line --------------------------------------------------------------

TEST_F(Cli, TokenAndBackendCanComeFromFilesStdinAndTheEnvironment) {
  std::string url_file = write("backend.url", backend_ + "\n");
  // --backend-file FILE, and no LOCKKIT_BACKEND at all.
  Finished a =
      run_process({kLockkit, "acquire", "--key", "k", "--ttl", "30s", "--backend-file", url_file},
                  {"LOCKKIT_BACKEND=", "XDG_STATE_HOME=" + dir_ + "/state"}, dir_);
  ASSERT_EQ(a.status, 0) << a.err;
  std::string token = json_text(a.out, "token");
  ASSERT_TRUE(is_token(token)) << a.out;
  // --backend-file - reads stdin.
  Finished st = run_process({kLockkit, "status", "--key", "k", "--json", "--backend-file", "-"},
                            {"LOCKKIT_BACKEND=", "XDG_STATE_HOME=" + dir_ + "/state"}, dir_,
                            seconds(30), Stdio{url_file});
  EXPECT_NE(st.out.find("\"held\":true"), std::string::npos) << st.out << st.err;
  // extend: --token-file FILE; release: LOCKKIT_TOKEN.
  std::string token_file = write("token", token + "\n");
  Finished e = lockkit({"extend", "--key", "k", "--ttl", "1m", "--token-file", token_file});
  EXPECT_EQ(e.status, 0) << e.err;
  Finished wrong =
      lockkit_with({"release", "--key", "k"}, {}, {"LOCKKIT_TOKEN=" + std::string(32, '0')});
  EXPECT_EQ(wrong.status, 1) << wrong.err;
  Finished r = lockkit_with({"release", "--key", "k"}, {}, {"LOCKKIT_TOKEN=" + token});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(held("k"));
  // --token-file - reads stdin; --token wins over LOCKKIT_TOKEN.
  Finished b = lockkit({"acquire", "--key", "k", "--ttl", "30s"});
  std::string token2 = json_text(b.out, "token");
  write("token2", token2);
  EXPECT_EQ(lockkit_with({"extend", "--key", "k", "--ttl", "1m", "--token", token2}, {},
                         {"LOCKKIT_TOKEN=" + std::string(32, '0')})
                .status,
            0);
  Finished r2 = lockkit_with({"release", "--key", "k", "--token-file", "-"}, Stdio{path("token2")});
  EXPECT_EQ(r2.status, 0) << r2.err;
  EXPECT_FALSE(held("k"));
  // Missing: one line naming all three ways.
  Finished none = lockkit_with({"release", "--key", "k"}, {}, {"LOCKKIT_TOKEN="});
  EXPECT_EQ(none.status, 64);
  EXPECT_NE(none.err.find("LOCKKIT_TOKEN"), std::string::npos) << none.err;
}

// --- acquire never leaves a lease behind that nobody can release -------------------------------

TEST_F(Cli, AcquireThatCannotWriteItsTokenReleasesTheLeaseAndExits74) {
  {
    int full = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
    ASSERT_GE(full, 0);
    Finished f = lockkit_with({"acquire", "--key", "k", "--ttl", "1m"}, Stdio{"/dev/null", full});
    ::close(full);
    EXPECT_EQ(f.status, 74) << f.err;
    EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
    EXPECT_FALSE(held("k")) << "a lease whose token went nowhere was left held";
  }
  {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    ::close(fds[0]);  // nobody will ever read: EPIPE (and SIGPIPE) on write
    Finished f = lockkit_with({"acquire", "--key", "k", "--ttl", "1m"}, Stdio{"/dev/null", fds[1]});
    ::close(fds[1]);
    EXPECT_FALSE(f.signaled) << "died of SIGPIPE with the lease held";
    EXPECT_EQ(f.status, 74) << f.err;
    EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
    EXPECT_FALSE(held("k"));
  }
}

TEST_F(Cli, AcquireInterruptedWhileWaitingExits130AndHoldsNothing) {
  Finished holder = lockkit({"acquire", "--key", "k", "--ttl", "30s"});
  ASSERT_EQ(holder.status, 0);
  auto waiter = start({"acquire", "--key", "k", "--ttl", "30s", "--wait", "20s"});
  ASSERT_TRUE(await_signal_blocked(waiter->pid(), SIGINT, seconds(10)));
  waiter->signal(SIGINT);
  auto f = waiter->wait(seconds(5));
  ASSERT_TRUE(f) << "SIGINT did not end the wait";
  EXPECT_FALSE(f->signaled);
  EXPECT_EQ(f->status, 128 + SIGINT) << f->err;
  EXPECT_TRUE(f->out.empty()) << f->out;
  EXPECT_TRUE(one_diagnostic_line(f->err)) << f->err;
  EXPECT_EQ(lockkit({"release", "--key", "k", "--token", json_text(holder.out, "token")}).status,
            0);
  EXPECT_FALSE(held("k"));
}

// --- Waiting forever, the busy status, short options -------------------------------------------

TEST_F(Cli, WaitForeverWaitsUntilTheKeyIsFreeAndShowsTheStatusLine) {
  Finished held_lock = lockkit({"acquire", "--key", "k", "--ttl", "1500ms"});
  ASSERT_EQ(held_lock.status, 0) << held_lock.err;
  Finished f =
      run_process({"/usr/bin/script", "-qec",
                   "'" + kLockkit + "' run --key k --ttl 5s --wait forever -- '" + kChild + "' tty",
                   "/dev/null"},
                  env(), dir_, seconds(20));
  EXPECT_EQ(f.status, 0) << f.out << f.err;
  EXPECT_NE(f.out.find("lockkit: waiting for k (held, expires in "), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("foreground"), std::string::npos) << f.out;
  Finished again = lockkit({"acquire", "--key", "k", "--ttl", "1500ms"});
  ASSERT_EQ(again.status, 0);
  Finished acquired = lockkit({"acquire", "-k", "k", "-t", "1s", "-w", "forever"});
  EXPECT_EQ(acquired.status, 0) << acquired.err;
  EXPECT_GT(json_number(acquired.out, "fence"), json_number(again.out, "fence"));
}

TEST_F(Cli, ConflictExitCodeReplaces75) {
  ASSERT_EQ(lockkit({"acquire", "--key", "k", "--ttl", "30s"}).status, 0);
  EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "1s", "--", "true"}).status, 75);
  EXPECT_EQ(lockkit({"run", "--key", "k", "--ttl", "1s", "--conflict-exit-code", "3", "--", "true"})
                .status,
            3);
  EXPECT_EQ(lockkit({"acquire", "--key", "k", "--ttl", "1s", "--conflict-exit-code", "0"}).status,
            0);
  Finished waited = lockkit(
      {"acquire", "--key", "k", "--ttl", "1s", "--wait", "100ms", "--conflict-exit-code", "9"});
  EXPECT_EQ(waited.status, 9);
  EXPECT_TRUE(waited.out.empty());
}

TEST_F(Cli, ShortOptionsWork) {
  std::string url = backend_;
  Finished a = run_process({kLockkit, "-b", url, "acquire", "-k", "short", "-t", "30s", "-w", "1s"},
                           {"LOCKKIT_BACKEND="}, dir_);
  ASSERT_EQ(a.status, 0) << a.err;
  Finished r = run_process({kLockkit, "run", "-b", url, "-k", "other", "-t", "5s", "--", "true"},
                           {"LOCKKIT_BACKEND="}, dir_);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(held("short"));
  Finished e = lockkit({"extend", "-k", "short", "-t", "1m", "--token", json_text(a.out, "token")});
  EXPECT_EQ(e.status, 0) << e.err;
}

#ifdef LOCKKIT_CLI_TEST_REDIS

// --- A network store: drift margin, passwords, a store that hangs ------------------------------

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(Cli, ExtendReportsTheSameConservativeExpiryAsAcquire) {
  backend_ = RedisServer::shared().url();
  const std::int64_t week = 7LL * 24 * 3600 * 1000, drift = week / 100 + 2;
  std::string key = "cli-drift-" + std::to_string(::getpid());
  auto before = epoch_ms();
  Finished a = lockkit({"acquire", "--key", key, "--ttl", "7d"});
  auto after = epoch_ms();
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_LE(json_number(a.out, "expires_at_ms"), after + week - drift);
  EXPECT_GE(json_number(a.out, "expires_at_ms"), before + week - drift - 50);
  before = epoch_ms();
  Finished e = lockkit(
      {"extend", "--key", key, "--ttl", "7d", "--json", "--token", json_text(a.out, "token")});
  after = epoch_ms();
  ASSERT_EQ(e.status, 0) << e.err;
  // request start + ttl - drift, like acquire: never later than the store's own expiry.
  EXPECT_LE(json_number(e.out, "expires_at_ms"), after + week - drift) << e.out;
  EXPECT_GE(json_number(e.out, "expires_at_ms"), before + week - drift - 50) << e.out;
  EXPECT_EQ(lockkit({"release", "--key", key, "--token", json_text(a.out, "token")}).status, 0);
}

TEST_F(Cli, PasswordFromABackendFileAndAWrongPasswordGives77) {
  RedisServer server({"--requirepass", "s3cret-pw"});
  std::string good =
      write("good.url", "redis://:s3cret-pw@127.0.0.1:" + std::to_string(server.port()) + "\n");
  std::string bad =
      write("bad.url", "redis://:wrong-pw@127.0.0.1:" + std::to_string(server.port()) + "\n");
  Finished ok = lockkit({"status", "--key", "k", "--backend-file", good});
  EXPECT_EQ(ok.status, 0) << ok.err;
  Finished denied = lockkit({"status", "--key", "k", "--backend-file", bad});
  EXPECT_EQ(denied.status, 77) << denied.err;
  EXPECT_TRUE(one_diagnostic_line(denied.err)) << denied.err;
  EXPECT_EQ(denied.err.find("wrong-pw"), std::string::npos) << denied.err;
  Finished env_denied = lockkit_with(
      {"run", "--key", "k", "--ttl", "1s", "--", "true"}, {},
      {"LOCKKIT_BACKEND=redis://:wrong-pw@127.0.0.1:" + std::to_string(server.port())});
  EXPECT_EQ(env_denied.status, 77) << env_denied.err;
  EXPECT_EQ(env_denied.err.find("wrong-pw"), std::string::npos) << env_denied.err;
}

TEST_F(Cli, RedissBackendRunsOverTlsAndARejectedCertificateGives77) {
  RedisServer server({}, RedisTls::kOn);
  Finished ok = lockkit({"run", "--backend", server.tls_url(), "--key", "tls", "--ttl", "5s", "--",
                         "sh", "-c", "test -n \"$LOCKKIT_FENCE\""});
  EXPECT_EQ(ok.status, 0) << ok.err;
  Finished rejected = lockkit({"status", "--key", "tls", "--backend",
                               "rediss://127.0.0.1:" + std::to_string(server.tls_port()) +
                                   "?tls_ca_file=" + TestPki::shared().other_ca});
  EXPECT_EQ(rejected.status, 77) << rejected.err;
  EXPECT_TRUE(one_diagnostic_line(rejected.err)) << rejected.err;
  EXPECT_NE(rejected.err.find("certificate"), std::string::npos) << rejected.err;
}

// Runs `lockkit run` on a redis behind a proxy that goes silent once the command has started,
// and returns how long lockkit took to exit after the command was gone.
struct HangResult {
  Finished finished;
  milliseconds exit_after_command{0};
};

TEST_F(Cli, HangingStoreDelaysNeitherTheStopNorTheExit) {
  // A command timeout much longer than the ttl: lockkit's own deadlines must decide, not it.
  auto scenario = [&](const std::string& seconds_to_sleep, bool alarm_blocked = false) {
    FaultProxy proxy(RedisServer::shared().port());
    backend_ = "redis://127.0.0.1:" + std::to_string(proxy.port()) + "?command_timeout=5s";
    std::string name = seconds_to_sleep + (alarm_blocked ? "-no-alarm" : "");
    std::string key = "cli-hang-" + std::to_string(::getpid()) + "-" + name;
    std::string pidfile = path("pid" + name);
    std::vector<std::string> args = {"run", "--key", key,     "--ttl", "3s",
                                     "--",  kChild,  "sleep", pidfile, seconds_to_sleep};
    if (alarm_blocked) {
      // lockkit itself exec'ed with SIGALRM blocked and ignored.
      args.insert(args.begin(), {"no-alarm", kLockkit});
      args.insert(args.begin(), kChild);
    } else {
      args.insert(args.begin(), kLockkit);
    }
    auto p = std::make_unique<Process>(args, env(), dir_);
    auto pids = await_file(pidfile, seconds(10));
    EXPECT_TRUE(pids);
    if (!pids) return HangResult{};
    proxy.set_silent(true);  // from now on the store answers nothing
    pid_t child = std::stoi(*pids);
    while (!process_gone(child) && p->wait(milliseconds(1)) == std::nullopt) {
    }
    auto gone = Clock::now();
    auto f = p->wait(seconds(20));
    EXPECT_TRUE(f);
    if (!f) return HangResult{};
    return HangResult{*f, std::chrono::duration_cast<milliseconds>(Clock::now() - gone)};
  };
  // The lease cannot be renewed: the command is stopped before the lease ends, and lockkit
  // exits right after it, with the real reason.
  HangResult lost = scenario("30");
  EXPECT_EQ(lost.finished.status, 70) << lost.finished.err;
  EXPECT_LT(lost.exit_after_command, kSchedulingSlack);
  EXPECT_TRUE(one_diagnostic_line(lost.finished.err)) << lost.finished.err;
  EXPECT_NE(lost.finished.err.find("has not answered a renewal for"), std::string::npos)
      << lost.finished.err;
  EXPECT_EQ(lost.finished.err.find("()"), std::string::npos) << lost.finished.err;
  // The command ends by itself while a renewal hangs: lockkit gives up on the release when the
  // lease ends by itself, long before the store's command timeout would.
  HangResult ended = scenario("1.5");
  EXPECT_EQ(ended.finished.status, 0) << ended.finished.err;
  EXPECT_LT(ended.exit_after_command, milliseconds(1500) + kSchedulingSlack);
  EXPECT_TRUE(one_diagnostic_line(ended.finished.err)) << ended.finished.err;
  EXPECT_NE(ended.finished.err.find("did not confirm the release"), std::string::npos)
      << ended.finished.err;
  // The same when lockkit started with SIGALRM blocked and ignored (it bounds the release).
  HangResult blocked = scenario("1.5", true);
  EXPECT_EQ(blocked.finished.status, 0) << blocked.finished.err;
  EXPECT_LT(blocked.exit_after_command, milliseconds(1500) + kSchedulingSlack);
  EXPECT_NE(blocked.finished.err.find("did not confirm the release"), std::string::npos)
      << blocked.finished.err;
}

TEST_F(Cli, RedlockBackendOverThreeServers) {
  RedisServer a, b, c;
  backend_ = "redlock://127.0.0.1:" + std::to_string(a.port()) +
             ",127.0.0.1:" + std::to_string(b.port()) + ",127.0.0.1:" + std::to_string(c.port());
  Finished ok = lockkit(
      {"run", "--key", "rl", "--ttl", "5s", "--", "sh", "-c", "test -n \"$LOCKKIT_FENCE\""});
  EXPECT_EQ(ok.status, 0) << ok.err;
  // The first process recorded a 5 s ttl on the fresh nodes and, before it exited, their runs:
  // this one counts every node at once, without waiting out a lock-delay.
  Finished held = lockkit({"acquire", "--key", "rl2", "--ttl", "30s"});
  ASSERT_EQ(held.status, 0) << held.err;
  Finished busy = lockkit({"acquire", "--key", "rl2", "--ttl", "30s"});
  EXPECT_NE(busy.status, 0) << "a second holder through another process";
  EXPECT_EQ(lockkit({"release", "--key", "rl2", "--token", json_text(held.out, "token")}).status,
            0);
  Finished bad = lockkit({"status", "--key", "k", "--backend", "redlock://127.0.0.1:0"});
  EXPECT_EQ(bad.status, 64) << bad.err;
  EXPECT_NE(lockkit({"--help"}).out.find("redlock://"), std::string::npos) << "not in the help";
}

#endif  // LOCKKIT_CLI_TEST_REDIS

// --- Backend modules ---------------------------------------------------------------------------

// The network backends' client libraries (libpq brings OpenSSL, Kerberos, LDAP, GnuTLS...) are
// modules: a command on sqlite:// or noop: must not pay for loading them.
TEST_F(Cli, SqliteAndNoopLoadNoNetworkClientLibrary) {
  for (const std::string& backend : {backend_, std::string("noop:")}) {
    // The command's parent is lockkit itself (no shell in between): its mappings are lockkit's.
    Finished f = lockkit({"run", "--backend", backend, "--key", "k", "--ttl", "5s", "--", "sh",
                          "-c", "cat /proc/$PPID/maps"});
    ASSERT_EQ(f.status, 0) << f.err;
    EXPECT_NE(f.out.find("libc.so"), std::string::npos) << f.out;
    for (const char* lib : {"libpq", "libhiredis", "libssl", "libcrypto", "libkrb5", "libldap",
                            "libgnutls", "lockkit-redis", "lockkit-postgres"}) {
      EXPECT_EQ(f.out.find(lib), std::string::npos) << backend << " loaded " << lib;
    }
  }
}

// Every scheme the tool knows is listed, modules included, when the scheme is unknown.
TEST_F(Cli, UnknownSchemeListsTheModulesSchemesToo) {
  Finished f = lockkit({"status", "--key", "k", "--backend", "nosuchscheme://x"});
  EXPECT_EQ(f.status, 64) << f.err;
  EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
  std::vector<std::string> schemes = {"sqlite:", "memory:", "noop:"};
#ifdef LOCKKIT_CLI_TEST_REDIS
  schemes.push_back("redis:");
#endif
#ifdef LOCKKIT_CLI_TEST_POSTGRES
  schemes.push_back("postgres:");
  schemes.push_back("postgresql:");
#endif
  for (const auto& scheme : schemes) {
    EXPECT_NE(f.err.find(" " + scheme), std::string::npos) << scheme << " missing: " << f.err;
  }
}

#if defined(LOCKKIT_CLI_TEST_REDIS) || defined(LOCKKIT_CLI_TEST_POSTGRES)
// Nothing listens on port 1 of the loopback: a loaded module connects and is refused (69),
// where a tool without it would call the scheme unknown (64).
std::vector<std::string> module_urls() {
  std::vector<std::string> urls;
#ifdef LOCKKIT_CLI_TEST_REDIS
  urls.push_back("redis://127.0.0.1:1");
#endif
#ifdef LOCKKIT_CLI_TEST_POSTGRES
  urls.push_back("postgres://lockkit@127.0.0.1:1/lockkit");
  urls.push_back("postgresql://lockkit@127.0.0.1:1/lockkit");
#endif
  return urls;
}

TEST_F(Cli, NetworkUrlsLoadTheirModuleOnFirstUse) {
  for (const std::string& url : module_urls()) {
    Finished f = lockkit({"status", "--key", "k", "--backend", url});
    EXPECT_EQ(f.status, 69) << url << ": " << f.err;
    EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
    EXPECT_EQ(f.err.find("unknown scheme"), std::string::npos) << f.err;
    EXPECT_EQ(f.err.find("module"), std::string::npos) << f.err;
  }
}

// The manual (generated from --help) says which modules there are and where they live.
TEST_F(Cli, HelpListsTheModulesInItsFilesSection) {
  Finished f = lockkit({"--help"});
  ASSERT_EQ(f.status, 0) << f.err;
  auto files = f.out.find("\nFiles:\n");
  ASSERT_NE(files, std::string::npos) << f.out;
#ifdef LOCKKIT_CLI_TEST_REDIS
  EXPECT_NE(f.out.find("lockkit-redis.so", files), std::string::npos) << f.out;
#endif
#ifdef LOCKKIT_CLI_TEST_POSTGRES
  EXPECT_NE(f.out.find("lockkit-postgres.so", files), std::string::npos) << f.out;
#endif
}

// A tool whose modules are not where it looks (here: a copy of the binary alone in a
// directory) says which file it could not load, with the status of an unavailable service.
TEST_F(Cli, MissingModuleGives69NamingTheFile) {
  std::string bin = path("bin");
  ASSERT_EQ(mkdir(bin.c_str(), 0700), 0);
  std::string copy = bin + "/lockkit";
  {
    std::ifstream in(kLockkit, std::ios::binary);
    std::ofstream out(copy, std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(chmod(copy.c_str(), 0700), 0);
  for (const std::string& url : module_urls()) {
    Finished f = run_process({copy, "status", "--key", "k", "--backend", url}, env(), dir_);
    EXPECT_EQ(f.status, 69) << url << ": " << f.err;
    EXPECT_TRUE(one_diagnostic_line(f.err)) << f.err;
    EXPECT_NE(f.err.find("cannot load its module"), std::string::npos) << f.err;
    EXPECT_NE(f.err.find(".so"), std::string::npos) << f.err;
  }
  // What needs no module still works.
  Finished f = run_process({copy, "run", "--key", "k", "--ttl", "5s", "--", "true"}, env(), dir_);
  EXPECT_EQ(f.status, 0) << f.err;
}
#endif

}  // namespace
}  // namespace lockkit::testing
