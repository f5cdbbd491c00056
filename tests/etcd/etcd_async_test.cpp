// SPDX-License-Identifier: MIT
// `AsyncLockApi` over etcd:// (its blocking calls run on the async component's bounded pool):
// futures and callbacks, a waiter granted when the holder releases, and a store failure that
// reaches the handler.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "lockkit/async.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/retry.hpp"
#include "support/etcd_server.hpp"
#include "support/io_thread.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;

using testing::IoThread;

TEST(EtcdAsync, FuturesAndCallbacksGrantRefuseAndRelease) {
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(), lockkit::open(EtcdServer::shared().url()));
  const std::string key = "async/" + make_token().substr(0, 8);
  std::optional<Lock> lock = locks.async_try_acquire(key, 5s, asio::use_future).get();
  ASSERT_TRUE(lock);
  EXPECT_FALSE(locks.async_try_acquire(key, 5s, asio::use_future).get()) << "granted twice";
  EXPECT_TRUE(locks.async_extend(*lock, 10s, asio::use_future).get());
  std::promise<bool> released;
  locks.async_release(*lock, [&](std::exception_ptr error, bool ours) {
    if (error) {
      released.set_exception(error);
    } else {
      released.set_value(ours);
    }
  });
  EXPECT_TRUE(released.get_future().get());
  auto again = locks.async_try_acquire(key, 5s, asio::use_future).get();
  ASSERT_TRUE(again);
  EXPECT_GT(again->fence(), lock->fence()) << "etcd's fence is the key's create revision";
  EXPECT_TRUE(locks.async_release(*again, asio::use_future).get());
}

TEST(EtcdAsync, WaiterIsGrantedWhenTheHolderReleases) {
  IoThread io;
  auto api = lockkit::open(EtcdServer::shared().url());
  AsyncLockApi locks(io.io().get_executor(), api);
  const std::string key = "async/" + make_token().substr(0, 8);
  auto holder = api->try_acquire(key, 10s);
  ASSERT_TRUE(holder);
  auto waiter = locks.async_acquire(key, 5s, RetryPolicy{.max_wait = 20s}, asio::use_future);
  EXPECT_EQ(waiter.wait_for(300ms), std::future_status::timeout) << "granted while held";
  ASSERT_TRUE(holder->release());
  auto lock = waiter.get();
  ASSERT_TRUE(lock) << "the waiter gave up";
  EXPECT_GT(lock->fence(), holder->fence());
  EXPECT_TRUE(locks.async_release(*lock, asio::use_future).get());
}

TEST(EtcdAsync, UnreachableClusterReachesTheHandlerAsBackendError) {
  IoThread io;
  AsyncLockApi locks(io.io().get_executor(),
                     lockkit::open("etcd://127.0.0.1:1?connect_timeout=500ms"));
  auto future = locks.async_try_acquire("k", 5s, asio::use_future);
  EXPECT_THROW(future.get(), BackendError);
}

}  // namespace
}  // namespace lockkit
