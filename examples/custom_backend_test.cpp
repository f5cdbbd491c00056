// SPDX-License-Identifier: MIT
// The MapStore of custom_backend.hpp passes the conformance kit: the whole contract suite on a
// fake clock and on the real one, the store fault cases and the keep-alive cases.
#include <lockkit/testing/conformance.hpp>

#include <thread>

#include "custom_backend.hpp"
#include "lockkit/open.hpp"

namespace {

using lockkit::testing::ConformanceCase;
using lockkit::testing::KeepAliveCase;
using lockkit::testing::KeepAliveConformance;
using lockkit::testing::LeaseStoreFaults;
using lockkit::testing::LockApiConformance;
using lockkit::testing::StoreCase;

ConformanceCase FakeClock() {
  auto clock = std::make_shared<lockkit::ManualClock>();
  auto store = std::make_shared<example::MapStore>(clock);
  return {.name = "FakeClock",
          .make = [store] { return lockkit::make_lock_api(store); },
          .advance = [clock](std::chrono::milliseconds d) { clock->advance(d); },
          .expiry_ttl = std::chrono::seconds(30),
          .slack = std::chrono::milliseconds(0),
          .now = [clock] { return clock->now(); }};
}

ConformanceCase RealClockByUrl() {
  example::register_maptable();
  return {.name = "RealClockByUrl",
          .make = [] { return lockkit::open("maptable:conformance"); },
          .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
          .expiry_ttl = std::chrono::milliseconds(500),
          .slack = std::chrono::milliseconds(10),
          .now = nullptr};
}

INSTANTIATE_TEST_SUITE_P(MapStore, LockApiConformance,
                         ::testing::Values(FakeClock(), RealClockByUrl()),
                         lockkit::testing::CaseName);

INSTANTIATE_TEST_SUITE_P(MapStore, LeaseStoreFaults,
                         ::testing::Values(StoreCase{
                             .name = "MapStore",
                             .make_store = [] { return std::make_shared<example::MapStore>(); },
                             .make_unreachable = nullptr,
                             .exclusive = true}),
                         lockkit::testing::StoreCaseName);

// Keep-alive on the real clock: the store renews through the default `extend_many`.
INSTANTIATE_TEST_SUITE_P(MapStore, KeepAliveConformance,
                         ::testing::Values(KeepAliveCase{
                             .name = "RealClock",
                             .make =
                                 [store = std::make_shared<example::MapStore>()] {
                                   return lockkit::make_lock_api(store);
                                 },
                             .ttl = std::chrono::milliseconds(400),
                             .slack = std::chrono::milliseconds(0),
                             .remove = nullptr,
                             .pause = nullptr,
                             .resume = nullptr,
                             .make_impatient = nullptr,
                             .call_limit = std::chrono::milliseconds(0)}),
                         lockkit::testing::KeepAliveCaseName);

}  // namespace
