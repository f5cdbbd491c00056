// SPDX-License-Identifier: MIT
// Keep-alive cost and loss latency on any store lockkit::open knows:
//   keep-alive-bench URL [LOCKS] [TTL_MS] [SECONDS]
// 1. Holds LOCKS locks (default 1,000) kept alive with TTL_MS (default 3,000) for SECONDS
//    (default 6): renewals (store round trips for renewal) per second and this process's CPU,
//    both per 1,000 held locks.
// 2. Deletes 200 kept-alive leases behind their holders' backs (a release with their token from
//    another LockApi, at random moments) and reports the time to `on_lost`, p50/p99.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_stats.hpp"
#include "lockkit/lockkit.hpp"

namespace {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::string prefix() {
  return "keep-alive-bench/" + lockkit::make_token().substr(0, 8) + "/";
}

void renewal_cost(lockkit::LockApi& api, int count, std::chrono::milliseconds ttl, int seconds) {
  std::atomic<long> renewals{0};
  std::atomic<int> lost{0};
  std::vector<lockkit::Lock> locks;
  const std::string p = prefix();
  for (int i = 0; i < count; ++i) {
    auto lock = api.try_acquire(p + std::to_string(i), ttl);
    if (!lock) throw std::runtime_error("busy: " + p + std::to_string(i));
    lock->keep_alive({.on_lost = [&lost](std::string_view) { lost.fetch_add(1); },
                      .max_hold = 0ms,
                      .should_renew =
                          [&renewals] {
                            renewals.fetch_add(1, std::memory_order_relaxed);
                            return true;
                          },
                      .on_renewal_error = {}});
    locks.push_back(std::move(*lock));
  }
  std::this_thread::sleep_for(ttl / 3);  // the first renewals of the acquisition burst
  const long r0 = renewals.load();
  const double c0 = cpu_seconds();
  const auto t0 = Steady::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const double wall = std::chrono::duration<double>(Steady::now() - t0).count();
  const double rate = static_cast<double>(renewals.load() - r0) / wall;
  const double cpu = (cpu_seconds() - c0) / wall;
  const double per_k = 1000.0 / count;
  std::printf(
      "renewal: %d locks, ttl %lld ms: %.0f renewals/s (%.0f per 1,000 locks), "
      "CPU %.1f ms/s (%.2f ms/s per 1,000 locks), %d lost\n",
      count, static_cast<long long>(ttl.count()), rate, rate * per_k, cpu * 1000,
      cpu * 1000 * per_k, lost.load());
}

void loss_latency(lockkit::LockApi& api, lockkit::LockApi& other, std::chrono::milliseconds ttl) {
  constexpr int kLocks = 200;
  std::vector<lockkit::Lock> locks;
  std::vector<std::atomic<long long>> lost_at(kLocks);
  const std::string p = prefix();
  for (int i = 0; i < kLocks; ++i) {
    auto lock = api.try_acquire(p + std::to_string(i), ttl);
    if (!lock) throw std::runtime_error("busy");
    auto* slot = &lost_at[static_cast<std::size_t>(i)];
    lock->keep_alive(
        {.on_lost =
             [slot](std::string_view) { slot->store(Steady::now().time_since_epoch().count()); },
         .max_hold = 0ms,
         .should_renew = {},
         .on_renewal_error = {}});
    locks.push_back(std::move(*lock));
  }
  std::mt19937_64 rng(std::random_device{}());
  std::vector<Steady::time_point> deleted(kLocks);
  for (int i = 0; i < kLocks; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 10'000));
    const auto& lock = locks[static_cast<std::size_t>(i)];
    deleted[static_cast<std::size_t>(i)] = Steady::now();
    (void)other.release(lock.key(), lock.token());
  }
  std::this_thread::sleep_for(ttl);
  std::vector<std::uint32_t> us;
  int missed = 0;
  for (int i = 0; i < kLocks; ++i) {
    long long at = lost_at[static_cast<std::size_t>(i)].load();
    if (at == 0) {
      ++missed;
      continue;
    }
    auto d = Steady::time_point(Steady::duration(at)) - deleted[static_cast<std::size_t>(i)];
    us.push_back(static_cast<std::uint32_t>(
        std::max<long long>(0, std::chrono::duration_cast<std::chrono::microseconds>(d).count())));
  }
  std::printf(
      "loss to on_lost: ttl %lld ms (renewal every %lld ms): p50 %.1f ms, p99 %.1f ms, "
      "%d of %d not noticed\n",
      static_cast<long long>(ttl.count()), static_cast<long long>(ttl.count() / 3),
      lockkit::bench::percentile(us, 0.5) / 1000, lockkit::bench::percentile(us, 0.99) / 1000,
      missed, kLocks);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: keep-alive-bench URL [LOCKS] [TTL_MS] [SECONDS]\n");
    return 64;
  }
  try {
    const int count = argc > 2 ? std::atoi(argv[2]) : 1000;
    const std::chrono::milliseconds ttl(argc > 3 ? std::atoll(argv[3]) : 3000);
    const int seconds = argc > 4 ? std::atoi(argv[4]) : 6;
    auto api = lockkit::open(argv[1]);
    auto other = lockkit::open(argv[1]);
    std::printf("backend %s\n", std::string(api->backend()).c_str());
    renewal_cost(*api, count, ttl, seconds);
    loss_latency(*api, *other, ttl);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keep-alive-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
