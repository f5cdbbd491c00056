// SPDX-License-Identifier: MIT
// The contract suite and the store fault cases on etcd:// against a real etcd (real clock).
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/etcd.hpp"
#include "lockkit/open.hpp"
#include "support/etcd_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

// Each `make` opens a new client (its own channels), like another process would.
ConformanceCase EtcdCase(std::string name, std::string tail) {
  return ConformanceCase{
      .name = std::move(name),
      .make = [tail] { return lockkit::open(EtcdServer::shared().url(tail)); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      // etcd leases count whole seconds: 1 s is the shortest lease (the fixture's cluster
      // minimum is 1 s too).
      .expiry_ttl = 1s,
      // The leader looks for expired leases every 500 ms, then revokes them through raft.
      .slack = 800ms,
      .now = nullptr,
  };
}

// Generous command timeouts: sanitizer builds on a loaded machine are slow.
INSTANTIATE_TEST_SUITE_P(Etcd, LockApiConformance,
                         ::testing::Values(EtcdCase("DefaultPrefix", "?command_timeout=10s"),
                                           EtcdCase("OtherPrefix",
                                                    "?prefix=other%00%FF/&command_timeout=10s")),
                         CaseName);

EtcdOptions Options() {
  EtcdOptions o = parse_etcd_url(EtcdServer::shared().url("?command_timeout=10s"));
  return o;
}

INSTANTIATE_TEST_SUITE_P(Etcd, LeaseStoreFaults,
                         ::testing::Values(StoreCase{
                             .name = "EtcdStore",
                             .make_store = [] { return make_etcd_store(Options()); },
                             .make_unreachable =
                                 [] {
                                   // A port nothing listens on (the fixture's ports are below the
                                   // ephemeral range; port 1 needs root to listen on).
                                   return make_etcd_store(
                                       parse_etcd_url("etcd://127.0.0.1:1?connect_timeout=500ms"));
                                 },
                             .exclusive = true}),
                         StoreCaseName);

// Keep-alive: etcd leases count whole seconds, so 1 s is the shortest ttl.
INSTANTIATE_TEST_SUITE_P(
    Etcd, KeepAliveConformance,
    ::testing::Values(KeepAliveCase{
        .name = "DefaultPrefix",
        .make = [] { return lockkit::open(EtcdServer::shared().url("?command_timeout=10s")); },
        .ttl = 1s,
        .slack = 800ms,  // the leader's pass over expired leases, then the revoke through raft
        .remove = nullptr,
        .pause = nullptr,
        .resume = nullptr,
        .make_impatient = nullptr,
        .call_limit = 0ms}),
    KeepAliveCaseName);

}  // namespace
}  // namespace lockkit::testing
