// SPDX-License-Identifier: MIT
// Installed-package check: every linked backend's scheme is known to lockkit::open without a
// registration call, and a lock can be taken through each URL given on the command line.
//   consumer <scheme>... -- <url>...
#include <lockkit/lockkit.hpp>

#include <algorithm>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  auto schemes = lockkit::registered_schemes();
  int i = 1;
  for (; i < argc && std::string(argv[i]) != "--"; ++i) {
    if (std::find(schemes.begin(), schemes.end(), argv[i]) == schemes.end()) {
      std::cerr << "consumer: scheme " << argv[i] << " is not registered\n";
      return 1;
    }
    std::cout << "scheme " << argv[i] << ": registered\n";
  }
  for (++i; i < argc; ++i) {
    auto api = lockkit::open(argv[i]);
    auto lock = api->try_acquire("package-test", 5s);
    if (!lock || !lock->release()) {
      std::cerr << "consumer: could not lock through " << argv[i] << "\n";
      return 1;
    }
    std::cout << "url " << api->backend() << ": locked and released\n";
  }
  return 0;
}
