// SPDX-License-Identifier: MIT
// redis-plus-plus's Redlock (RedLockMutexVessel over one sw::redis::Redis per server) under the
// load lockkit-bench makes: C threads of try-lock + unlock for S seconds, each on its own keys
// or all on N hot keys; a refused attempt (retry_count 1) is counted apart. Prints
// "pairs/s=... refused/s=...". Built by bench/redis/redlock_compare.sh only when it is given
// REDIS_PLUS_PLUS_DIR (an install prefix of redis-plus-plus); never part of the build.
//   redlock_rpp_bench PORT1,PORT2,PORT3 CLIENTS SECONDS [HOT_KEYS]
#include <sw/redis++/patterns/redlock.h>
#include <sw/redis++/redis++.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: redlock_rpp_bench PORTS CLIENTS SECONDS [HOT_KEYS]\n");
    return 64;
  }
  const int clients = std::stoi(argv[2]);
  const double seconds = std::stod(argv[3]);
  const int hot = argc > 4 ? std::stoi(argv[4]) : 0;
  std::vector<std::shared_ptr<sw::redis::Redis>> servers;
  std::stringstream ports(argv[1]);
  for (std::string port; std::getline(ports, port, ',');) {
    sw::redis::ConnectionOptions conn;
    conn.host = "127.0.0.1";
    conn.port = std::stoi(port);
    sw::redis::ConnectionPoolOptions pool;
    pool.size = static_cast<std::size_t>(clients);  // one connection per thread, as it needs
    servers.push_back(std::make_shared<sw::redis::Redis>(conn, pool));
  }
  sw::redis::RedLockMutexVessel vessel(servers.begin(), servers.end());
  const std::string run = "rpp" + std::to_string(::getpid()) + "/";
  std::atomic<bool> stop{false};
  std::atomic<long> pairs{0}, refused{0}, errors{0};
  std::vector<std::thread> threads;
  const auto begin = std::chrono::steady_clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(static_cast<unsigned>(c) * 7919U + static_cast<unsigned>(::getpid()));
      for (long i = c; !stop.load(std::memory_order_relaxed); ++i) {
        const std::string key = hot > 0 ? run + "hot/" + std::to_string(i % hot)
                                        : run + std::to_string(c) + "/" + std::to_string(i % 1000);
        char token[33];
        std::snprintf(token, sizeof token, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                      static_cast<unsigned long long>(rng()));
        try {
          auto info = vessel.lock(key, token, std::chrono::milliseconds(30000), 1);
          if (!info.locked) {
            refused.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          vessel.unlock(info);
          pairs.fetch_add(1, std::memory_order_relaxed);
        } catch (const std::exception&) {
          errors.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("redis-plus-plus clients=%d pairs/s=%.0f refused/s=%.0f errors=%ld\n", clients,
              static_cast<double>(pairs.load()) / secs, static_cast<double>(refused.load()) / secs,
              errors.load());
}
