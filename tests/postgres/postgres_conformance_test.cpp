// SPDX-License-Identifier: MIT
// The contract suite on postgres:// against a real server (real clock, short TTLs): through
// open() and through the bare store of make_postgres_store, plus the kit's store-level cases.
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/open.hpp"
#include "lockkit/postgres.hpp"
#include "support/postgres_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit::testing {
namespace {

// Short, but long enough that a busy 2-core CI box (sanitizers, parallel tests) does not
// stall a test past a fraction of it: in ExtendKeepsLeaseAlive a fresh client's first call
// (connect, authenticate, check the schema, prepare) must fit in 40% of it, which took up to
// ~500 ms under TSan on a loaded box.
constexpr std::chrono::milliseconds kExpiryTtl{kSanitizerBuild ? 2000 : 1000};
// The server's clock_timestamp() runs at the same rate as ours; only scheduling differs.
constexpr std::chrono::milliseconds kSlack{50};

ConformanceCase RealServerCase() {
  return ConformanceCase{
      .name = "RealServer",
      // A new client each time, like another process would be; all share the one lease table.
      .make = [] { return lockkit::open(PostgresServer::shared().url("schema=conformance")); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = kExpiryTtl,
      .slack = kSlack,
      .now = nullptr,
  };
}

PostgresOptions StoreOptions(std::string conninfo) {
  return PostgresOptions{.conninfo = std::move(conninfo), .schema = "conformance_store"};
}

std::string ServerConninfo() {
  return PostgresServer::shared().url();  // libpq takes the URI as it is
}

// The bare store under the core's LockApi, as a user composing stores would build it.
ConformanceCase StoreCaseOverMakeLockApi() {
  return ConformanceCase{
      .name = "MakePostgresStore",
      .make = [] { return make_lock_api(make_postgres_store(StoreOptions(ServerConninfo()))); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = kExpiryTtl,
      .slack = kSlack,
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(Postgres, LockApiConformance,
                         ::testing::Values(RealServerCase(), StoreCaseOverMakeLockApi()), CaseName);

INSTANTIATE_TEST_SUITE_P(
    Postgres, LeaseStoreFaults,
    ::testing::Values(StoreCase{
        .name = "RealServer",
        .make_store = [] { return make_postgres_store(StoreOptions(ServerConninfo())); },
        // Port 1 on loopback refuses at once.
        .make_unreachable =
            [] {
              auto options = StoreOptions("host=127.0.0.1 port=1 user=lockkit dbname=lockkit");
              options.connect_timeout = std::chrono::milliseconds(1000);
              options.command_timeout = std::chrono::milliseconds(1000);
              return make_postgres_store(options);
            },
        .exclusive = true}),
    StoreCaseName);

}  // namespace
}  // namespace lockkit::testing
