// SPDX-License-Identifier: MIT
// The one contract suite (DESIGN.md) every backend passes unchanged: the parameter type.
#ifndef LOCKKIT_TESTS_CONFORMANCE_LOCK_API_CONFORMANCE_HPP_
#define LOCKKIT_TESTS_CONFORMANCE_LOCK_API_CONFORMANCE_HPP_

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lockkit/lock_api.hpp"

namespace lockkit::testing {

// One backend under test. A backend's test binary instantiates the suite with its cases:
//   INSTANTIATE_TEST_SUITE_P(Redis, LockApiConformance, ::testing::Values(redis_case()),
//                            lockkit::testing::CaseName);
struct ConformanceCase {
  std::string name;  // PascalCase, e.g. "FakeClock"
  // Returns a client of the store under test. Every call must reach the same store (the same
  // table, server or file), so that two clients contend like two processes would; it may
  // return the same object each time.
  std::function<std::shared_ptr<LockApi>()> make;
  // Lets `d` of store time pass: advances a fake clock, or sleeps for real stores.
  std::function<void(std::chrono::milliseconds d)> advance;
  // The TTL used by expiry tests: long for a fake clock, short (e.g. 300ms) for a real one.
  std::chrono::milliseconds expiry_ttl{std::chrono::seconds(30)};
  // How much later than its TTL a real store may still show a lease (0 for a fake clock).
  std::chrono::milliseconds slack{0};
  // The local clock that `Lock::valid_until()` is measured on (the fake clock's `now` for
  // memory: with a `ManualClock`); null = `std::chrono::steady_clock::now`.
  std::function<std::chrono::steady_clock::time_point()> now;
};

// Prints a case by name in failure messages.
inline void PrintTo(const ConformanceCase& c, std::ostream* os) {
  *os << c.name;
}

// Names instantiations after `ConformanceCase::name`.
inline std::string CaseName(const ::testing::TestParamInfo<ConformanceCase>& info) {
  return info.param.name;
}

class LockApiConformance : public ::testing::TestWithParam<ConformanceCase> {
 protected:
  void SetUp() override;
  // Returns a key unique to this test and run, so persistent stores need no cleanup.
  std::string Key(std::string_view suffix = "k") const;
  // Returns the local clock of `valid_until()`.
  std::chrono::steady_clock::time_point Now() const;
  std::shared_ptr<LockApi> api_;    // one client
  std::shared_ptr<LockApi> other_;  // a second client of the same store
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_CONFORMANCE_LOCK_API_CONFORMANCE_HPP_
