// SPDX-License-Identifier: MIT
// An asio io_context run by one thread of its own, for the AsyncLockApi tests.
#ifndef LOCKKIT_TESTS_SUPPORT_IO_THREAD_HPP_
#define LOCKKIT_TESTS_SUPPORT_IO_THREAD_HPP_

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <thread>

namespace lockkit::testing {

// Runs `io()` on its own thread from construction. The destructor lets run() return by itself
// once every operation is done (declare the AsyncLockApis after this, so they are gone by then)
// and joins the thread.
class IoThread {
 public:
  IoThread() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {
    id_ = thread_.get_id();
  }
  ~IoThread() {
    work_.reset();
    thread_.join();
  }
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  asio::io_context& io() { return io_; }
  // The id of the thread that runs the handlers.
  std::thread::id id() const { return id_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::thread::id id_;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_IO_THREAD_HPP_
