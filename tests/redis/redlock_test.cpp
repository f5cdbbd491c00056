// SPDX-License-Identifier: MIT
// redlock:// against real redis-servers that die, restart empty or from a stale snapshot, or
// stop answering; several processes contending; the fence write-back; URL parsing.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_keys.hpp"
#include "support/redis_server.hpp"

extern char** environ;

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::RedisServer;
using testing::RedisTls;

// Three servers of this test's own (each test kills or restarts some).
struct Trio {
  std::vector<std::unique_ptr<RedisServer>> servers;
  explicit Trio(std::size_t n = 3) {
    for (std::size_t i = 0; i < n; ++i) servers.push_back(std::make_unique<RedisServer>());
  }
  RedisServer& operator[](std::size_t i) { return *servers[i]; }
  std::string url(std::string_view tail = "?connect_timeout=500ms&command_timeout=500ms") {
    std::string u = "redlock://";
    for (std::size_t i = 0; i < servers.size(); ++i) {
      if (i) u += ',';
      u += "127.0.0.1:" + std::to_string(servers[i]->port());
    }
    return u + std::string(tail);
  }
};

pid_t ServerPid(RedisServer& s) {
  std::string info = s.cli({"INFO", "server"});
  auto at = info.find("process_id:");
  if (at == std::string::npos) throw std::runtime_error("no process_id in INFO");
  return static_cast<pid_t>(std::stol(info.substr(at + 11)));
}

TEST(Redlock, OneOfThreeKilledKeepsWorkingWithoutLatencyTax) {
  Trio trio;
  auto api = lockkit::open(trio.url());
  ASSERT_TRUE(api->try_acquire("warm", 5s));
  trio[2].kill();
  // The first calls find the dead node; after that it is skipped while it backs off.
  for (int i = 0; i < 3; ++i) {
    auto lock = api->try_acquire("one-down/" + std::to_string(i), 5s);
    ASSERT_TRUE(lock);
    EXPECT_TRUE(lock->release());
  }
  Clock::duration worst{};
  for (int i = 0; i < 50; ++i) {
    auto start = Clock::now();
    auto lock = api->try_acquire("one-down", 5s);
    ASSERT_TRUE(lock);
    EXPECT_TRUE(lock->release());
    worst = std::max(worst, Clock::now() - start);
  }
  EXPECT_LT(worst, 250ms) << "a call waited for the dead node";
}

TEST(Redlock, TwoOfThreeKilledFailsQuicklyThenRecovers) {
  Trio trio;
  auto api = lockkit::open(trio.url());
  ASSERT_TRUE(api->try_acquire("warm", 5s));
  trio[1].kill();
  trio[2].kill();
  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    try {
      (void)api->try_acquire("two-down", 5s);
      ADD_FAILURE() << "acquired without a quorum";
    } catch (const BackendError& e) {
      // The first call may have written its request on a connection the dead server had just
      // closed (the peer's close not yet seen): that one is rightly in doubt.
      if (i != 0 || e.kind() != ErrorKind::kInDoubt) {
        EXPECT_EQ(e.kind(), ErrorKind::kUnavailable) << e.what();
      }
    }
    EXPECT_LT(Clock::now() - start, 1500ms) << "no quick answer without a quorum";
  }
  trio[1].start();
  trio[2].start();
  // Back once the nodes' backoff (at most 2 s) lets a call probe them again.
  std::optional<Lock> lock;
  auto deadline = Clock::now() + 15s;
  while (!lock && Clock::now() < deadline) {
    try {
      lock = api->try_acquire("two-down", 5s);
    } catch (const BackendError&) {
      std::this_thread::sleep_for(50ms);  // polling a condition that has no event to wait for
    }
  }
  ASSERT_TRUE(lock) << "no recovery after the nodes came back";
  EXPECT_TRUE(lock->release());
}

