// SPDX-License-Identifier: MIT
// Installed-package check of lockkit::async: an AsyncLockApi over memory: through a future, a
// coroutine and a callback; given a Redis port, also over redis://, where it must take the
// native path (its own pipelined connection, named lockkit-async in CLIENT LIST) in static and
// shared builds alike.
//   async_consumer [<redis port>]
#include <lockkit/async.hpp>
#include <lockkit/lockkit.hpp>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <exception>
#include <future>
#include <iostream>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;

asio::awaitable<bool> take_and_give_back(lockkit::AsyncLockApi& locks) {
  auto lock =
      co_await locks.async_acquire("package-async", 5s, {.max_wait = 2s}, asio::use_awaitable);
  if (!lock) co_return false;
  co_return co_await locks.async_release(*lock, asio::use_awaitable);
}

// Returns the `CLIENT LIST` of the Redis server on `port` (inline command, bulk reply).
std::string client_list(unsigned short port) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(socket, asio::buffer(std::string("CLIENT LIST\r\n")));
  asio::streambuf buf;
  asio::read_until(socket, buf, "\r\n");
  std::istream in(&buf);
  std::string header;
  std::getline(in, header);  // "$<length>\r"
  if (header.empty() || header[0] != '$') throw std::runtime_error("CLIENT LIST: " + header);
  const std::size_t length = std::stoul(header.substr(1)) + 2;
  if (buf.size() < length) asio::read(socket, buf, asio::transfer_exactly(length - buf.size()));
  return std::string(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + length);
}

// An io_context run by a thread of its own until it runs out of work, also on an exception.
struct IoThread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread runner{[this] { io.run(); }};
  ~IoThread() {
    work.reset();
    runner.join();
  }
};

}  // namespace

int main(int argc, char** argv) try {
  IoThread thread;
  asio::io_context& io = thread.io;
  int status = 0;
  {
    lockkit::AsyncLockApi locks(io.get_executor(), lockkit::open("memory:"));
    auto lock = locks.async_try_acquire("package-async", 5s, asio::use_future).get();
    if (!lock || locks.async_try_acquire("package-async", 5s, asio::use_future).get() ||
        !locks.async_release(*lock, asio::use_future).get()) {
      std::cerr << "async_consumer: memory: future acquire/release failed\n";
      status = 1;
    } else {
      std::cout << "memory: future: locked, refused, released\n";
    }
    if (!asio::co_spawn(io, take_and_give_back(locks), asio::use_future).get()) {
      std::cerr << "async_consumer: memory: coroutine acquire/release failed\n";
      status = 1;
    } else {
      std::cout << "memory: coroutine: locked, released\n";
    }
    std::promise<bool> called;
    locks.async_try_acquire("package-async", 5s,
                            [&called](std::exception_ptr error, std::optional<lockkit::Lock> l) {
                              called.set_value(!error && l.has_value());
                            });
    if (!called.get_future().get()) {
      std::cerr << "async_consumer: memory: callback acquire failed\n";
      status = 1;
    } else {
      std::cout << "memory: callback: locked\n";
    }
  }
  if (argc > 1) {
    const auto port = static_cast<unsigned short>(std::stoul(argv[1]));
    lockkit::AsyncLockApi locks(io.get_executor(),
                                lockkit::open("redis://127.0.0.1:" + std::string(argv[1])));
    auto lock = locks.async_try_acquire("package-async", 5s, asio::use_future).get();
    const std::string clients = client_list(port);
    if (!lock || clients.find("name=lockkit-async ") == std::string::npos) {
      std::cerr << "async_consumer: redis://: no native lockkit-async connection; clients:\n"
                << clients;
      status = 1;
    } else if (!locks.async_release(*lock, asio::use_future).get()) {
      std::cerr << "async_consumer: redis://: release failed\n";
      status = 1;
    } else {
      std::cout << "redis: native pipelined connection: locked, released\n";
    }
  }
  return status;
} catch (const std::exception& e) {
  std::cerr << "async_consumer: " << e.what() << "\n";
  return 1;
}
