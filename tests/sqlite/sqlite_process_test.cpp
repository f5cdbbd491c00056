// SPDX-License-Identifier: MIT
// Several processes (fork + exec, not threads) sharing one sqlite:// file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/sqlite.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

// A started worker process; `out` reads its stdout, `in` writes its stdin (when piped).
struct Child {
  pid_t pid = -1;
  int out = -1;
  int in = -1;
};

Child spawn(std::vector<std::string> args, bool pipe_stdout = false, bool pipe_stdin = false) {
  args.insert(args.begin(), LOCKKIT_SQLITE_WORKER);
  int out[2] = {-1, -1};
  int in[2] = {-1, -1};
  if (pipe_stdout && ::pipe2(out, O_CLOEXEC) != 0) return {};
  if (pipe_stdin && ::pipe2(in, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    if (pipe_stdout) ::dup2(out[1], STDOUT_FILENO);
    if (pipe_stdin) ::dup2(in[0], STDIN_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pipe_stdout) ::close(out[1]);
  if (pipe_stdin) ::close(in[0]);
  return Child{pid, out[0], in[1]};
}

// Waits for `child`; returns its exit status, or 128 + signal.
int wait_for(const Child& child) {
  int status = wait_exit(child.pid);
  if (child.out >= 0) ::close(child.out);
  return status;
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  return line;
}

long read_number(const std::string& path) {
  std::ifstream in(path);
  long n = -1;
  in >> n;
  return n;
}

TEST(SqliteProcesses, NeverOverlapAndFencesIncrease) {
  TempDir dir;
  const std::string url = "sqlite://" + dir.file("locks.db") + "?busy_timeout=10s";
  constexpr int kProcesses = 4;
  constexpr int kRounds = 100;
  std::vector<Child> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(spawn(
        {"contend", url, dir.path().string(), std::to_string(kRounds), "shared/key"}, true, true));
    ASSERT_GT(children.back().pid, 0);
  }
  for (auto& child : children) ASSERT_EQ(read_line(child.out), "ready");
  for (auto& child : children) ::close(child.in);  // everyone starts at once
  long refused = 0;
  for (auto& child : children) {
    std::string line = read_line(child.out);
    if (line.rfind("refused ", 0) == 0) refused += std::stol(line.substr(8));
    // 2: two holders at once; 3: a fence did not increase; 4: gave up waiting.
    EXPECT_EQ(wait_for(child), 0) << "worker " << child.pid;
  }
  EXPECT_GT(refused, 0) << "the processes never contended: the test proved nothing";
  EXPECT_EQ(read_number(dir.file("counter")), kProcesses * kRounds) << "lost updates";
  auto api = make_sqlite_lock_api({.path = dir.file("locks.db")});
  auto lock = api->try_acquire("shared/key", 10s);
  ASSERT_TRUE(lock) << "the key was left held";
  EXPECT_GT(static_cast<long>(lock->fence()), read_number(dir.file("fence")));
}

TEST(SqliteProcesses, RaceToCreateTheFileHasNoLosers) {
  // Several processes opening a file that does not exist yet: one creates the schema and turns
  // on WAL mode while the others read it; none may fail.
  // The race window is narrow: many short rounds (a mutant without the retry failed 1 run in 10).
  constexpr int kRounds = 10;
  constexpr int kProcesses = 6;
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir;
    const std::string url = "sqlite://" + dir.file("locks.db");
    std::vector<Child> children;
    for (int i = 0; i < kProcesses; ++i) {
      children.push_back(spawn({"open", url}, false, true));
      ASSERT_GT(children.back().pid, 0);
    }
    for (auto& child : children) ::close(child.in);  // all open at once
    for (auto& child : children) EXPECT_EQ(wait_for(child), 0) << "round " << round;
  }
}

TEST(SqliteProcesses, KilledHolderFreesKeyWhenItsLeaseExpires) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  constexpr auto kTtl = 2s;
  auto api = make_sqlite_lock_api({.path = path});
  (void)api->status("k");  // opened first: after the kill, no delay
  Child holder =
      spawn({"hold", "sqlite://" + path, "k", std::to_string(kTtl.count() * 1000)}, true);
  ASSERT_GT(holder.pid, 0);
  std::string fence_text = read_line(holder.out);
  auto acquired_by = std::chrono::steady_clock::now();  // the holder took it before this
  ASSERT_FALSE(fence_text.empty()) << "the holder did not start";
  ::kill(holder.pid, SIGKILL);
  EXPECT_EQ(wait_for(holder), 128 + SIGKILL);

  bool free_at_once = api->try_acquire("k", 10s).has_value();
  if (std::chrono::steady_clock::now() - acquired_by < kTtl) {
    EXPECT_FALSE(free_at_once) << "the lease ended with its process, not its TTL";
  }
  auto lock =
      api->acquire("k", 10s, {.max_wait = kTtl + 5s, .initial_delay = 5ms, .max_delay = 20ms});
  auto waited = std::chrono::steady_clock::now() - acquired_by;
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), std::stoull(fence_text));
  EXPECT_LT(waited, kTtl + 2s) << "the key stayed held long after the lease's TTL";
}