// The lock is held on A and C only (taken through a client whose third node was down); C then
// restarts empty. B and the empty C alone would be a majority: C must give no vote while it is
// younger than the lock's ttl (lock-delay).
TEST(Redlock, NodeRestartedEmptyGivesNoSecondHolder) {
  Trio trio;
  {
    // Every node has seen lockkit before: the first call ends the fresh nodes' lock-delay and
    // records their run before it returns.
    auto warm = lockkit::open(trio.url());
    ASSERT_TRUE(warm->try_acquire("warm", 1s));
  }
  for (auto& s : trio.servers) ASSERT_NE(s->cli({"HGET", "lockkit:{redlock}", "run"}), "");
  // Nothing listens on port 1: A, C and a dead node.
  auto holder_api = lockkit::open("redlock://127.0.0.1:" + std::to_string(trio[0].port()) +
                                  ",127.0.0.1:" + std::to_string(trio[2].port()) +
                                  ",127.0.0.1:1?connect_timeout=500ms&command_timeout=500ms");
  auto held = holder_api->try_acquire("delayed", 30s);
  ASSERT_TRUE(held);
  ASSERT_EQ(trio[1].cli({"EXISTS", "delayed"}), "0");
  trio[2].kill();
  trio[2].start();  // persistence off: empty
  ASSERT_EQ(trio[2].cli({"EXISTS", "delayed"}), "0");
  // Another client, as another process would be: it knows nothing of the lock but what the
  // nodes record.
  auto other = lockkit::open(trio.url());
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(other->try_acquire("delayed", 30s)) << "a second holder after C restarted";
  }
  // Only A still holds it (C forgot it): no longer a quorum's lock, or (C's old connection
  // broken, the third node dead) no quorum answering at all.
  try {
    EXPECT_FALSE(held->release());
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnavailable) << e.what();
  }
}

// A short-lived process (one acquire, then exit without running a destructor) on fresh nodes
// ends their lock-delay for whoever comes next: by the time its acquire returned, every node
// that voted records its current run. Otherwise a node it had no time to record gives no vote
// to the next process until its uptime passes the 60 s ttl that process recorded, and with one
// such node out of three the next acquire is refused. A fresh prefix is a fresh deployment
// (its own node record), so each round starts over.
TEST(Redlock, ShortLivedProcessLeavesNoLockDelayBehind) {
  Trio trio;
  std::vector<std::string> run_ids;
  for (auto& s : trio.servers) {
    std::string info = s->cli({"INFO", "server"});
    auto at = info.find("run_id:");
    ASSERT_NE(at, std::string::npos);
    run_ids.push_back(info.substr(at + 7, 40));
  }
  for (int round = 0; round < 5; ++round) {
    const std::string prefix = "short" + std::to_string(round) + ":";
    const std::string url =
        trio.url("?connect_timeout=500ms&command_timeout=500ms&prefix=" + prefix);
    std::vector<std::string> args = {REDLOCK_CONTENDER, url, "first", "once"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, REDLOCK_CONTENDER, nullptr, nullptr, argv.data(), environ), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0) << "the first process was not granted the lock";
    for (std::size_t i = 0; i < trio.servers.size(); ++i) {
      EXPECT_EQ(trio[i].cli({"HGET", prefix + "lockkit:{redlock}", "run"}), run_ids[i])
          << "round " << round << ": node " << i << " does not record its run";
    }
    // The next process: a store of its own that knows nothing but what the nodes record.
    auto next = lockkit::open(url);
    const auto started = Clock::now();
    EXPECT_TRUE(next->try_acquire("second", 5s)) << "round " << round << ": refused";
    EXPECT_LT(Clock::now() - started, 2s);
  }
}

// The node record (longest ttl, run) is read with the grant and written only when it changes;
// the internal keys' types are checked without a separate TYPE.
TEST(Redlock, GrantWritesTheNodeRecordOnlyWhenItChanges) {
  Trio trio(1);
  auto api = lockkit::open(trio.url());
  ASSERT_TRUE(api->try_acquire("warm", 5s));  // records the ttl and the node's run
  ASSERT_EQ(trio[0].cli({"CONFIG", "RESETSTAT"}), "OK");
  for (int i = 0; i < 10; ++i) {
    auto lock = api->try_acquire("slim" + std::to_string(i), 5s);
    ASSERT_TRUE(lock);
    EXPECT_TRUE(lock->release());
  }
  const std::string stats = trio[0].cli({"INFO", "commandstats"});
  EXPECT_EQ(stats.find("cmdstat_type:"), std::string::npos) << stats;
  EXPECT_NE(stats.find("cmdstat_hset:calls=20,"), std::string::npos) << "holder and counter only\n"
                                                                     << stats;
  EXPECT_NE(stats.find("cmdstat_hmget:calls=10,"), std::string::npos) << stats;
}

