// SPDX-License-Identifier: MIT
// The contract suite on redis:// against a real redis-server (real clock, short TTLs).
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/open.hpp"
#include "support/redis_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

// Each `make` opens a new client (its own connections), like another process would.
ConformanceCase RedisCase(std::string name, std::string tail) {
  return ConformanceCase{
      .name = std::move(name),
      .make = [tail] { return lockkit::open(RedisServer::shared().url(tail)); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = 400ms,  // LeaseHoldsUntilTtl needs ttl/2 of margin on a loaded machine
      .slack = 25ms,        // Redis expires by its millisecond clock; allow for scheduling
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(Redis, LockApiConformance,
                         ::testing::Values(RedisCase("Plain", ""),
                                           RedisCase("PrefixWithOpenBrace",
                                                     "?prefix=app%7B&connections=1")),
                         CaseName);

}  // namespace
}  // namespace lockkit::testing
