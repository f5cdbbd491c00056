// SPDX-License-Identifier: MIT
// Keep-alive cost and loss latency on any store lockkit::open knows:
//   keep-alive-bench URL [LOCKS] [TTL_MS] [SECONDS]
// 1. Holds LOCKS locks (default 1,000) kept alive with TTL_MS (default 3,000) for SECONDS
//    (default 6): renewals per second, the store calls that carried them (`extend` or one
//    `extend_many` round each: one round trip per server) per second, and this process's CPU,
//    per 1,000 held locks; the keeper's threads.
// 2. Deletes 200 kept-alive leases behind their holders' backs (a release with their token from
//    another LockApi, at random moments) and reports the time to `on_lost`, p50/p99.
#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bench_stats.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/lockkit.hpp"
#ifdef LOCKKIT_BENCH_HAS_REDIS
#include "lockkit/redis.hpp"
#endif
#ifdef LOCKKIT_BENCH_HAS_POSTGRES
#include "lockkit/postgres.hpp"
#endif
#ifdef LOCKKIT_BENCH_HAS_SQLITE
#include "lockkit/sqlite.hpp"
#endif

namespace {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Forwards to a store and counts the calls that renew: each `extend` and each `extend_many`.
class CountingStore final : public lockkit::LeaseStore {
 public:
  explicit CountingStore(std::shared_ptr<lockkit::LeaseStore> inner) : inner_(std::move(inner)) {}
  std::string_view backend() const noexcept override { return inner_->backend(); }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    return inner_->acquire(key, token, ttl);
  }
  bool release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    return inner_->extend(key, token, ttl);
  }
  void extend_many(std::span<const lockkit::ExtendRequest> requests,
                   std::span<lockkit::ExtendOutcome> out) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    inner_->extend_many(requests, out);
  }
  std::optional<lockkit::LockInfo> status(std::string_view key) override {
    return inner_->status(key);
  }
  std::vector<lockkit::LockInfo> list(std::string_view prefix) override {
    return inner_->list(prefix);
  }
  Steady::time_point now() const noexcept override { return inner_->now(); }
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return inner_->drift(ttl);
  }

  std::atomic<long> calls{0};

 private:
  std::shared_ptr<lockkit::LeaseStore> inner_;
};

// Returns the bare store of `url` for the backends this bench knows, else null.
std::shared_ptr<lockkit::LeaseStore> store_of(const std::string& url) {
  auto scheme = url.substr(0, url.find(':'));
#ifdef LOCKKIT_BENCH_HAS_REDIS
  if (scheme == "redis" || scheme == "rediss") {
    return lockkit::make_redis_store(lockkit::parse_redis_url(url));
  }
#endif
#ifdef LOCKKIT_BENCH_HAS_POSTGRES
  if (scheme == "postgres" || scheme == "postgresql") {
    return lockkit::make_postgres_store(lockkit::parse_postgres_url(url));
  }
#endif
#ifdef LOCKKIT_BENCH_HAS_SQLITE
  if (scheme == "sqlite") return lockkit::make_sqlite_store(lockkit::parse_sqlite_url(url));
#endif
  (void)scheme;
  return nullptr;
}

unsigned threads_of_this_process() {
  unsigned n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

std::string prefix() {
  return "keep-alive-bench/" + lockkit::make_token().substr(0, 8) + "/";
}

void renewal_cost(lockkit::LockApi& api, CountingStore* counted, int count,
                  std::chrono::milliseconds ttl, int seconds) {
  const unsigned threads_before = threads_of_this_process();
  std::atomic<long> renewals{0};
  std::atomic<int> lost{0};
  std::vector<lockkit::Lock> locks;
  const std::string p = prefix();
  for (int i = 0; i < count; ++i) {
    auto lock = api.try_acquire(p + std::to_string(i), ttl);
    if (!lock) throw std::runtime_error("busy: " + p + std::to_string(i));
    lock->keep_alive({.on_lost =
                          [&lost](std::string_view why) {
                            if (lost.fetch_add(1) < 3) {
                              std::fprintf(stderr, "lost: %.*s\n", static_cast<int>(why.size()),
                                           why.data());
                            }
                          },
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
  const long calls0 = counted ? counted->calls.load() : 0;
  const double c0 = cpu_seconds();
  const auto t0 = Steady::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const double wall = std::chrono::duration<double>(Steady::now() - t0).count();
  const double rate = static_cast<double>(renewals.load() - r0) / wall;
  const double cpu = (cpu_seconds() - c0) / wall;
  const double per_k = 1000.0 / count;
  const double calls = counted ? static_cast<double>(counted->calls.load() - calls0) / wall : -1;
  std::printf(
      "renewal: %d locks, ttl %lld ms: %.0f renewals/s (%.0f per 1,000 locks), %.0f store "
      "calls/s (%.1f per 1,000 locks), CPU %.1f ms/s (%.2f ms/s per 1,000 locks), %u keeper "
      "threads, %d lost\n",
      count, static_cast<long long>(ttl.count()), rate, rate * per_k, calls, calls * per_k,
      cpu * 1000, cpu * 1000 * per_k, threads_of_this_process() - threads_before, lost.load());
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
    std::shared_ptr<CountingStore> counted;
    std::shared_ptr<lockkit::LockApi> api;
    if (auto store = store_of(argv[1])) {
      counted = std::make_shared<CountingStore>(std::move(store));
      api = lockkit::make_lock_api(counted);
    } else {
      api = lockkit::open(argv[1]);  // store calls not counted (-1)
    }
    auto other = lockkit::open(argv[1]);
    std::printf("backend %s\n", std::string(api->backend()).c_str());
    renewal_cost(*api, counted.get(), count, ttl, seconds);
    loss_latency(*api, *other, ttl);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keep-alive-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
