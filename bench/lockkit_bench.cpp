// SPDX-License-Identifier: MIT
// lockkit-bench: a load generator for any backend URL: acquire+release pairs/s and latency.
//
//   lockkit-bench --backend redis://127.0.0.1:6379 --clients 64 --seconds 5 --hot-keys 8
//
// Each client is a thread looping try_acquire + release on one shared `LockApi` (or one per
// client with --api-per-client). Keys: distinct per client by default (every attempt is
// granted); --hot-keys N makes all clients share N keys (contention: refused attempts are
// counted apart); --mode refused holds one key and measures refused try_acquire calls on it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include "bench_stats.hpp"

#include "lockkit/duration.hpp"
#include "lockkit/lockkit.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string backend = "memory:";
  int clients = 1;
  std::chrono::milliseconds duration{5000};
  int keys = 1000;       // distinct keys per client
  int hot_keys = 0;      // > 0: all clients share this many keys
  bool refused = false;  // measure refused attempts on a held key
  bool api_per_client = false;
  bool json = false;
  std::chrono::milliseconds ttl{10000};
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "lockkit-bench: %s\n"
               "usage: lockkit-bench [--backend URL] [--clients C] [--seconds S] [--keys K]\n"
               "                     [--hot-keys N] [--mode granted|refused] [--ttl D]\n"
               "                     [--api-per-client] [--json]\n",
               problem.c_str());
  std::exit(64);
}

int to_int(std::string_view flag, const char* value, int min, int max) {
  char* end = nullptr;
  long n = std::strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || n < min || n > max) {
    usage(std::string(flag) + ": must be an integer in " + std::to_string(min) + ".." +
          std::to_string(max));
  }
  return static_cast<int>(n);
}

Config parse(int argc, char** argv) {
  Config c;
  if (const char* env = std::getenv("LOCKKIT_BACKEND")) c.backend = env;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(std::string(a) + ": missing value");
      return argv[++i];
    };
    if (a == "--backend")
      c.backend = value();
    else if (a == "--clients")
      c.clients = to_int(a, value(), 1, 4096);
    else if (a == "--seconds")
      c.duration = std::chrono::milliseconds(1000 * to_int(a, value(), 1, 3600));
    else if (a == "--keys")
      c.keys = to_int(a, value(), 1, 100000000);
    else if (a == "--hot-keys")
      c.hot_keys = to_int(a, value(), 1, 100000000);
    else if (a == "--ttl")
      c.ttl = lockkit::parse_duration(value(), "--ttl");
    else if (a == "--api-per-client")
      c.api_per_client = true;
    else if (a == "--json")
      c.json = true;
    else if (a == "--mode") {
      std::string_view m = value();
      if (m != "granted" && m != "refused") usage("--mode: granted or refused");
      c.refused = m == "refused";
    } else if (a == "--help" || a == "-h") {
      usage("help");
    } else {
      usage("unknown argument " + std::string(a));
    }
  }
  return c;
}

struct ClientResult {
  std::uint64_t pairs = 0;    // granted acquire + release
  std::uint64_t refused = 0;  // try_acquire answered busy
  std::uint64_t errors = 0;
  std::vector<std::uint32_t> latency_us;  // per pair (granted) or per refused attempt
  std::string first_error;
};

using lockkit::bench::percentile;

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse(argc, argv);
  try {
    std::shared_ptr<lockkit::LockApi> shared = lockkit::open(cfg.backend);
    const std::string run = "lockkit-bench/" + lockkit::make_token().substr(0, 8) + "/";
    std::optional<lockkit::Lock> holder;
    if (cfg.refused) {
      holder = shared->try_acquire(run + "held", std::chrono::minutes(10));
      if (!holder) usage("could not take the key to hold for --mode refused");
    }
    std::vector<ClientResult> results(static_cast<std::size_t>(cfg.clients));
    std::vector<std::shared_ptr<lockkit::LockApi>> apis;
    for (int c = 0; c < cfg.clients; ++c) {
      apis.push_back(cfg.api_per_client ? lockkit::open(cfg.backend) : shared);
    }
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int c = 0; c < cfg.clients; ++c) {
      threads.emplace_back([&, c] {
        ClientResult& r = results[static_cast<std::size_t>(c)];
        r.latency_us.reserve(1 << 16);
        lockkit::LockApi& api = *apis[static_cast<std::size_t>(c)];
        std::vector<std::string> keys;
        if (cfg.refused) {
          keys.push_back(run + "held");
        } else if (cfg.hot_keys > 0) {
          for (int k = 0; k < cfg.hot_keys; ++k) keys.push_back(run + "hot/" + std::to_string(k));
        } else {
          for (int k = 0; k < cfg.keys; ++k) {
            keys.push_back(run + std::to_string(c) + "/" + std::to_string(k));
          }
        }
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        std::size_t i = static_cast<std::size_t>(c);
        while (!stop.load(std::memory_order_relaxed)) {
          const std::string& key = keys[i++ % keys.size()];
          auto start = Clock::now();
          try {
            auto lock = api.try_acquire(key, cfg.ttl);
            if (lock) {
              lock->release();
              ++r.pairs;
            } else {
              ++r.refused;
              if (!cfg.refused) continue;  // latency of granted pairs only
            }
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
            r.latency_us.push_back(static_cast<std::uint32_t>(us.count()));
          } catch (const std::exception& e) {
            if (r.errors++ == 0) r.first_error = e.what();
          }
        }
      });
    }
    while (ready.load() < cfg.clients) std::this_thread::yield();
    auto begin = Clock::now();
    go = true;
    std::this_thread::sleep_for(cfg.duration);
    stop = true;
    for (auto& t : threads) t.join();
    double seconds = std::chrono::duration<double>(Clock::now() - begin).count();

    ClientResult total;
    for (auto& r : results) {
      total.pairs += r.pairs;
      total.refused += r.refused;
      total.errors += r.errors;
      if (total.first_error.empty()) total.first_error = r.first_error;
      total.latency_us.insert(total.latency_us.end(), r.latency_us.begin(), r.latency_us.end());
    }
    double p50 = percentile(total.latency_us, 0.50);
    double p99 = percentile(total.latency_us, 0.99);
    double pairs_s = static_cast<double>(total.pairs) / seconds;
    double refused_s = static_cast<double>(total.refused) / seconds;
    std::string url = lockkit::redact_url(cfg.backend);
    const char* mode = cfg.refused ? "refused" : (cfg.hot_keys > 0 ? "hot" : "distinct");
    if (cfg.json) {
      std::printf(
          "{\"backend\":\"%s\",\"clients\":%d,\"mode\":\"%s\",\"hot_keys\":%d,\"seconds\":%.2f,"
          "\"pairs_per_s\":%.0f,\"refused_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
          "\"errors\":%llu}\n",
          url.c_str(), cfg.clients, mode, cfg.hot_keys, seconds, pairs_s, refused_s, p50, p99,
          static_cast<unsigned long long>(total.errors));
    } else {
      std::printf(
          "%-40s clients=%-4d %-8s pairs/s=%-10.0f refused/s=%-10.0f p50=%.0fus p99=%.0fus"
          " errors=%llu\n",
          url.c_str(), cfg.clients, mode, pairs_s, refused_s, p50, p99,
          static_cast<unsigned long long>(total.errors));
    }
    if (total.errors > 0)
      std::fprintf(stderr, "lockkit-bench: first error: %s\n", total.first_error.c_str());
    return total.errors > 0 ? 1 : 0;
  } catch (const std::invalid_argument& e) {
    usage(e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lockkit-bench: %s\n", e.what());
    return 69;
  }
}
