// SPDX-License-Identifier: MIT
// The original module's processOrder as a C++20 coroutine on asio: acquire "order:<id>", do
// the work, release; several workers on one thread, none of them blocking it.
//
//   async_orders [backend-url]     (default: memory:)
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/lockkit.hpp"

using namespace std::chrono_literals;

namespace {

// Counts the workers that have tried an order; the holder keeps working until all have, so the
// example shows the contention every time.
struct Tried {
  int count = 0;
  int expected = 0;
  asio::steady_timer all;  // cancelled when count reaches expected
};

// The seed's processOrder: skip the order if another worker holds it.
asio::awaitable<bool> process_order(lockkit::AsyncLockApi& locks, std::string worker,
                                    std::string id, Tried& tried) {
  std::optional<lockkit::Lock> lock =
      co_await locks.async_try_acquire("order:" + id, 30s, asio::use_awaitable);
  if (++tried.count == tried.expected) tried.all.cancel();
  if (!lock) {
    std::cout << worker << ": could not lock order " << id << ", another worker is handling it\n";
    co_return false;
  }
  std::cout << worker << ": processing order " << id << " with fence " << lock->fence() << "\n";
  if (tried.count < tried.expected) {
    std::error_code ignored;
    co_await tried.all.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  co_await locks.async_release(*lock, asio::use_awaitable);
  std::cout << worker << ": order " << id << " done\n";
  co_return true;
}

// The same with waiting: each worker takes the order in turn (async_acquire waits on timers,
// not threads).
asio::awaitable<void> process_in_turn(lockkit::AsyncLockApi& locks, std::string worker,
                                      std::string id, std::vector<std::uint64_t>& fences) {
  std::optional<lockkit::Lock> lock = co_await locks.async_acquire(
      "order:" + id, 30s, lockkit::RetryPolicy{.max_wait = 10s, .initial_delay = 5ms},
      asio::use_awaitable);
  if (!lock) co_return;
  fences.push_back(lock->fence());
  asio::steady_timer work(co_await asio::this_coro::executor, 10ms);
  co_await work.async_wait(asio::use_awaitable);
  co_await locks.async_release(*lock, asio::use_awaitable);
  std::cout << worker << ": order " << id << " done in turn\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    asio::io_context io;
    lockkit::AsyncLockApi locks(io.get_executor(), lockkit::open(argc > 1 ? argv[1] : "memory:"));

    // Three workers pick up order 42 at the same moment: exactly one processes it.
    Tried tried{.count = 0, .expected = 3, .all = asio::steady_timer(io, 1min)};
    int processed = 0;
    for (const char* worker : {"worker A", "worker B", "worker C"}) {
      asio::co_spawn(io, process_order(locks, worker, "42", tried),
                     [&](std::exception_ptr e, bool done) {
                       if (e) std::rethrow_exception(e);
                       processed += done ? 1 : 0;
                     });
    }
    io.run();
    std::cout << "order 42 was processed " << (processed == 1 ? "exactly once" : "WRONGLY") << "\n";

    // Three workers wait for order 7 and take it one after another.
    io.restart();
    std::vector<std::uint64_t> fences;
    for (const char* worker : {"worker A", "worker B", "worker C"}) {
      asio::co_spawn(io, process_in_turn(locks, worker, "7", fences), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
    }
    io.run();
    const bool increasing = fences.size() == 3 && fences[0] < fences[1] && fences[1] < fences[2];
    std::cout << fences.size() << " workers took order 7 in turn, fences "
              << (increasing ? "increasing" : "WRONG") << "\n";

    // Outside a coroutine: a future.
    std::future<std::optional<lockkit::Lock>> f =
        locks.async_try_acquire("report:daily", 1min, asio::use_future);
    io.restart();
    io.run();
    std::optional<lockkit::Lock> report = f.get();
    std::cout << "future: " << (report ? "got the report lock" : "busy") << "\n";
    return processed == 1 && increasing && report ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "async_orders: " << e.what() << "\n";
    return 1;
  }
}
