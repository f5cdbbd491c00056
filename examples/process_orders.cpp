// SPDX-License-Identifier: MIT
// The original module's examples in C++: processOrder, a counter under with_lock, and two
// threads contending for the same order.
//
//   process_orders [backend-url]     (default: memory:)
#include <iostream>
#include <latch>
#include <mutex>
#include <thread>

#include "lockkit/lockkit.hpp"

using namespace std::chrono_literals;

namespace {

std::mutex g_print_mu;  // keeps the two workers' lines whole

void say(const std::string& line) {
  std::lock_guard<std::mutex> guard(g_print_mu);
  std::cout << line << std::endl;
}

// The seed's processOrder: skip the order if another worker holds it.
bool process_order(lockkit::LockApi& locks, const std::string& worker, const std::string& id,
                   std::latch* holding = nullptr, std::latch* tried = nullptr) {
  auto lock = locks.try_acquire("order:" + id, 30s);
  if (!lock) {
    say(worker + ": could not lock order " + id + ", another worker is handling it");
    return false;
  }
  say(worker + ": processing order " + id + " with fence " + std::to_string(lock->fence()));
  if (holding) holding->count_down();  // let the other worker try while we hold the lock
  if (tried) tried->wait();
  say(worker + ": order " + id + " done");
  return true;  // the lock is released here, also if a step above had thrown
}

// The seed's incrementCounter, with retries instead of giving up when busy.
long g_counter = 0;  // deliberately unsynchronised: the lock is what protects it

bool increment_counter(lockkit::LockApi& locks, const std::string& counter_id) {
  auto lock = locks.acquire("counter:" + counter_id, 10s, lockkit::RetryPolicy{.max_wait = 5s});
  if (!lock) return false;
  long value = g_counter;  // read ...
  g_counter = value + 1;   // ... modify, write: safe only under the lock
  return lock->release();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto locks = lockkit::open(argc > 1 ? argv[1] : "memory:");

    // Two workers pick up order 42 at the same moment: exactly one processes it.
    std::latch holding(1);
    std::latch tried(1);
    bool a_done = false;
    bool b_done = false;
    std::thread a([&] { a_done = process_order(*locks, "worker A", "42", &holding, &tried); });
    holding.wait();
    std::thread b([&] {
      b_done = process_order(*locks, "worker B", "42");
      tried.count_down();
    });
    a.join();
    b.join();
    std::cout << "order 42 was processed " << (a_done != b_done ? "exactly once" : "WRONGLY")
              << "\n";

    // with_lock: the guard pattern; the result is empty when the key is busy.
    auto report = lockkit::with_lock(*locks, "report:daily", 1min, [] { return 7; });
    std::cout << "with_lock ran the report: " << (report ? "yes" : "no") << "\n";

    // Two threads increment one counter 1000 times each under the lock.
    std::thread t1([&] {
      for (int i = 0; i < 1000; ++i) increment_counter(*locks, "visits");
    });
    std::thread t2([&] {
      for (int i = 0; i < 1000; ++i) increment_counter(*locks, "visits");
    });
    t1.join();
    t2.join();
    std::cout << "counter = " << g_counter << " (expected 2000)\n";
    return g_counter == 2000 && a_done != b_done ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "process_orders: " << e.what() << "\n";
    return 1;
  }
}
