// SPDX-License-Identifier: MIT
// Installed-package check: every linked backend's scheme is known to lockkit::open without a
// registration call, a lock can be taken through each URL given, and URLs of unreachable stores
// fail with BackendError (not "unknown scheme"), so their backend was linked too. It also
// builds the example's store of its own (examples/custom_backend.hpp) against the installed
// <lockkit/backend.hpp>, registers it and locks through it, as a user's own backend would.
//   consumer <scheme>... -- <url>... [-- <unreachable url>...]
#include <lockkit/backend.hpp>
#include <lockkit/lockkit.hpp>

#include "../../examples/custom_backend.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <iostream>
#include <memory>
#include <string>

namespace {

// Registers `pkgmap:`, then takes a key twice through it: the second attempt must be refused.
bool own_store_works() {
  using namespace std::chrono_literals;
  lockkit::register_backend("pkgmap",
                            [](std::string_view) { return std::make_shared<example::MapStore>(); });
  auto api = lockkit::open("pkgmap:");
  auto first = api->try_acquire("own-store", 5s);
  auto second = api->try_acquire("own-store", 5s);
  auto info = api->status("own-store");
  return first && !second && first->fence() == 1 && info && info->fence == 1 &&
         api->list("own").size() == 1 && first->release() && !api->status("own-store");
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace std::chrono_literals;
  if (!own_store_works()) {
    std::cerr << "consumer: a LeaseStore of its own did not lock through make_lock_api\n";
    return 1;
  }
  std::cout << "own LeaseStore: locked, refused, released\n";
  auto schemes = lockkit::registered_schemes();
  int i = 1;
  for (; i < argc && std::string(argv[i]) != "--"; ++i) {
    if (std::find(schemes.begin(), schemes.end(), argv[i]) == schemes.end()) {
      std::cerr << "consumer: scheme " << argv[i] << " is not registered\n";
      return 1;
    }
    std::cout << "scheme " << argv[i] << ": registered\n";
  }
  for (++i; i < argc && std::string(argv[i]) != "--"; ++i) {
    auto api = lockkit::open(argv[i]);
    auto lock = api->try_acquire("package-test", 5s);
    if (!lock || !lock->release()) {
      std::cerr << "consumer: could not lock through " << argv[i] << "\n";
      return 1;
    }
    std::cout << "url " << api->backend() << ": locked and released\n";
  }
  for (++i; i < argc; ++i) {
    try {
      auto api = lockkit::open(argv[i]);
      auto lock = api->try_acquire("package-test", 5s);
      std::cerr << "consumer: " << argv[i] << " should be unreachable\n";
      return 1;
    } catch (const lockkit::BackendError& e) {
      std::cout << "url " << argv[i] << ": BackendError (" << lockkit::to_string(e.kind()) << ")\n";
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "consumer: " << e.what() << "\n";  // e.g. an unknown scheme: a backend is missing
  return 1;
}
