// SPDX-License-Identifier: MIT
// memory: try_acquire+release pairs against a naive one-mutex table doing the same work.
//
// The naive reference hands out the same things per acquisition (a fresh 128-bit token from the
// same generator, a per-store fence, an expiry) from one std::unordered_map under one
// std::mutex that erases on release: what a first implementation would look like. Three key
// shapes: a fixed set of distinct keys taken again and again, a fresh key for every acquisition
// (like order ids: never reused), and one hot key. The table printed at the end gives pairs/s of
// both and their ratio.
#include <benchmark/benchmark.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
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

  std::optional<Held> try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
    std::string token = lockkit::make_token();
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> guard(mu_);
    auto [it, inserted] = table_.try_emplace(std::string(key));
    if (!inserted && it->second.expires > now) return std::nullopt;
    it->second = Entry{token, ++fence_, now + ttl};
    return Held{std::string(key), std::move(token), fence_};
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

lockkit::LockApi& memory_api() {
  static std::shared_ptr<lockkit::LockApi> api = lockkit::make_memory_lock_api();
  return *api;
}

NaiveTable& naive_table() {
  static NaiveTable table;
  return table;
}

enum class Keys { kReused, kFresh, kHot };

std::vector<std::string> keys_for(const benchmark::State& state, Keys shape) {
  std::vector<std::string> keys;
  if (shape == Keys::kHot) return {"hot"};
  for (int i = 0; i < 1024; ++i) {
    keys.push_back("key/" + std::to_string(state.thread_index()) + "/" + std::to_string(i));
  }
  return keys;
}

// Writes the next never-used key of this thread ("o/<thread>/<n>", short enough for the
// small-string buffer, as order ids are) into `buf`.
std::string_view fresh_key(char (&buf)[32], int thread, std::uint64_t n) {
  char* p = buf;
  *p++ = 'o';
  *p++ = '/';
  p = std::to_chars(p, buf + sizeof(buf), thread).ptr;
  *p++ = '/';
  p = std::to_chars(p, buf + sizeof(buf), n).ptr;
  return std::string_view(buf, static_cast<std::size_t>(p - buf));
}

// The same loop for both tables: `Table` is a LockApi or NaiveTable.
template <class Table, Keys kShape>
void TryAcquireRelease(benchmark::State& state, Table& table) {
  auto keys = keys_for(state, kShape);
  // Fresh keys continue where the previous run of this benchmark stopped: never reused.
  static std::atomic<std::uint64_t> next_fresh{0};
  std::uint64_t fresh = next_fresh.fetch_add(std::uint64_t{1} << 40);
  char buf[32];
  std::size_t i = 0;
  std::int64_t granted = 0;
  for (auto _ : state) {
    std::string_view key;
    if constexpr (kShape == Keys::kFresh) {
      key = fresh_key(buf, state.thread_index(), fresh++);
    } else {
      key = keys[i++ & (keys.size() - 1)];
    }
    auto held = table.try_acquire(key, 30s);
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

template <Keys kShape>
void BM_MemoryTryAcquireRelease(benchmark::State& state) {
  TryAcquireRelease<lockkit::LockApi, kShape>(state, memory_api());
}

template <Keys kShape>
void BM_NaiveTableTryAcquireRelease(benchmark::State& state) {
  TryAcquireRelease<NaiveTable, kShape>(state, naive_table());
}

BENCHMARK(BM_MemoryTryAcquireRelease<Keys::kReused>)
    ->Name("BM_MemoryTryAcquireReleaseDistinct")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_NaiveTableTryAcquireRelease<Keys::kReused>)
    ->Name("BM_NaiveTableTryAcquireReleaseDistinct")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_MemoryTryAcquireRelease<Keys::kFresh>)
    ->Name("BM_MemoryTryAcquireReleaseFreshKeys")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_NaiveTableTryAcquireRelease<Keys::kFresh>)
    ->Name("BM_NaiveTableTryAcquireReleaseFreshKeys")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_MemoryTryAcquireRelease<Keys::kHot>)
    ->Name("BM_MemoryTryAcquireReleaseHotKey")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_NaiveTableTryAcquireRelease<Keys::kHot>)
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
    for (const char* shape : {"Distinct", "FreshKeys", "HotKey"}) {
      for (int threads : {1, 2}) {
        std::string suffix = std::string(shape) + "/real_time/threads:" + std::to_string(threads);
        auto ours = rates_.find("BM_MemoryTryAcquireRelease" + suffix);
        auto naive = rates_.find("BM_NaiveTableTryAcquireRelease" + suffix);
        if (ours == rates_.end() || naive == rates_.end()) continue;
        std::printf("| %s | %d | %.2fM | %.2fM | %.2fx |\n", label(shape), threads,
                    ours->second / 1e6, naive->second / 1e6, ours->second / naive->second);
      }
    }
  }

 private:
  static const char* label(std::string_view shape) {
    if (shape == "Distinct") return "distinct keys, reused";
    if (shape == "FreshKeys") return "a fresh key per acquire";
    return "one hot key";
  }

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
