// SPDX-License-Identifier: MIT
// The contract suite on postgres:// against a real server (real clock, short TTLs).
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/open.hpp"
#include "support/postgres_server.hpp"

namespace lockkit::testing {
namespace {

ConformanceCase RealServerCase() {
  return ConformanceCase{
      .name = "RealServer",
      // A new client each time, like another process would be; all share the one lease table.
      .make = [] { return lockkit::open(PostgresServer::shared().url("schema=conformance")); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      // Short, but long enough that a busy 2-core CI box (sanitizers, parallel tests) does not
      // stall a test past a fraction of it: ExtendKeepsLeaseAlive needs 60% of it to spare.
      .expiry_ttl = std::chrono::milliseconds(1000),
      // The server's clock_timestamp() runs at the same rate as ours; only scheduling differs.
      .slack = std::chrono::milliseconds(50),
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(Postgres, LockApiConformance, ::testing::Values(RealServerCase()),
                         CaseName);

}  // namespace
}  // namespace lockkit::testing
