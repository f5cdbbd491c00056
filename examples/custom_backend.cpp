// SPDX-License-Identifier: MIT
// Your own backend in a few lines: the MapStore of custom_backend.hpp, registered as
// `maptable:` and used through lockkit::open like any built-in backend.
#include <iostream>

#include "custom_backend.hpp"
#include "lockkit/lockkit.hpp"

using namespace std::chrono_literals;

int main() try {
  example::register_maptable();
  auto worker_a = lockkit::open("maptable:orders");
  auto worker_b = lockkit::open("maptable:orders");  // the same table, another client
  std::cout << "backend: " << worker_a->backend() << "\n";

  auto lock = worker_a->try_acquire("order:42", 30s);
  if (!lock) return 1;
  std::cout << "a holds order:42 with fence " << lock->fence() << "\n";
  std::cout << "b: " << (worker_b->try_acquire("order:42", 30s) ? "got it" : "busy") << "\n";
  auto info = worker_b->status("order:42");
  std::cout << "status: fence " << (info ? info->fence : 0) << "\n";
  lock->release();
  auto next = worker_b->try_acquire("order:42", 30s);
  std::cout << "after release b: " << (next ? "got it" : "busy") << ", fence "
            << (next ? next->fence() : 0) << "\n";
  return next && next->fence() > 1 ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "custom_backend: " << e.what() << "\n";
  return 1;
}