TEST(SqliteProcesses, WriterKilledInsideATransactionBlocksNobody) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  auto api = make_sqlite_lock_api({.path = path, .busy_timeout = 300ms});
  (void)api->status("k");  // the first call creates the schema
  Child staller = spawn({"stall", path}, true);
  ASSERT_GT(staller.pid, 0);
  ASSERT_EQ(read_line(staller.out), "ready");
  try {
    (void)api->try_acquire("k", 10s);
    ADD_FAILURE() << "acquired while another process held the write lock";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
  }
  ::kill(staller.pid, SIGKILL);
  EXPECT_EQ(wait_for(staller), 128 + SIGKILL);
  // The kernel dropped the dead process's file locks; its uncommitted row never existed.
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->fence(), 1u);
}

// Runs the worker with `args` and returns the first line it prints; fails the test unless it
// exits 0. Exit 77 means a namespace could not be made (the reason is on stderr): that is a
// failure too, never a skip.
std::string run_worker(const std::vector<std::string>& args) {
  Child c = spawn(args, true);
  EXPECT_GT(c.pid, 0);
  if (c.pid <= 0) return {};
  std::string line = read_line(c.out);
  int status = wait_for(c);
  EXPECT_EQ(status, 0) << "worker " << args[0] << " failed (77: cannot set up its namespace; "
                       << "these tests need root): " << line;
  return line;
}

std::uint64_t fence_of(const std::string& line) {
  EXPECT_EQ(line.rfind("got ", 0), 0u) << line;
  return line.rfind("got ", 0) == 0 ? std::stoull(line.substr(4)) : 0;
}

std::uintmax_t wal_size(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path + "-wal", ec);
  return ec ? 0 : size;
}

TEST(SqliteProcesses, CleanExitLeavesTheWalAndTheNextProcessReadsIt) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  const std::string url = "sqlite://" + path;
  // Leaves a lease held: exits without closing anything.
  const std::uint64_t held = fence_of(run_worker({"take", url, "held", "60000"}));
  // Takes and releases another key and exits cleanly: the last connection to close.
  const std::uint64_t other = fence_of(run_worker({"try", url, "other", "10000"}));
  EXPECT_EQ(other, held + 1);
  // Closing did not checkpoint: the commits are only in the WAL (the database file holds
  // none of them until a checkpoint).
  EXPECT_GT(wal_size(path), 0u) << "the close checkpointed the WAL and cut it";
  // A new process reads them from the WAL: the lease is live, the fence counter goes on.
  EXPECT_EQ(run_worker({"try", url, "held", "10000"}), "busy") << "the lease in the WAL was lost";
  EXPECT_EQ(fence_of(run_worker({"try", url, "other", "10000"})), held + 2);
  auto api = make_sqlite_lock_api({.path = path});
  auto info = api->status("held");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fence, held);
}

TEST(SqliteProcesses, KilledHoldersLoseNoGrantedLease) {
  TempDir dir;
  const std::string path = dir.file("locks.db");
  const std::string url = "sqlite://" + path;
  constexpr int kHolders = 8;
  std::uint64_t last = 0;
  for (int i = 0; i < kHolders; ++i) {
    // Killed right after it reported its grant: nothing of it ran after the commit.
    const std::string key = "k" + std::to_string(i);
    Child holder = spawn({"hold", url, key, "60000"}, true);
    ASSERT_GT(holder.pid, 0);
    std::string fence_text = read_line(holder.out);
    ::kill(holder.pid, SIGKILL);
    EXPECT_EQ(wait_for(holder), 128 + SIGKILL);
    ASSERT_FALSE(fence_text.empty()) << "holder " << i << " did not start";
    const std::uint64_t fence = std::stoull(fence_text);
    EXPECT_GT(fence, last);
    last = fence;
    EXPECT_EQ(run_worker({"try", url, key, "10000"}), "busy") << "holder " << i << "'s lease";
  }
  auto api = make_sqlite_lock_api({.path = path});
  for (int i = 0; i < kHolders; ++i) {
    EXPECT_TRUE(api->status("k" + std::to_string(i))) << "holder " << i << "'s lease was lost";
  }
  auto lock = api->try_acquire("new", 10s);
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), last);
}

