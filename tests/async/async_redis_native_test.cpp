// SPDX-License-Identifier: MIT
// AsyncLockApi's native redis:// path: one pipelined connection on the executor, the same wire
// as the blocking client (the two contend correctly), and connection loss mid-flight.
#include <gtest/gtest.h>
#include <signal.h>

#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "support/io_thread.hpp"
#include "support/redis_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::RedisServer;

std::string Unique(std::string_view stem) {
  return "native/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

using testing::IoThread;

// Stops `pid` and waits until it is really stopped (state T): kill() returns before that.
void StopProcess(int pid) {
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  for (int i = 0; i < 1000; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close != std::string::npos && line.size() > close + 2 && line[close + 2] == 'T') return;
    std::this_thread::sleep_for(1ms);
  }
  FAIL() << "redis-server did not stop";
}

int NativeConnections(const RedisServer& server) {
  const std::string list = server.cli({"CLIENT", "LIST"});
  int n = 0;
  for (std::size_t at = list.find("name=lockkit-async "); at != std::string::npos;
       at = list.find("name=lockkit-async ", at + 1)) {
    ++n;
  }
  return n;
}

TEST(AsyncRedisNative, ManyInFlightShareOnePipelinedConnection) {
  RedisServer server;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  const std::string stem = Unique("inflight");
  std::vector<std::future<std::optional<Lock>>> acquires;
  for (int i = 0; i < 256; ++i) {
    acquires.push_back(
        locks.async_try_acquire(stem + "/" + std::to_string(i), 20s, asio::use_future));
  }
  std::vector<Lock> held;
  for (auto& f : acquires) {
    auto lock = f.get();
    ASSERT_TRUE(lock);
    held.push_back(std::move(*lock));
  }
  EXPECT_EQ(NativeConnections(server), 1);
  std::vector<std::future<bool>> releases;
  for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
  for (auto& f : releases) EXPECT_TRUE(f.get());
  for (auto& lock : held) EXPECT_FALSE(lock.held());
  EXPECT_EQ(server.cli({"EXISTS", stem + "/0"}), "0");
}

// Same key, same server: the blocking client and the native one exclude each other, see each
// other's fences, and neither can release the other's lock.
TEST(AsyncRedisNative, SyncAndAsyncClientsContendOnTheSameWire) {
  auto& server = RedisServer::shared();
  IoThread io;
  auto sync_api = lockkit::open(server.url());
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  const std::string key = Unique("wire");

  auto mine = locks.async_try_acquire(key, 20s, asio::use_future).get();
  ASSERT_TRUE(mine);
  EXPECT_EQ(server.cli({"GET", key}), mine->token());  // the lock is the plain string key
  EXPECT_FALSE(sync_api->try_acquire(key, 20s));
  EXPECT_FALSE(sync_api->release(key, make_token()));
  auto status = sync_api->status(key);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->fence, mine->fence());  // the holder record the sync store reads
  EXPECT_TRUE(locks.async_release(*mine, asio::use_future).get());

  auto theirs = sync_api->try_acquire(key, 20s);
  ASSERT_TRUE(theirs);
  EXPECT_GT(theirs->fence(), status->fence);
  EXPECT_FALSE(locks.async_try_acquire(key, 20s, asio::use_future).get());
  // A native waiter gets it once the blocking holder lets go.
  auto waiting = locks.async_acquire(
      key, 20s, RetryPolicy{.max_wait = 10s, .initial_delay = 1ms, .max_delay = 10ms},
      asio::use_future);
  EXPECT_EQ(waiting.wait_for(50ms), std::future_status::timeout);
  EXPECT_TRUE(theirs->release());
  auto next = waiting.get();
  ASSERT_TRUE(next);
  EXPECT_GT(next->fence(), theirs->fence());
  // Released through the blocking path: the native lock's release works there too.
  EXPECT_TRUE(next->release());
  EXPECT_FALSE(sync_api->status(key));
}

TEST(AsyncRedisNative, ScriptFlushFallsBackToEval) {
  RedisServer server;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  auto first = locks.async_try_acquire(Unique("flush"), 20s, asio::use_future).get();
  ASSERT_TRUE(first);
  server.cli({"SCRIPT", "FLUSH"});
  auto second = locks.async_try_acquire(Unique("flush"), 20s, asio::use_future).get();
  ASSERT_TRUE(second);
  EXPECT_TRUE(locks.async_release(*first, asio::use_future).get());
  EXPECT_TRUE(locks.async_release(*second, asio::use_future).get());
}

ErrorKind KindOf(std::future<std::optional<Lock>>& f) {
  try {
    auto got = f.get();
    std::printf("got a result: %s\n", got ? "lock" : "busy");
  } catch (const BackendError& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no BackendError";
  return ErrorKind::kProtocol;
}

// The server stops answering, then dies, with acquires and a release in flight: each completes
// with BackendError (the acquires that were written in doubt), and the next call reconnects.
TEST(AsyncRedisNative, ConnectionLossFailsEveryPendingOperation) {
  RedisServer server;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(),
                     lockkit::open(server.url("?command_timeout=5s&connect_timeout=1s")));
  auto held = locks.async_try_acquire(Unique("loss"), 20s, asio::use_future).get();
  ASSERT_TRUE(held);
  StopProcess(server.pid());
  std::vector<std::future<std::optional<Lock>>> pending;
  for (int i = 0; i < 20; ++i) {
    pending.push_back(locks.async_try_acquire(Unique("loss"), 20s, asio::use_future));
  }
  auto release = locks.async_release(*held, asio::use_future);
  std::this_thread::sleep_for(100ms);  // let the requests reach the stopped server's socket
  // SIGKILL while stopped: it dies without answering (the fixture's kill would let it run
  // first, SIGCONT, and answer some).
  const int pid = server.pid();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  server.kill();
  int in_doubt = 0;
  for (auto& f : pending) {
    const ErrorKind kind = KindOf(f);
    EXPECT_TRUE(kind == ErrorKind::kInDoubt || kind == ErrorKind::kUnavailable) << to_string(kind);
    in_doubt += kind == ErrorKind::kInDoubt;
  }
  EXPECT_GT(in_doubt, 0);
  EXPECT_THROW(release.get(), BackendError);
  server.start();
  auto after = locks.async_try_acquire(Unique("loss"), 20s, asio::use_future).get();
  EXPECT_TRUE(after);
}

TEST(AsyncRedisNative, SilentServerTimesOutInDoubt) {
  RedisServer server;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(),
                     lockkit::open(server.url("?command_timeout=300ms&connect_timeout=1s")));
  ASSERT_TRUE(locks.async_try_acquire(Unique("silent"), 20s, asio::use_future).get());
  StopProcess(server.pid());
  const auto start = std::chrono::steady_clock::now();
  auto f = locks.async_try_acquire(Unique("silent"), 20s, asio::use_future);
  EXPECT_EQ(KindOf(f), ErrorKind::kInDoubt);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_EQ(::kill(server.pid(), SIGCONT), 0);
  EXPECT_TRUE(locks.async_try_acquire(Unique("silent"), 20s, asio::use_future).get());
}

}  // namespace
}  // namespace lockkit
