// SPDX-License-Identifier: MIT
// The contract suite on redis:// against a real redis-server (real clock, short TTLs), and the
// kit's store-level fault cases on `make_redis_store`.
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "support/redis_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

// Each `make` opens a new client (its own connections), like another process would.
ConformanceCase RedisCase(std::string name, std::string tail, bool tls = false) {
  return ConformanceCase{
      .name = std::move(name),
      .make =
          [tail, tls] {
            return lockkit::open(tls ? RedisServer::shared_tls().tls_url(tail)
                                     : RedisServer::shared().url(tail));
          },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = 400ms,  // LeaseHoldsUntilTtl needs ttl/2 of margin on a loaded machine
      .slack = 25ms,        // Redis expires by its millisecond clock; allow for scheduling
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(Redis, LockApiConformance,
                         ::testing::Values(RedisCase("Plain", ""),
                                           RedisCase("PrefixWithOpenBrace",
                                                     "?prefix=app%7B&connections=1"),
                                           RedisCase("Tls", "", true)),
                         CaseName);

// The store itself, without the core: the kit's fault cases and store-level contract.
StoreCase RedisStoreCase(std::string name, std::string tail, bool tls = false) {
  return StoreCase{
      .name = std::move(name),
      .make_store =
          [tail, tls] {
            return make_redis_store(parse_redis_url(tls ? RedisServer::shared_tls().tls_url(tail)
                                                        : RedisServer::shared().url(tail)));
          },
      // A closed port: nothing listens on port 1 of the loopback interface.
      .make_unreachable =
          [] {
            return make_redis_store(
                RedisOptions{.port = 1, .connect_timeout = 500ms, .command_timeout = 500ms});
          },
      .exclusive = true,
  };
}

INSTANTIATE_TEST_SUITE_P(Redis, LeaseStoreFaults,
                         ::testing::Values(RedisStoreCase("Plain", ""),
                                           RedisStoreCase("OneConnection", "?connections=1"),
                                           RedisStoreCase("Tls", "", true)),
                         StoreCaseName);

}  // namespace
}  // namespace lockkit::testing
