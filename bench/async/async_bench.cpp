// SPDX-License-Identifier: MIT
// async-bench: AsyncLockApi under load on one io thread.
//   async-bench pairs   --backend URL [--inflight 256] [--seconds 5] [--hot-keys 0]
//                       [--path native|pool]
//     N operations in flight, each an endless loop of async_try_acquire + async_release on its
//     own keys (or all on H hot keys, a refused attempt counted apart); prints
//     "pairs/s=... refused/s=... p50=...us p99=...us" (latency of one pair). `--path pool`
//     hides the store behind a plain LockApi, so that a store with a native path (redis://,
//     redlock://, postgres://) runs on the blocking pool instead, for comparison.
//   async-bench waiters --backend URL [--waiters 10000] [--per-key 5]
//     W async_acquire calls waiting on busy keys: RSS and CPU per waiter while they wait, then
//     the holders release and each key is handed on in turn; prints the time from a release's
//     completion to the next grant of that key (p50/p99).
#include <sys/resource.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lockkit/async.hpp"
#include "lockkit/lockkit.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Config {
  std::string mode;
  std::string url = "memory:";
  int inflight = 256;
  double seconds = 5;
  int waiters = 10000;
  int per_key = 5;
  int hot_keys = 0;
  int keys = 1000;  // per loop, taken in turn
  bool pool = false;
};

// Forwards to the core's LockApi; being another type, it has no native path: the AsyncLockApi
// over it runs every store call on the blocking pool.
class PoolOnly final : public lockkit::LockApi {
 public:
  explicit PoolOnly(std::shared_ptr<lockkit::LockApi> inner) : inner_(std::move(inner)) {}
  std::optional<lockkit::Lock> try_acquire(std::string_view key,
                                           std::chrono::milliseconds ttl) override {
    return inner_->try_acquire(key, ttl);
  }
  std::string_view backend() const noexcept override { return inner_->backend(); }

 private:
  std::shared_ptr<lockkit::LockApi> inner_;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))];
}

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// One loop of pairs on its own keys, or on the hot keys. Loop c starts at key c and moves on to
// the next key after every attempt, granted or refused, at once: the loop of lockkit-bench's
// threads and of bench/redis/redlock_npm_bench.js. Starting every loop at key 0 instead kept
// all loops on the same hot key in lockstep: one grant per wave of attempts.
struct PairLoop {
  lockkit::AsyncLockApi* locks;
  std::string stem;
  unsigned i = 0;
  Clock::time_point deadline;
  Clock::time_point started;
  std::vector<double>* latency_us;
  long* pairs;
  long* errors;
  long* refused;
  int hot_keys;
  int keys;
  int* running;
  asio::io_context* io;
  std::function<void()>* on_last;
  std::optional<lockkit::Lock> lock;

  void next() {
    if (Clock::now() >= deadline) {
      // A native connection keeps the io_context busy: the last loop destroys the AsyncLockApi
      // (after this handler), which closes it; run() then returns once every operation's last
      // reference (held by pool threads, too) is gone. io_context::stop() instead would let the
      // io_context die under a pool thread still posting to it.
      if (--*running == 0) asio::post(*io, [done = on_last] { (*done)(); });
      return;
    }
    started = Clock::now();
    const unsigned k = i++;
    locks->async_try_acquire(
        hot_keys > 0 ? stem + "hot/" + std::to_string(k % static_cast<unsigned>(hot_keys))
                     : stem + std::to_string(k % static_cast<unsigned>(keys)),
        30s, [this](std::exception_ptr e, std::optional<lockkit::Lock> got) {
          if (e || !got) {
            ++*(e || hot_keys == 0 ? errors : refused);
            next();
            return;
          }
          lock = std::move(got);
          locks->async_release(*lock, [this](std::exception_ptr re, bool ours) {
            if (re || !ours) {
              ++*errors;
            } else {
              ++*pairs;
              latency_us->push_back(
                  std::chrono::duration<double, std::micro>(Clock::now() - started).count());
            }
            lock.reset();
            next();
          });
        });
  }
};

int run_pairs(const Config& cfg) {
  asio::io_context io;
  std::shared_ptr<lockkit::LockApi> api = lockkit::open(cfg.url);
  if (cfg.pool) api = std::make_shared<PoolOnly>(std::move(api));
  std::optional<lockkit::AsyncLockApi> locks(std::in_place, io.get_executor(), api);
  api.reset();
  std::function<void()> on_last = [&locks] { locks.reset(); };
  std::vector<double> latency;
  latency.reserve(1 << 20);
  long pairs = 0;
  long errors = 0;
  long refused = 0;
  const std::string run = "abench" + lockkit::make_token().substr(0, 6) + "/";
  std::vector<std::unique_ptr<PairLoop>> loops;
  int running = cfg.inflight;
  const double cpu_start = cpu_seconds();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(cfg.seconds));
  for (int c = 0; c < cfg.inflight; ++c) {
    loops.push_back(std::make_unique<PairLoop>(
        PairLoop{.locks = &*locks,
                 .stem = cfg.hot_keys > 0 ? run : run + std::to_string(c) + "/",
                 .i = static_cast<unsigned>(c),
                 .deadline = deadline,
                 .started = {},
                 .latency_us = &latency,
                 .pairs = &pairs,
                 .errors = &errors,
                 .refused = &refused,
                 .hot_keys = cfg.hot_keys,
                 .keys = cfg.keys,
                 .running = &running,
                 .io = &io,
                 .on_last = &on_last,
                 .lock = std::nullopt}));
    loops.back()->next();
  }
  io.run();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  // The client's cost: CPU time of this process (the io thread, and any other) per pair.
  const double cpu_us = (cpu_seconds() - cpu_start) * 1e6;
  std::printf(
      "%-40s %-6s inflight=%-4d pairs/s=%-10.0f refused/s=%-8.0f errors=%ld p50=%.0fus "
      "p99=%.0fus cpu/pair=%.1fus\n",
      lockkit::redact_url(cfg.url).c_str(), cfg.pool ? "pool" : "auto", cfg.inflight, pairs / secs,
      refused / secs, errors, percentile(latency, 0.5), percentile(latency, 0.99),
      pairs > 0 ? cpu_us / static_cast<double>(pairs) : 0.0);
  return errors == 0 ? 0 : 1;
}

