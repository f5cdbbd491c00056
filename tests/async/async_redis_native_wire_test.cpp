// SPDX-License-Identifier: MIT
// AsyncLockApi's native redis:// connection under the batching it does for speed: replies
// split anywhere across reads (integer replies are read without hiredis when whole), requests
// from many threads at once (gathered into one write per turn), and a large burst of replies
// (completed a slice at a time, so that the executor runs other handlers in between).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <cerrno>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "support/fault_proxy.hpp"
#include "support/io_thread.hpp"
#include "support/redis_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
using testing::RedisServer;

std::string Unique(std::string_view stem) {
  return "wire/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

// A loopback relay in front of the real server that passes requests on as they come and the
// server's replies in pieces of 1 to 7 bytes, each sent on its own (TCP_NODELAY): the client
// reads replies cut at every possible place. One thread per connection.
class SplittingRelay {
 public:
  explicit SplittingRelay(std::uint16_t upstream) : upstream_(upstream) {
    if (::pipe(stop_) != 0) throw std::runtime_error("pipe");
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = testing::loopback_address(0);
    socklen_t len = sizeof addr;
    if (listen_ < 0 || ::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_, 16) != 0 ||
        ::getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("relay: listen");
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~SplittingRelay() {
    const char byte = 0;
    (void)!::write(stop_[1], &byte, 1);
    acceptor_.join();
    for (auto& t : links_) t.join();
    ::close(listen_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  SplittingRelay(const SplittingRelay&) = delete;
  SplittingRelay& operator=(const SplittingRelay&) = delete;

  std::string url(std::string_view tail = "") const {
    return "redis://127.0.0.1:" + std::to_string(port_) + std::string(tail);
  }

 private:
  void accept_loop() {
    for (;;) {
      pollfd fds[2] = {{listen_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents != 0) return;
      const int client = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = testing::loopback_address(upstream_);
      if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(client);
        if (server >= 0) ::close(server);
        continue;
      }
      const int one = 1;
      ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      links_.emplace_back([this, client, server] { pump(client, server); });
    }
  }

  void pump(int client, int server) {
    char buf[16384];
    std::size_t cut = 0;
    for (bool open = true; open;) {
      pollfd fds[3] = {{client, POLLIN, 0}, {server, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) continue;
      if (fds[2].revents != 0) break;
      for (int side = 0; side < 2 && open; ++side) {
        if (fds[side].revents == 0) continue;
        const int from = side == 0 ? client : server;
        const int to = side == 0 ? server : client;
        const ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
          open = false;
          break;
        }
        if (side == 0) {
          open = testing::send_all(to, buf, static_cast<std::size_t>(n));
          continue;
        }
        for (std::size_t at = 0; at < static_cast<std::size_t>(n) && open;) {
          const std::size_t piece = std::min<std::size_t>(1 + cut++ % 7, n - at);
          open = testing::send_all(to, buf + at, piece);
          at += piece;
        }
      }
    }
    ::shutdown(client, SHUT_RDWR);
    ::shutdown(server, SHUT_RDWR);
    ::close(client);
    ::close(server);
  }

  std::uint16_t upstream_;
  std::uint16_t port_ = 0;
  int listen_ = -1;
  int stop_[2] = {-1, -1};
  std::thread acceptor_;
  std::vector<std::thread> links_;  // only the acceptor adds, before the destructor joins
};

// Replies cut anywhere (an integer's digits in two reads, "\r" and "\n" apart) still complete
// the right requests with the right values, together with the other replies hiredis reads
// (the scripts' SHA1s at connect, NOSCRIPT errors after SCRIPT FLUSH).
TEST(AsyncRedisNativeWire, RepliesSplitAcrossReadsCompleteTheirOwnRequests) {
  RedisServer server;
  SplittingRelay relay(server.port());
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(relay.url()));
  const std::string stem = Unique("split");
  auto sync_api = lockkit::open(server.url());
  std::map<std::string, std::uint64_t> last_fence;
  for (int round = 0; round < 6; ++round) {
    if (round == 3) server.cli({"SCRIPT", "FLUSH"});
    std::vector<std::string> keys;
    std::vector<std::future<std::optional<Lock>>> acquires;
    for (int i = 0; i < 40; ++i) {
      keys.push_back(stem + "/" + std::to_string(i));
      acquires.push_back(locks.async_try_acquire(keys.back(), 20s, asio::use_future));
    }
    // A busy one too: its reply is the integer 0.
    auto held = sync_api->try_acquire(stem + "/busy", 20s);
    ASSERT_TRUE(held);
    auto busy = locks.async_try_acquire(stem + "/busy", 20s, asio::use_future);
    std::vector<Lock> granted;
    for (std::size_t i = 0; i < acquires.size(); ++i) {
      auto lock = acquires[i].get();
      ASSERT_TRUE(lock) << keys[i];
      EXPECT_EQ(lock->key(), keys[i]);
      // The fence is the server's: it grows per key, and the holder record has it.
      EXPECT_GT(lock->fence(), last_fence[keys[i]]) << keys[i];
      last_fence[keys[i]] = lock->fence();
      auto status = sync_api->status(keys[i]);
      ASSERT_TRUE(status) << keys[i];
      EXPECT_EQ(status->fence, lock->fence());
      granted.push_back(std::move(*lock));
    }
    EXPECT_FALSE(busy.get());
    EXPECT_TRUE(held->release());
    std::vector<std::future<bool>> releases;
    for (auto& lock : granted) releases.push_back(locks.async_release(lock, asio::use_future));
    for (auto& f : releases) EXPECT_TRUE(f.get());
    // Not ours any more: the release script answers 0.
    EXPECT_FALSE(locks.async_release(granted.front(), asio::use_future).get());
  }
  EXPECT_EQ(server.cli({"EXISTS", stem + "/0"}), "0");
}

// Many threads start operations at once: every one is sent (gathered into batches on the
// connection's strand) and completes once, with its own result.
TEST(AsyncRedisNativeWire, OperationsFromManyThreadsAllComplete) {
  auto& server = RedisServer::shared();
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  const std::string stem = Unique("threads");
  constexpr int kThreads = 8;
  constexpr int kEach = 100;
  std::atomic<int> granted{0};
  std::atomic<int> released{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::future<std::optional<Lock>>> acquires;
      for (int i = 0; i < kEach; ++i) {
        acquires.push_back(locks.async_try_acquire(
            stem + "/" + std::to_string(t) + "/" + std::to_string(i), 20s, asio::use_future));
      }
      std::vector<Lock> held;
      for (auto& f : acquires) {
        auto lock = f.get();
        if (!lock) continue;
        ++granted;
        held.push_back(std::move(*lock));
      }
      std::vector<std::future<bool>> releases;
      for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
      for (auto& f : releases) released += f.get() ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), kThreads * kEach);
  EXPECT_EQ(released.load(), kThreads * kEach);
  EXPECT_EQ(server.cli({"EXISTS", stem + "/0/0"}), "0");
}

// A burst of replies does not hold the executor: other handlers run after every slice of
// completions (32), not only after every reply that one read brought (the server answers about
// 80 of these per write, and a reader that falls behind finds several writes waiting).
TEST(AsyncRedisNativeWire, BurstOfRepliesLetsOtherHandlersRun) {
  RedisServer server;
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(server.url()));
  ASSERT_TRUE(locks.async_try_acquire(Unique("warm"), 20s, asio::use_future).get());
  const std::string stem = Unique("burst");
  constexpr int kOps = 2000;
  // Touched only on the io thread.
  int completed = 0;
  int at_last_tick = 0;
  int most_between_ticks = 0;
  std::vector<Lock> held;
  std::promise<void> ticker_done;
  // A handler that posts itself again each time it runs, until every acquire has completed:
  // it counts the completions that ran between two of its turns.
  std::function<void()> tick = [&] {
    most_between_ticks = std::max(most_between_ticks, completed - at_last_tick);
    at_last_tick = completed;
    if (completed == kOps) {
      ticker_done.set_value();
      return;
    }
    asio::post(io.io(), tick);
  };
  // All started from one handler: one write, and their replies come back together.
  asio::post(io.io(), [&] {
    for (int i = 0; i < kOps; ++i) {
      locks.async_try_acquire(stem + "/" + std::to_string(i), 20s,
                              [&](std::exception_ptr error, std::optional<Lock> lock) {
                                EXPECT_FALSE(error);
                                if (lock) held.push_back(std::move(*lock));
                                ++completed;
                              });
    }
    asio::post(io.io(), tick);
  });
  auto done = ticker_done.get_future();
  ASSERT_EQ(done.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(held.size(), static_cast<std::size_t>(kOps));
  EXPECT_GE(most_between_ticks, 1);
  EXPECT_LE(most_between_ticks, 64);
  std::vector<std::future<bool>> releases;
  for (auto& lock : held) releases.push_back(locks.async_release(lock, asio::use_future));
  for (auto& f : releases) EXPECT_TRUE(f.get());
}

}  // namespace
}  // namespace lockkit