TEST(SqliteProcesses, WalStaysBoundedAcrossShortLivedProcesses) {
  // Each process's first open re-reads the WAL: the processes' closes must keep it short
  // although none of them checkpoints a short one.
  TempDir dir;
  const std::string path = dir.file("locks.db");
  const std::string url = "sqlite://" + path;
  constexpr int kProcesses = 60;  // ~3 frames each: past the 128-frame cut
  std::uintmax_t largest = 0;
  std::uintmax_t smallest_after_growth = ~std::uintmax_t{0};
  std::uint64_t last = 0;
  for (int i = 0; i < kProcesses; ++i) {
    std::uint64_t fence = fence_of(run_worker({"try", url, "k", "10000"}));
    EXPECT_EQ(fence, last + 1) << "process " << i;
    last = fence;
    std::uintmax_t size = wal_size(path);
    largest = std::max(largest, size);
    if (largest > 0 && size < largest)
      smallest_after_growth = std::min(smallest_after_growth, size);
  }
  EXPECT_LE(largest, 140u * 4120u + 32u) << "the WAL grew past the close's cut";
  if (largest > 0) {
    EXPECT_EQ(smallest_after_growth, 0u) << "no close cut the WAL";
  }
}

TEST(SqliteNamespaces, TimeNamespaceCannotTakeALiveLease) {
  TempDir dir;
  const std::string url = "sqlite://" + dir.file("locks.db");
  auto api = lockkit::open(url);
  auto held = api->try_acquire("k", 60s);
  ASSERT_TRUE(held);
  // CLOCK_MONOTONIC there reads 100000 s ahead: every lease would look long expired.
  EXPECT_EQ(run_worker({"timens", "100000", "try", url, "k", "10000"}), "busy")
      << "a process in a time namespace took a live lease";
  // And its own leases expire on the host's clock: 5 s, not 100000 s + 5 s.
  fence_of(run_worker({"timens", "100000", "take", url, "n", "5000"}));
  auto info = api->status("n");
  ASSERT_TRUE(info) << "the namespaced worker's lease is not seen as live";
  EXPECT_LE(info->remaining, 5000ms);
  EXPECT_GT(info->remaining, 0ms);
  // A namespace behind the host: its leases must not look expired to the host. (Its clock
  // must stay positive: it reads about 1 s there.)
  long behind = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count()) -
                1;
  fence_of(run_worker({"timens", std::to_string(-behind), "take", url, "m", "60000"}));
  EXPECT_FALSE(api->try_acquire("m", 10s)) << "the host took a lease from a namespace behind it";
}

TEST(SqliteNamespaces, AnotherBootIdViewNeverWipesLiveLeasesAndFencesNeverGoBack) {
  TempDir dir;
  const std::string url = "sqlite://" + dir.file("locks.db");
  const std::string fake = dir.file("boot_id");
  { std::ofstream(fake) << "0badb007-0000-4000-8000-00000000f00d\n"; }
  auto api = lockkit::open(url);
  auto held = api->try_acquire("k", 60s);
  ASSERT_TRUE(held);
  const std::uint64_t first = held->fence();
  std::uint64_t last = first;
  // The two views take turns, as a container and its host would.
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(run_worker({"bootid", fake, "try", url, "k", "10000"}), "busy")
        << "round " << round << ": another boot id view took (or wiped) a live lease";
    std::string key = "view" + std::to_string(round);
    std::uint64_t f = fence_of(run_worker({"bootid", fake, "take", url, key, "60000"}));
    EXPECT_GT(f, last) << "round " << round;
    last = f;
    auto host = lockkit::open(url);  // a new open in this view, as a new process would
    EXPECT_TRUE(host->status("k")) << "round " << round << ": our live lease was wiped";
    EXPECT_TRUE(host->status(key)) << "round " << round << ": the other view's lease was wiped";
    auto mine = host->try_acquire("host" + std::to_string(round), 60s);
    ASSERT_TRUE(mine);
    EXPECT_GT(mine->fence(), last) << "round " << round;
    last = mine->fence();
  }
  // One jump of 2^32 for the new boot id, not one per open from alternating views.
  EXPECT_LT(last - first, 2 * (std::uint64_t{1} << 32));
  EXPECT_TRUE(held->release());
}

TEST(SqliteNamespaces, UnreadableBootIdIsAnError) {
  TempDir dir;
  const std::string url = "sqlite://" + dir.file("locks.db");
  const std::string empty = dir.file("empty");
  { std::ofstream(empty) << ""; }
  Child c = spawn({"bootid", empty, "try", url, "k", "10000"}, true);
  ASSERT_GT(c.pid, 0);
  std::string line = read_line(c.out);
  EXPECT_EQ(wait_for(c), 1) << line;
  EXPECT_NE(line.find("/proc/sys/kernel/random/boot_id"), std::string::npos) << line;
}

}  // namespace
}  // namespace lockkit::testing