// Every granted fence is at most the counter of a quorum of nodes, so any later quorum (which
// shares a node with this one) hands out a higher one, whatever the nodes' clocks say.
// A fresh deployment blocks nobody: many first calls at once on new servers are all granted
// (a node whose run one of them ended the lock-delay for counts for the others too).
TEST(Redlock, ConcurrentFirstCallsOnFreshNodesAreGranted) {
  Trio trio;
  auto api = lockkit::open(trio.url("?connect_timeout=2s&command_timeout=2s"));
  constexpr int kThreads = 32;
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      if (api->try_acquire("first/" + std::to_string(t), 5s)) ++granted;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), kThreads);
}

TEST(Redlock, FenceIsWrittenBackToAQuorum) {
  Trio trio;
  auto api = lockkit::open(trio.url());
  std::string lock_key, fence_key, holder_key;
  detail::redis::KeyLayout("").keys_of("fenced", lock_key, fence_key, holder_key);
  for (int i = 0; i < 20; ++i) {
    auto lock = api->try_acquire("fenced", 5s);
    ASSERT_TRUE(lock);
    int at_least = 0;
    for (auto& s : trio.servers) {
      std::string v = s->cli({"HGET", fence_key, "fence"});
      if (!v.empty() && std::stoull(v) >= lock->fence()) ++at_least;
    }
    EXPECT_GE(at_least, 2) << "fence " << lock->fence() << " is on fewer than a quorum";
    EXPECT_TRUE(lock->release());
  }
}

TEST(Redlock, NodeRestartedFromStaleSnapshotFencesStillIncrease) {
  Trio trio;
  auto api = lockkit::open(trio.url());
  std::uint64_t highest = 0;
  auto take = [&](const std::string& key) {
    auto lock = api->try_acquire(key, 1s);
    ASSERT_TRUE(lock) << key;
    EXPECT_GT(lock->fence(), highest) << key;
    highest = std::max(highest, lock->fence());
    EXPECT_TRUE(lock->release());
  };
  for (int i = 0; i < 5; ++i) take("snap");
  ASSERT_EQ(trio[0].cli({"SAVE"}), "OK");
  for (int i = 0; i < 20; ++i) take("snap");
  trio[0].kill();
  trio[0].start();  // loads the old counters
  ASSERT_NE(trio[0].cli({"DBSIZE"}), "0") << "the snapshot was not loaded";
  // A quorum without B makes the restored node count (once its lock-delay is over).
  trio[1].kill();
  std::optional<Lock> lock;
  auto deadline = Clock::now() + 15s;
  while (Clock::now() < deadline) {
    try {
      lock = api->try_acquire("snap", 1s);
      if (lock) break;
    } catch (const BackendError&) {
    }
    std::this_thread::sleep_for(100ms);  // the lock-delay runs on the server's uptime
  }
  ASSERT_TRUE(lock);
  EXPECT_GT(lock->fence(), highest) << "a fence went back after the stale restore";
}

// The call returns on the quorum of the two others, never after the stopped node's timeout.
TEST(Redlock, StoppedNodeDoesNotDelayTheQuorum) {
  Trio trio;
  auto api = lockkit::open(trio.url("?connect_timeout=500ms&command_timeout=2s"));
  ASSERT_TRUE(api->try_acquire("warm", 5s));
  const pid_t pid = ServerPid(trio[0]);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  Clock::duration worst{};
  for (int i = 0; i < 10; ++i) {
    auto start = Clock::now();
    auto lock = api->try_acquire("stopped/" + std::to_string(i), 5s);
    worst = std::max(worst, Clock::now() - start);
    EXPECT_TRUE(lock);
    if (lock) {
      start = Clock::now();
      EXPECT_TRUE(lock->release());
      worst = std::max(worst, Clock::now() - start);
    }
  }
  ::kill(pid, SIGCONT);
  EXPECT_LT(worst, 1s) << "a call waited for the stopped node";
}

// A TCP port that completes the handshake (the kernel queues the connection) but whose
// "server" never accepts or answers, like a hung host: a connect attempt there costs the whole
// connect timeout. `attempts()` counts the connections queued so far.
class SilentPort {
 public:
  SilentPort() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 128) != 0) {
      throw std::runtime_error("SilentPort: cannot listen");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentPort() { ::close(fd_); }
  SilentPort(const SilentPort&) = delete;
  SilentPort& operator=(const SilentPort&) = delete;
  std::uint16_t port() const { return port_; }
  // For a listening socket, Linux reports its accept queue's length as tcpi_unacked.
  unsigned attempts() const {
    tcp_info info{};
    socklen_t len = sizeof info;
    ::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len);
    return info.tcpi_unacked;
  }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

