// SPDX-License-Identifier: MIT
// 10,000 async_acquire calls waiting on busy keys on one io thread: few threads, bounded memory,
// every waiter granted in turn once the holders release, no key granted to two at once.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/open.hpp"
#include "support/redis_server.hpp"
#include "support/sanitizers.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

// Returns a field of /proc/self/status ("Threads", "VmRSS" in kB).
long ProcStatus(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

struct WaitersCase {
  std::string name;
  std::string url;
};

void RunWaiters(const std::string& url) {
  // A sanitizer build is several times slower: fewer waiters, same shape.
  const int waiters = testing::kSanitizerBuild ? 2000 : 10000;
  constexpr int kPerKey = 5;  // each key's waiters are granted one after another
  const int keys = waiters / kPerKey;
  const std::string stem = "waiters/" + make_token().substr(0, 8) + "/";

  auto api = lockkit::open(url);
  std::vector<std::optional<Lock>> holders;
  holders.reserve(keys);
  for (int k = 0; k < keys; ++k) {
    holders.push_back(api->try_acquire(stem + std::to_string(k), 60s));
    ASSERT_TRUE(holders.back());
  }

  asio::io_context io(1);
  auto owned = std::make_unique<AsyncLockApi>(io.get_executor(), api);
  AsyncLockApi& locks = *owned;
  // Per key, touched only by handlers, which all run on the one io thread.
  std::vector<bool> held(keys, false);
  std::vector<std::uint64_t> last_fence(keys, 0);
  for (int k = 0; k < keys; ++k) last_fence[k] = holders[k]->fence();
  int granted = 0;
  int finished = 0;
  int errors = 0;
  int twice = 0;
  int fence_backwards = 0;
  std::promise<void> all_done;

  const long rss_before = ProcStatus("VmRSS");
  for (int i = 0; i < waiters; ++i) {
    const int k = i % keys;
    locks.async_acquire(stem + std::to_string(k), 60s,
                        RetryPolicy{.max_wait = 60s, .initial_delay = 50ms, .max_delay = 400ms},
                        [&, k](std::exception_ptr e, std::optional<Lock> lock) {
                          ++granted;
                          if (e || !lock) {
                            ++errors;
                            if (++finished == waiters) all_done.set_value();
                          } else {
                            if (held[k]) ++twice;
                            if (lock->fence() <= last_fence[k]) ++fence_backwards;
                            last_fence[k] = lock->fence();
                            held[k] = true;
                            // Hold it for a moment on the io thread, then hand it on: the key stays
                            // held on the store until this release completes, so a grant of k that
                            // reaches a handler while `held[k]` is true was a second grant.
                            auto mine = std::make_shared<Lock>(std::move(*lock));
                            auto pause = std::make_shared<asio::steady_timer>(io, 2ms);
                            pause->async_wait([&, k, mine, pause](const std::error_code&) {
                              held[k] = false;
                              locks.async_release(*mine,
                                                  [&, mine](std::exception_ptr re, bool ours) {
                                                    if (re || !ours) ++errors;
                                                    // Done only once every release is back: nothing
                                                    // runs on the pool after this.
                                                    if (++finished == waiters) all_done.set_value();
                                                  });
                            });
                          }
                        });
  }
  std::thread io_thread([&] { io.run(); });

  // While they all wait: the thread count stays small and memory bounded.
  long max_threads = 0;
  long max_rss = 0;
  const auto sample_until = std::chrono::steady_clock::now() + 500ms;
  while (std::chrono::steady_clock::now() < sample_until) {
    max_threads = std::max(max_threads, ProcStatus("Threads"));
    max_rss = std::max(max_rss, ProcStatus("VmRSS"));
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_LE(max_threads, 32);
  const double kb_per_waiter = double(max_rss - rss_before) / waiters;
  if (!testing::kSanitizerBuild) {
    EXPECT_LT(kb_per_waiter, 8.0);
  }
  ::testing::Test::RecordProperty("threads", static_cast<int>(max_threads));
  ::testing::Test::RecordProperty("rss_kb_per_waiter_x100", static_cast<int>(kb_per_waiter * 100));
  std::printf("%d waiters: at most %ld threads, %.2f kB RSS per waiter\n", waiters, max_threads,
              kb_per_waiter);

  const auto released_at = std::chrono::steady_clock::now();
  for (auto& h : holders) ASSERT_TRUE(h->release());
  auto done = all_done.get_future();
  const bool all_finished = done.wait_for(60s) == std::future_status::ready;
  std::printf(
      "all granted in turn %.2f s after the holders released\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - released_at).count());
  // run() returns once nothing is pending, the native connection closed with the AsyncLockApi.
  if (!all_finished) io.stop();
  owned.reset();
  io_thread.join();
  ASSERT_TRUE(all_finished) << granted << " of " << waiters << " granted";
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(fence_backwards, 0);
  EXPECT_LE(ProcStatus("Threads"), 32);
}

TEST(AsyncWaiters, TenThousandWaitersOnMemoryUseOneIoThread) {
  RunWaiters("memory:");
}

TEST(AsyncWaiters, TenThousandWaitersOnRedisUseOneIoThread) {
  RunWaiters(testing::RedisServer::shared().url());
}

}  // namespace
}  // namespace lockkit
