// SPDX-License-Identifier: MIT
// memory: try_acquire+release pairs against a naive one-mutex table doing the same work.
//
// The naive reference hands out the same things per acquisition (a fresh 128-bit token from the
// same generator, a per-store fence, an expiry) from one std::unordered_map under one
// std::mutex: what a first implementation would look like. The table printed at the end gives
// pairs/s of both and their ratio.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "lockkit/lockkit.hpp"

namespace {

using namespace std::chrono_literals;

class NaiveTable {
 public:
  struct Held {
    std::string key;
    std::string token;
    std::uint64_t fence;
  };

  std::optional<Held> try_acquire(const std::string& key, std::chrono::milliseconds ttl) {
    std::string token = lockkit::make_token();
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> guard(mu_);
    auto [it, inserted] = table_.try_emplace(key);
    if (!inserted && it->second.expires > now) return std::nullopt;
    it->second = Entry{token, ++fence_, now + ttl};
    return Held{key, std::move(token), fence_};
  }

  bool release(const Held& held) {
    std::lock_guard<std::mutex> guard(mu_);
    auto it = table_.find(held.key);
    if (it == table_.end() || it->second.token != held.token) return false;
    table_.erase(it);
    return true;
  }

 private:
  struct Entry {
    std::string token;
    std::uint64_t fence = 0;
    std::chrono::steady_clock::time_point expires;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> table_;
  std::uint64_t fence_ = 0;
};

lockkit::InMemoryLockApi& memory_api() {
  static lockkit::InMemoryLockApi api;
  return api;
}

NaiveTable& naive_table() {
  static NaiveTable table;
  return table;
}

std::vector<std::string> keys_for(const benchmark::State& state, bool hot) {
  std::vector<std::string> keys;
  if (hot) return {"hot"};
  for (int i = 0; i < 1024; ++i) {
    keys.push_back("key/" + std::to_string(state.thread_index()) + "/" + std::to_string(i));
  }
  return keys;
}

// The same loop for both tables: `Table` is InMemoryLockApi or NaiveTable.
template <class Table, bool kHot>
void TryAcquireRelease(benchmark::State& state, Table& table) {
  auto keys = keys_for(state, kHot);
  std::size_t i = 0;
  std::int64_t granted = 0;
  for (auto _ : state) {
    auto held = table.try_acquire(keys[i++ & (keys.size() - 1)], 30s);
    if (held) {
      if constexpr (std::is_same_v<Table, NaiveTable>) {
        benchmark::DoNotOptimize(table.release(*held));
      } else {
        benchmark::DoNotOptimize(held->release());
      }
      ++granted;
    }
  }
  state.SetItemsProcessed(granted);
}

template <bool kHot>
void BM_MemoryTryAcquireRelease(benchmark::State& state) {
  TryAcquireRelease<lockkit::InMemoryLockApi, kHot>(state, memory_api());
}

template <bool kHot>
void BM_NaiveTableTryAcquireRelease(benchmark::State& state) {
  TryAcquireRelease<NaiveTable, kHot>(state, naive_table());
}

BENCHMARK(BM_MemoryTryAcquireRelease<false>)
    ->Name("BM_MemoryTryAcquireReleaseDistinct")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_NaiveTableTryAcquireRelease<false>)
    ->Name("BM_NaiveTableTryAcquireReleaseDistinct")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_MemoryTryAcquireRelease<true>)
    ->Name("BM_MemoryTryAcquireReleaseHotKey")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_NaiveTableTryAcquireRelease<true>)
    ->Name("BM_NaiveTableTryAcquireReleaseHotKey")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// Keeps each run's granted pairs/s, then prints lockkit against the naive table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      auto it = run.counters.find("items_per_second");
      if (it != run.counters.end()) rates_[run.benchmark_name()] = it->second.value;
    }
  }

  void PrintRatios() const {
    std::printf("\n| case | threads | lockkit memory: pairs/s | naive table pairs/s | ratio |\n");
    std::printf("|---|---|---|---|---|\n");
    for (const char* shape : {"Distinct", "HotKey"}) {
      for (int threads : {1, 2}) {
        std::string suffix = std::string(shape) + "/real_time/threads:" + std::to_string(threads);
        auto ours = rates_.find("BM_MemoryTryAcquireRelease" + suffix);
        auto naive = rates_.find("BM_NaiveTableTryAcquireRelease" + suffix);
        if (ours == rates_.end() || naive == rates_.end()) continue;
        std::printf("| %s | %d | %.2fM | %.2fM | %.2fx |\n",
                    std::string(shape) == "Distinct" ? "distinct keys" : "one hot key", threads,
                    ours->second / 1e6, naive->second / 1e6, ours->second / naive->second);
      }
    }
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}