// A node that hangs in the connect handshake: once its backoff is over, exactly one call
// probes it (and even that one does not wait for it); every other call counts it as "no"
// without trying, so many concurrent callers neither pay its connect timeout nor flood it.
TEST(Redlock, OneProberPerDeadNodeAfterItsBackoff) {
  Trio trio(2);
  SilentPort silent;
  RedlockOptions options = parse_redlock_url(trio.url("?connect_timeout=500ms"));
  options.nodes.push_back(options.nodes[0]);
  options.nodes.back().port = silent.port();
  options.backoff = 50ms;
  options.max_backoff = 50ms;
  auto api = make_redlock_lock_api(options);
  ASSERT_TRUE(api->try_acquire("warm", 5s));
  // Until the first attempts time out, the node is not known to be dead.
  while (silent.attempts() == 0) std::this_thread::yield();
  std::this_thread::sleep_for(600ms);  // a timeout running out: no event to wait for
  const unsigned before = silent.attempts();
  constexpr int kThreads = 16;
  const auto start = Clock::now();
  std::atomic<long long> worst_ns{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; Clock::now() - start < 1200ms; ++i) {
        const auto begin = Clock::now();
        try {
          auto lock = api->try_acquire("probe/" + std::to_string(t) + "/" + std::to_string(i), 5s);
          if (!lock || !lock->release()) failures.fetch_add(1);
        } catch (const BackendError&) {
          failures.fetch_add(1);
        }
        const long long ns = (Clock::now() - begin).count();
        long long seen = worst_ns.load();
        while (ns > seen && !worst_ns.compare_exchange_weak(seen, ns)) {
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LT(std::chrono::nanoseconds(worst_ns.load()), 250ms)
      << "a call waited for the silent node's connect timeout";
  // One attempt at a time, each taking the 500 ms connect timeout (then a 50 ms backoff).
  const unsigned allowed = static_cast<unsigned>(elapsed / 500ms) + 1;
  EXPECT_LE(silent.attempts() - before, allowed)
      << "several callers probed the silent node at once";
}

// A and C are held by someone else, B grants: the attempt fails and B's grant is gone when the
// call returns, not left until its ttl.
// A field of INFO's `section` as a number (e.g. "total_reads_processed:", "calls=" after
// "cmdstat_evalsha:").
std::uint64_t InfoNumber(RedisServer& s, const std::string& section, const std::string& after,
                         const std::string& field) {
  std::string info = s.cli({"INFO", section});
  auto at = info.find(after);
  if (at == std::string::npos) return 0;
  at = info.find(field, at);
  if (at == std::string::npos) return 0;
  return std::stoull(info.substr(at + field.size()));
}

// Requests that many callers queue for a node while its previous ones are out go to it in one
// pipelined write, consecutive lock operations as one script run: here one node is paused while
// 32 threads take and release 320 locks through the other two, and the 640 requests that queued
// up for it reach it in a handful of reads and script runs (with one thread hand-off per
// request they arrived one write each; with one script call per request, 640 runs).
TEST(Redlock, ManyCallersShareRoundTripsToANode) {
  Trio trio;
  auto api = lockkit::open(trio.url("?connect_timeout=2s&command_timeout=2s"));
  // Every worker and connection made (and the nodes' runs recorded) before counting.
  ASSERT_TRUE(api->try_acquire("warm", 5s));
  {
    std::vector<std::thread> warm;
    for (int t = 0; t < 32; ++t) {
      warm.emplace_back([&, t] { ASSERT_TRUE(api->try_acquire("warm/" + std::to_string(t), 5s)); });
    }
    for (auto& w : warm) w.join();
  }
  // Commands a script runs count in commandstats too: each acquire runs one SET, each release
  // one GET.
  const auto calls = [&](const char* command) {
    return InfoNumber(trio[0], "commandstats", command, "calls=");
  };
  const std::uint64_t runs_before = calls("cmdstat_evalsha:");
  const std::uint64_t sets_before = calls("cmdstat_set:");
  const std::uint64_t gets_before = calls("cmdstat_get:");
  const std::uint64_t reads_before = InfoNumber(trio[0], "stats", "", "total_reads_processed:");
  trio[0].cli({"CLIENT", "PAUSE", "500", "ALL"});
  constexpr int kThreads = 32, kPairs = 10;
  std::vector<std::thread> threads;
  std::atomic<int> granted{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPairs; ++i) {
        auto lock = api->try_acquire("batch/" + std::to_string(t) + "/" + std::to_string(i), 5s);
        if (!lock) continue;
        ++granted;
        (void)lock->release();
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(granted.load(), kThreads * kPairs);
  // Every request reaches the paused node once the pause is over: an acquire and a release per
  // lock (the 32 INFO-free warm-up locks are not counted).
  const auto arrived = [&] {
    return calls("cmdstat_set:") >= sets_before + kThreads * kPairs &&
           calls("cmdstat_get:") >= gets_before + kThreads * kPairs;
  };
  const auto deadline = Clock::now() + 10s;
  while (!arrived() && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);  // polling the server's counter: no event to wait for
  }
  ASSERT_TRUE(arrived());
  const std::uint64_t reads =
      InfoNumber(trio[0], "stats", "", "total_reads_processed:") - reads_before;
  // Our INFO calls above are reads too (a few dozen at most).
  EXPECT_LT(reads, 2 * kThreads * kPairs / 5)
      << reads << " reads for " << 2 * kThreads * kPairs << " requests";
  const std::uint64_t runs = calls("cmdstat_evalsha:") - runs_before;
  EXPECT_LT(runs, 2 * kThreads * kPairs / 5)
      << runs << " script runs for " << 2 * kThreads * kPairs << " requests";
}

// After SCRIPT FLUSH on every node the next calls (single ones and runs of several) are
// answered NOSCRIPT and sent again with the script's text.
TEST(Redlock, CallsGoOnAfterTheNodesFlushedTheirScripts) {
  Trio trio;
  auto api = lockkit::open(trio.url());
  ASSERT_TRUE(api->try_acquire("warm", 5s));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(trio[i].cli({"SCRIPT", "FLUSH"}), "OK");
  std::vector<std::thread> threads;
  std::atomic<int> granted{0}, released{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        auto lock = api->try_acquire("flushed/" + std::to_string(t) + "/" + std::to_string(i), 5s);
        if (!lock) continue;
        ++granted;
        if (lock->release()) ++released;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 80);
  EXPECT_EQ(released.load(), 80);
}

TEST(Redlock, PartialWinIsUndoneInTheSameCall) {
  Trio trio;
  auto api = lockkit::open(trio.url());
  for (int i = 0; i < 10; ++i) {
    const std::string key = "partial/" + std::to_string(i);
    ASSERT_EQ(trio[0].cli({"SET", key, "someone-else", "PX", "30000"}), "OK");
    ASSERT_EQ(trio[2].cli({"SET", key, "someone-else", "PX", "30000"}), "OK");
    // A and C answer a moment later: B's grant is in before the outcome is decided (a grant
    // arriving after it is the late case below).
    ASSERT_EQ(trio[0].cli({"CLIENT", "PAUSE", "50", "WRITE"}), "OK");
    ASSERT_EQ(trio[2].cli({"CLIENT", "PAUSE", "50", "WRITE"}), "OK");
    EXPECT_FALSE(api->try_acquire(key, 30s));
    EXPECT_EQ(trio[1].cli({"EXISTS", key}), "0") << "B's grant outlived the failed attempt";
  }
}

// A and B are held by someone else (the attempt fails without C), C is stopped with our
// request in its socket: when C wakes and grants, that late grant is released at once.
TEST(Redlock, LateGrantAfterAFailedOutcomeIsReleasedOnArrival) {
  Trio trio;
  // One connection per node: the request goes out on the connection the warm-up opened.
  auto api = lockkit::open(trio.url("?connect_timeout=500ms&command_timeout=10s&connections=1"));
  ASSERT_TRUE(api->try_acquire("warm", 1s));
  ASSERT_EQ(trio[0].cli({"SET", "late", "someone-else", "PX", "60000"}), "OK");
  ASSERT_EQ(trio[1].cli({"SET", "late", "someone-else", "PX", "60000"}), "OK");
  const pid_t c = ServerPid(trio[2]);
  ASSERT_EQ(::kill(c, SIGSTOP), 0);
  // A and B answer only after 300 ms, so our request to C is surely out before the outcome.
  ASSERT_EQ(trio[0].cli({"CLIENT", "PAUSE", "300", "WRITE"}), "OK");
  ASSERT_EQ(trio[1].cli({"CLIENT", "PAUSE", "300", "WRITE"}), "OK");
  auto start = Clock::now();
  std::optional<Lock> lock;
  try {
    lock = api->try_acquire("late", 60s);
  } catch (...) {
    ::kill(c, SIGCONT);
    throw;
  }
  EXPECT_LT(Clock::now() - start, 2s) << "the refusal waited for the stopped node";
  std::this_thread::sleep_for(200ms);  // let the request sit in the stopped server's socket
  ASSERT_EQ(::kill(c, SIGCONT), 0);
  EXPECT_FALSE(lock);
  // C runs our acquire when it wakes (its record then shows our 60 s ttl) and grants; that
  // grant must be gone within a moment, not after 60 s.
  auto deadline = Clock::now() + 5s;
  while (trio[2].cli({"HGET", "lockkit:{redlock}", "ttl"}) != "60000" && Clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);  // the server's state has no event to wait on
  }
  ASSERT_EQ(trio[2].cli({"HGET", "lockkit:{redlock}", "ttl"}), "60000") << "C never ran it";
  while (trio[2].cli({"EXISTS", "late"}) == "1" && Clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(trio[2].cli({"EXISTS", "late"}), "0") << "the late grant on C was left until its ttl";
}

TEST(Redlock, ProcessesContendWithStrictlyIncreasingFences) {
  Trio trio;
  auto dir =
      std::filesystem::temp_directory_path() / ("lockkit-redlock-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string url = trio.url("");
  constexpr int kProcesses = 4;
  constexpr int kRounds = 30;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    std::vector<std::string> args = {REDLOCK_CONTENDER, url, "contended", std::to_string(kRounds),
                                     dir.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, REDLOCK_CONTENDER, nullptr, nullptr, argv.data(), environ), 0);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "3 = two processes held the lock at once (2 not taken, 4 lost, 6 store error)";
  }
  std::ifstream in(dir / "fences");
  std::vector<std::uint64_t> fences;
  for (std::uint64_t f = 0; in >> f;) fences.push_back(f);
  EXPECT_EQ(fences.size(), static_cast<std::size_t>(kProcesses * kRounds));
  for (std::size_t i = 1; i < fences.size(); ++i) {
    EXPECT_GT(fences[i], fences[i - 1]) << "at grant " << i;
  }
  std::filesystem::remove_all(dir);
}

// npm redlock v5 (multi-instance, ioredis) and lockkit on the same three servers and key: two
// processes of each, never two holders; lockkit's fences still increase across all of it.
TEST(Redlock, ContendsWithNpmRedlock) {
  const std::string node_dir = std::string(LOCKKIT_NODE_DIR);
  if (!std::filesystem::exists(node_dir + "/node_modules/redlock")) {
    GTEST_SKIP() << "npm redlock not installed in " << node_dir << " (scripts/setup.sh)";
  }
  Trio trio;
  auto dir = std::filesystem::temp_directory_path() /
             ("lockkit-redlock-npm-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string ports;
  for (auto& s : trio.servers) ports += (ports.empty() ? "" : ",") + std::to_string(s->port());
  constexpr int kRounds = 25;
  std::vector<std::vector<std::string>> commands;
  // Two lockkit processes and one npm process taking as many rounds as both. Not two npm
  // processes: npm redlock v5 keeps a failed attempt's partial wins into its retries (see
  // contend.js), so two of them can split the nodes between their values again and again, each
  // refused by its own earlier wins, and starve for as long as their retries last (seen under
  // TSan: no npm grant in 67 s and 118 s).
  for (int p = 0; p < 2; ++p) {
    commands.push_back(
        {REDLOCK_CONTENDER, trio.url(""), "shared", std::to_string(kRounds), dir.string()});
  }
  commands.push_back({"/usr/bin/env", "node", node_dir + "/contend.js", ports, "shared",
                      std::to_string(2 * kRounds), dir.string()});
  std::vector<pid_t> pids;
  for (auto& args : commands) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    pids.push_back(pid);
  }
  for (std::size_t i = 0; i < pids.size(); ++i) {
    int status = 0;
    ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << commands[i][1]
        << ": 3 = two processes held the lock at once (2 not taken, 4 lost, 6 store error)";
  }
  std::ifstream in(dir / "fences");
  std::uint64_t last = 0;
  int lines = 0, npm = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    if (line == "npm") {
      ++npm;
      continue;
    }
    std::uint64_t f = std::stoull(line);
    EXPECT_GT(f, last) << "at grant " << lines;
    last = f;
  }
  EXPECT_EQ(lines, 4 * kRounds);
  EXPECT_EQ(npm, 2 * kRounds);
  std::filesystem::remove_all(dir);
}

