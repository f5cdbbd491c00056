// SPDX-License-Identifier: MIT
// The contract suite and the store kit on redlock:// over 1, 3 and 5 real redis-servers.
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "support/redis_server.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

std::string AllNodesUrl(const std::vector<std::unique_ptr<RedisServer>>& servers) {
  std::string url = "redlock://";
  for (const auto& s : servers) url += "127.0.0.1:" + std::to_string(s->port()) + ",";
  url.pop_back();
  return url;
}

// Five servers shared by the binary; an N-node case uses the first N, the one-node case the
// last. A node lockkit has not seen yet gives no vote while it is younger than the longest ttl
// the others recorded (lock-delay), so whichever case runs first, all five are met together
// once, with a short ttl, before any case runs: from then on every node's history is known.
std::vector<std::unique_ptr<RedisServer>>& Servers() {
  static auto* servers = [] {
    auto* v = new std::vector<std::unique_ptr<RedisServer>>();
    for (int i = 0; i < 5; ++i) v->push_back(std::make_unique<RedisServer>());
    {
      auto api = lockkit::open(AllNodesUrl(*v));
      auto lock = api->try_acquire("conformance/meet-the-nodes", 100ms);
      if (!lock) throw std::runtime_error("five fresh redis-servers refused a first lock");
      (void)lock->release();
    }
    // Each node records that its lock-delay is over in the background: wait for all five.
    for (const auto& s : *v) {
      for (int tries = 0; s->cli({"HGET", "lockkit:{redlock}", "run"}).empty(); ++tries) {
        if (tries == 500) throw std::runtime_error("a node never recorded its run");
        std::this_thread::sleep_for(10ms);
      }
    }
    return v;
  }();
  return *servers;
}

std::string RedlockUrl(std::size_t n, std::string_view tail) {
  std::string url = "redlock://";
  for (std::size_t i = 0; i < n; ++i) {
    if (i) url += ',';
    url += "127.0.0.1:" + std::to_string(Servers()[n == 1 ? 4 : i]->port());
  }
  return url + std::string(tail);
}

ConformanceCase RedlockCase(std::string name, std::size_t n, std::string tail = "") {
  return ConformanceCase{
      .name = std::move(name),
      .make = [n, tail] { return lockkit::open(RedlockUrl(n, tail)); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = 400ms,
      .slack = 25ms,
      .now = nullptr,
  };
}

INSTANTIATE_TEST_SUITE_P(Redlock, LockApiConformance,
                         ::testing::Values(RedlockCase("OneNode", 1), RedlockCase("ThreeNodes", 3),
                                           RedlockCase("FiveNodes", 5),
                                           RedlockCase("ThreeNodesPrefixed", 3,
                                                       "?prefix=app%7B&connections=1")),
                         CaseName);

StoreCase RedlockStoreCase(std::string name, std::size_t n) {
  return StoreCase{
      .name = std::move(name),
      .make_store = [n] { return make_redlock_store(parse_redlock_url(RedlockUrl(n, ""))); },
      // Closed ports: nothing listens on ports 1..3 of the loopback interface.
      .make_unreachable =
          [n] {
            RedlockOptions o;
            for (std::size_t i = 0; i < n; ++i) {
              o.nodes.push_back(RedisOptions{.port = static_cast<std::uint16_t>(1 + i),
                                             .connect_timeout = 500ms,
                                             .command_timeout = 500ms});
            }
            return make_redlock_store(o);
          },
      .exclusive = true,
  };
}

INSTANTIATE_TEST_SUITE_P(Redlock, LeaseStoreFaults,
                         ::testing::Values(RedlockStoreCase("OneNode", 1),
                                           RedlockStoreCase("ThreeNodes", 3),
                                           RedlockStoreCase("FiveNodes", 5)),
                         StoreCaseName);

}  // namespace
}  // namespace lockkit::testing
