// SPDX-License-Identifier: MIT
// The kit's fault cases on the noop: store (it grants every request, so the exclusivity
// checks do not apply; what the core does when a store fails does).
#include "conformance/lock_api_conformance.hpp"
#include "lockkit/noop.hpp"

namespace lockkit::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(NoOp, LeaseStoreFaults,
                         ::testing::Values(StoreCase{.name = "Unlocked",
                                                     .make_store = [] { return make_noop_store(); },
                                                     .make_unreachable = nullptr,
                                                     .exclusive = false}),
                         StoreCaseName);

}  // namespace
}  // namespace lockkit::testing
