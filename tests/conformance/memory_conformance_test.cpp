// SPDX-License-Identifier: MIT
// The contract suite on memory: with a fake clock and with the real steady clock.
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/memory.hpp"

namespace lockkit::testing {
namespace {

ConformanceCase FakeClockCase() {
  auto clock = std::make_shared<ManualClock>();
  auto api = std::make_shared<InMemoryLockApi>(MemoryOptions{.clock = clock});
  return ConformanceCase{
      .name = "FakeClock",
      .make = [api] { return api; },
      .advance = [clock](std::chrono::milliseconds d) { clock->advance(d); },
      .expiry_ttl = std::chrono::seconds(30),
      .slack = std::chrono::milliseconds(0),
      .now = [clock] { return clock->now(); },
  };
}

ConformanceCase RealClockCase() {
  auto api = std::make_shared<InMemoryLockApi>();
  return ConformanceCase{
      .name = "RealClock",
      .make = [api] { return api; },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = std::chrono::milliseconds(1000),  // generous: CI runs suites in parallel
      .slack = std::chrono::milliseconds(5),
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(Memory, LockApiConformance,
                         ::testing::Values(FakeClockCase(), RealClockCase()), CaseName);

}  // namespace
}  // namespace lockkit::testing
