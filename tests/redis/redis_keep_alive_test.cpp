// SPDX-License-Identifier: MIT
// Lock::keep_alive on a real redis-server: the kit's keep-alive cases (with DEL behind the
// holder's back and SIGSTOP), plain and over TLS, and 10,000 kept-alive locks in one process.
#include <gtest/gtest.h>
#include <signal.h>

#include <optional>
#include <string>

#include "lockkit/open.hpp"
#include "lockkit/testing/conformance.hpp"
#include "support/keep_alive_cases.hpp"
#include "support/redis_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using namespace keep_alive;

std::string unique(std::string_view stem) {
  return "keep-alive/" + std::string(stem) + "/" + make_token().substr(0, 8);
}

// Resumes a SIGSTOPped redis-server when the test ends, also when it fails midway.
class Paused {
 public:
  explicit Paused(RedisServer& server) {
    std::string info = server.cli({"INFO", "server"});
    auto at = info.find("process_id:");
    if (at == std::string::npos) throw std::runtime_error("no process_id in INFO");
    pid_ = static_cast<pid_t>(std::stol(info.substr(at + 11)));
  }
  ~Paused() { resume(); }
  void pause() {
    ::kill(pid_, SIGSTOP);
    paused_ = true;
  }
  void resume() {
    if (paused_) ::kill(pid_, SIGCONT);
    paused_ = false;
  }

 private:
  pid_t pid_ = 0;
  bool paused_ = false;
};

// The kit's keep-alive cases: DEL behind the holder's back, SIGSTOP of the shared server.
KeepAliveCase RedisKeepAliveCase(std::string name, bool tls) {
  auto server = [tls]() -> RedisServer& {
    return tls ? RedisServer::shared_tls() : RedisServer::shared();
  };
  auto url = [server, tls](std::string_view tail) {
    return tls ? server().tls_url(tail.empty() ? "" : "&" + std::string(tail.substr(1)))
               : server().url(tail);
  };
  static std::optional<Paused> paused;
  return KeepAliveCase{
      .name = std::move(name),
      .make = [url] { return lockkit::open(url("")); },
      .ttl = 300ms,
      .slack = 0ms,
      .remove =
          [server](const std::string& key) {
            EXPECT_EQ(server().cli({"DEL", key}), "1");
          },
      .pause =
          [server] {
            paused.emplace(server());
            paused->pause();
          },
      .resume = [] { paused.reset(); },
      .make_impatient =
          [url] { return lockkit::open(url("?connect_timeout=300ms&command_timeout=300ms")); },
      .call_limit = 2s,
  };
}

INSTANTIATE_TEST_SUITE_P(Redis, KeepAliveConformance,
                         ::testing::Values(RedisKeepAliveCase("Plain", false),
                                           RedisKeepAliveCase("Tls", true)),
                         KeepAliveCaseName);

TEST(RedisKeepAlive, TenThousandLocksInOneProcess) {
  auto& server = RedisServer::shared();
  auto api = lockkit::open(server.url());
  // 10,000 renewals/s at a 3 s ttl; a sanitizer build renews half as often (6 s ttl), since it
  // runs the client several times slower than the server it renews on.
  ManyLocksFewThreads(*api, unique("many") + "/", 10000, kSanitizerBuild ? 6s : 3s, 3500ms);
}

}  // namespace
}  // namespace lockkit::testing