// tls=1: every node speaks TLS (rediss://), verified against tls_ca_file; the lock is the
// same one the plain ports show.
TEST(Redlock, TlsNodesHoldTheSameLock) {
  std::vector<std::unique_ptr<RedisServer>> servers;
  std::string url = "redlock://";
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<RedisServer>(std::vector<std::string>{}, RedisTls::kOn));
    url += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(servers.back()->tls_port());
  }
  auto api = lockkit::open(url + "?tls=1&tls_ca_file=" + testing::TestPki::shared().ca);
  auto lock = api->try_acquire("tls-lock", 30s);
  ASSERT_TRUE(lock);
  // The call returns on a quorum: the third node may answer a moment later.
  int holding = 0;
  for (auto& s : servers) holding += s->cli({"GET", "tls-lock"}) == lock->token();
  EXPECT_GE(holding, 2);
  EXPECT_TRUE(lock->extend(30s));
  EXPECT_TRUE(lock->release());
  int freed = 0;
  for (auto& s : servers) freed += s->cli({"EXISTS", "tls-lock"}) == "0";
  EXPECT_GE(freed, 2);
  // Verification is on: without the test CA, no node is trusted.
  auto untrusted = lockkit::open(url + "?tls=1&connect_timeout=2s");
  EXPECT_THROW((void)untrusted->try_acquire("tls-lock", 30s), BackendError);
}