int run_waiters(const Config& cfg) {
  auto api = lockkit::open(cfg.url);
  const int keys = cfg.waiters / cfg.per_key;
  const std::string stem = "wbench" + lockkit::make_token().substr(0, 6) + "/";
  std::vector<std::optional<lockkit::Lock>> holders;
  for (int k = 0; k < keys; ++k) holders.push_back(api->try_acquire(stem + std::to_string(k), 60s));
  asio::io_context io;
  lockkit::AsyncLockApi locks(io.get_executor(), api);
  std::vector<Clock::time_point> released_at(keys);
  std::vector<double> handoff_ms;
  std::atomic<int> done{0};
  long errors = 0;
  const long rss_before = rss_kb();
  const lockkit::RetryPolicy policy{.max_wait = 60s, .initial_delay = 10ms, .max_delay = 200ms};
  for (int w = 0; w < cfg.waiters; ++w) {
    const int k = w % keys;
    locks.async_acquire(
        stem + std::to_string(k), 60s, policy,
        [&, k](std::exception_ptr e, std::optional<lockkit::Lock> lock) {
          if (e || !lock) {
            ++errors;
            ++done;
            return;
          }
          // A grant may reach the io thread just before the release that
          // made way for it: counted as 0.
          handoff_ms.push_back(std::max(
              0.0,
              std::chrono::duration<double, std::milli>(Clock::now() - released_at[k]).count()));
          auto mine = std::make_shared<lockkit::Lock>(std::move(*lock));
          locks.async_release(*mine, [&, k, mine](std::exception_ptr, bool) {
            released_at[k] = Clock::now();
            ++done;
          });
        });
  }
  std::thread io_thread([&] { io.run(); });
  std::this_thread::sleep_for(300ms);  // all waiting
  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(2s);
  const double cpu_per_s =
      (cpu_seconds() - cpu0) / std::chrono::duration<double>(Clock::now() - t0).count();
  const long rss = rss_kb();
  // The holders release through the async API too, so that each key's release time is known.
  std::vector<std::shared_ptr<lockkit::Lock>> held;
  for (int k = 0; k < keys; ++k) {
    auto h = std::make_shared<lockkit::Lock>(std::move(*holders[k]));
    locks.async_release(*h, [&, k, h](std::exception_ptr, bool) { released_at[k] = Clock::now(); });
  }
  while (done.load() < cfg.waiters) std::this_thread::sleep_for(20ms);
  io.stop();
  io_thread.join();
  std::printf(
      "%-40s waiters=%d keys=%d rss/waiter=%.2fkB cpu/waiter=%.1fus/s handoff p50=%.1fms "
      "p99=%.1fms errors=%ld\n",
      cfg.url.c_str(), cfg.waiters, keys, double(rss - rss_before) / cfg.waiters,
      cpu_per_s * 1e6 / cfg.waiters, percentile(handoff_ms, 0.5), percentile(handoff_ms, 0.99),
      errors);
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (argc < 2) {
    std::fprintf(stderr, "usage: async-bench pairs|waiters --backend URL [options]\n");
    return 64;
  }
  cfg.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string opt = argv[i];
    std::string val = argv[i + 1];
    if (opt == "--backend") {
      cfg.url = val;
    } else if (opt == "--inflight") {
      cfg.inflight = std::stoi(val);
    } else if (opt == "--seconds") {
      cfg.seconds = std::stod(val);
    } else if (opt == "--waiters") {
      cfg.waiters = std::stoi(val);
    } else if (opt == "--per-key") {
      cfg.per_key = std::stoi(val);
    } else if (opt == "--path" && (val == "native" || val == "pool")) {
      cfg.pool = val == "pool";
    } else if (opt == "--keys" && std::stoi(val) > 0) {
      cfg.keys = std::stoi(val);
    } else if (opt == "--hot-keys") {
      cfg.hot_keys = std::stoi(val);
    } else {
      std::fprintf(stderr, "async-bench: unknown option %s\n", opt.c_str());
      return 64;
    }
  }
  try {
    if (cfg.mode == "pairs") return run_pairs(cfg);
    if (cfg.mode == "waiters") return run_waiters(cfg);
    std::fprintf(stderr, "async-bench: unknown mode %s\n", cfg.mode.c_str());
    return 64;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "async-bench: %s\n", e.what());
    return 1;
  }
}
