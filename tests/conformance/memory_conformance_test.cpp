// SPDX-License-Identifier: MIT
// The contract suite on memory: with a fake clock and with the real steady clock, and the kit's
// fault cases on the memory: and noop: stores.
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/memory.hpp"
#include "lockkit/noop.hpp"

namespace lockkit::testing {
namespace {

ConformanceCase FakeClockCase() {
  auto clock = std::make_shared<ManualClock>();
  auto api = make_memory_lock_api(MemoryOptions{.clock = clock});
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
  auto api = make_memory_lock_api();
  return ConformanceCase{
      .name = "RealClock",
      .make = [api] { return api; },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = std::chrono::milliseconds(1000),  // generous: CI runs suites in parallel
      .slack = std::chrono::milliseconds(5),
      .now = nullptr,
  };
}

// The bare store under the core's LockApi, as a user's own store would be run.
ConformanceCase StoreCaseOverMakeLockApi() {
  auto clock = std::make_shared<ManualClock>();
  auto store = make_memory_store(MemoryOptions{.clock = clock, .shards = 4});
  return ConformanceCase{
      .name = "MakeLockApi",
      .make = [store] { return make_lock_api(store); },
      .advance = [clock](std::chrono::milliseconds d) { clock->advance(d); },
      .expiry_ttl = std::chrono::seconds(30),
      .slack = std::chrono::milliseconds(0),
      .now = [clock] { return clock->now(); },
  };
}

INSTANTIATE_TEST_SUITE_P(Memory, LockApiConformance,
                         ::testing::Values(FakeClockCase(), RealClockCase(),
                                           StoreCaseOverMakeLockApi()),
                         CaseName);

INSTANTIATE_TEST_SUITE_P(
    Memory, LeaseStoreFaults,
    ::testing::Values(StoreCase{.name = "FakeClock",
                                .make_store =
                                    [] {
                                      return make_memory_store(
                                          MemoryOptions{.clock = std::make_shared<ManualClock>()});
                                    },
                                .make_unreachable = nullptr},
                      StoreCase{.name = "RealClock",
                                .make_store = [] { return make_memory_store(); },
                                .make_unreachable = nullptr}),
    StoreCaseName);

// Keep-alive on the real clock (the keeper runs on the store's clock; these cases sleep).
INSTANTIATE_TEST_SUITE_P(Memory, KeepAliveConformance,
                         ::testing::Values(KeepAliveCase{
                             .name = "RealClock",
                             .make = [store = make_memory_store()] { return make_lock_api(store); },
                             .ttl = std::chrono::milliseconds(400),
                             .slack = std::chrono::milliseconds(0),
                             .remove = nullptr,
                             .pause = nullptr,
                             .resume = nullptr,
                             .make_impatient = nullptr,
                             .call_limit = std::chrono::milliseconds(0)}),
                         KeepAliveCaseName);

}  // namespace
}  // namespace lockkit::testing