TEST(RedlockUrl, ParsesNodesAndSharedOptions) {
  auto o =
      parse_redlock_url("redlock://u:pw@h1:7001,h2,[::1]:7003/2?prefix=app:&command_timeout=1s");
  ASSERT_EQ(o.nodes.size(), 3U);
  EXPECT_EQ(o.nodes[0].host, "h1");
  EXPECT_EQ(o.nodes[0].port, 7001);
  EXPECT_EQ(o.nodes[1].port, 6379);
  EXPECT_EQ(o.nodes[2].host, "::1");
  for (const auto& n : o.nodes) {
    EXPECT_EQ(n.user, "u");
    EXPECT_EQ(n.password, "pw");
    EXPECT_EQ(n.db, 2U);
    EXPECT_EQ(n.prefix, "app:");
    EXPECT_EQ(n.command_timeout, 1s);
  }
}

TEST(RedlockUrl, RejectsBadUrlsWithoutTheirPassword) {
  for (const char* url :
       {"redlock://", "redlock://h1:0", "redlock://h1,,h2", "redlock://h1?bogus=1",
        "redlock://user:sekrit@h1:99999", "redlock://h1?command_timeout=0ms", "redis://h1:6379",
        "redlock://user:sekrit@h1?tls_ca_file=x"}) {
    try {
      (void)parse_redlock_url(url);
      ADD_FAILURE() << url << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find("sekrit"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW((void)make_redlock_store({}), std::invalid_argument);
  EXPECT_THROW((void)lockkit::open("redlock://h1?threads=0"), std::invalid_argument);
  EXPECT_THROW((void)lockkit::open("redlock://h1?tls=maybe"), std::invalid_argument);
  EXPECT_THROW((void)lockkit::open("redlock://h1?tls_ca_file=/x"), std::invalid_argument);
  EXPECT_TRUE(parse_redlock_url("redlock://h1,h2?tls=1&prefix=p:").nodes[1].tls.enabled);
  EXPECT_EQ(parse_redlock_url("redlock://h1,h2?tls=1&prefix=p:").nodes[1].prefix, "p:");
  EXPECT_FALSE(parse_redlock_url("redlock://h1?tls=0").nodes[0].tls.enabled);
}

}  // namespace
}  // namespace lockkit
