// SPDX-License-Identifier: MIT
// memory: try_acquire+release pairs against a naive one-mutex table doing the same work.
//
// The naive reference hands out the same things per acquisition (a fresh 128-bit token from the
// same generator, a per-store fence, an expiry) from one std::unordered_map under one
// std::mutex that erases on release: what a first implementation would look like. Three key
// shapes: a fixed set of distinct keys taken again and again, a fresh key for every acquisition
// (like order ids: never reused), and one hot key. Every benchmark runs several times
// (--benchmark_repetitions, 5 unless given), the repetitions of all benchmarks shuffled
// together, so that both tables meet the same moments of a shared machine; the table printed at
// the end gives, per side, the median pairs/s with its min and max, the CPU time per pair, and
// the ratio of the medians.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
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

// Never-used keys of one thread, "o/<thread>/<n>" (17 bytes for the 13-digit n the runs use,
// like order ids): n counts up in decimal in place, so that making a key costs a few
// instructions (a full formatting every tenth key), the same for both tables.
class FreshKeys {
 public:
  FreshKeys(int thread, std::uint64_t first) : n_(first) {
    char* p = buf_;
    *p++ = 'o';
    *p++ = '/';
    p = std::to_chars(p, buf_ + sizeof(buf_), thread).ptr;
    *p++ = '/';
    digits_ = static_cast<std::size_t>(p - buf_);
    format();
  }

  std::string_view next() noexcept {
    if (++n_ % 10 != 0) {
      ++buf_[size_ - 1];
    } else {
      format();
    }
    return {buf_, size_};
  }

 private:
  void format() noexcept {
    size_ =
        static_cast<std::size_t>(std::to_chars(buf_ + digits_, buf_ + sizeof(buf_), n_).ptr - buf_);
  }

  char buf_[40];
  std::size_t digits_ = 0;
  std::size_t size_ = 0;
  std::uint64_t n_;
};

// The same loop for both tables: `Table` is a LockApi or NaiveTable.
template <class Table, Keys kShape>
void TryAcquireRelease(benchmark::State& state, Table& table) {
  auto keys = keys_for(state, kShape);
  // Each run of a benchmark (and thread) takes fresh keys from a range of its own, 10^9 keys
  // from 10^12 on: never reused, and always 13 digits, so the same length for both tables.
  static std::atomic<std::uint64_t> next_range{0};
  FreshKeys fresh(state.thread_index(),
                  1'000'000'000'000 + next_range.fetch_add(1, std::memory_order_relaxed) *
                                          std::uint64_t{1'000'000'000});
  std::size_t i = 0;
  std::int64_t granted = 0;
  for (auto _ : state) {
    std::string_view key;
    if constexpr (kShape == Keys::kFresh) {
      key = fresh.next();
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

// Keeps every repetition's granted pairs/s and CPU time per pair, then prints lockkit against
// the naive table: medians, their ranges, and the ratio of the medians.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      auto it = run.counters.find("items_per_second");
      if (it == run.counters.end() || run.iterations == 0) continue;
      Samples& samples = samples_[{run.run_name.function_name, run.threads}];
      samples.rate.push_back(it->second.value);
      // Every thread's CPU time, per attempt: what a pair costs, whether or not the threads
      // got a core each.
      samples.cpu_ns.push_back(run.cpu_accumulated_time * 1e9 /
                               static_cast<double>(run.iterations));
    }
  }

  void PrintRatios() const {
    std::printf("\nload average at the start: %s, at the end: %s\n", load_at_start_.c_str(),
                load_average().c_str());
    std::printf(
        "\n| case | threads | lockkit memory: pairs/s, median (min-max) | CPU ns/pair | naive "
        "table: pairs/s, median (min-max) | CPU ns/pair | ratio of medians | runs |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (const char* shape : {"Distinct", "FreshKeys", "HotKey"}) {
      for (int threads : {1, 2}) {
        auto ours = samples_.find({std::string("BM_MemoryTryAcquireRelease") + shape, threads});
        auto naive =
            samples_.find({std::string("BM_NaiveTableTryAcquireRelease") + shape, threads});
        if (ours == samples_.end() || naive == samples_.end()) continue;
        const double ours_median = median(ours->second.rate);
        const double naive_median = median(naive->second.rate);
        std::printf(
            "| %s | %d | %.2fM (%.2f-%.2fM) | %.0f | %.2fM (%.2f-%.2fM) | %.0f | %.2fx | %zu |\n",
            label(shape), threads, ours_median / 1e6, min(ours->second.rate) / 1e6,
            max(ours->second.rate) / 1e6, median(ours->second.cpu_ns), naive_median / 1e6,
            min(naive->second.rate) / 1e6, max(naive->second.rate) / 1e6,
            median(naive->second.cpu_ns), ours_median / naive_median,
            std::min(ours->second.rate.size(), naive->second.rate.size()));
      }
    }
  }

 private:
  struct Samples {
    std::vector<double> rate;
    std::vector<double> cpu_ns;
  };

  // The load averages (1, 5, 15 minutes): on a shared machine, what the figures met.
  static std::string load_average() {
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 1) return "unknown";
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", load[0], load[1], load[2]);
    return buf;
  }

  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }
  static double min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
  static double max(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

  static const char* label(std::string_view shape) {
    if (shape == "Distinct") return "distinct keys, reused";
    if (shape == "FreshKeys") return "a fresh key per acquire";
    return "one hot key";
  }

  std::map<std::pair<std::string, int>, Samples> samples_;
  std::string load_at_start_ = load_average();
};

}  // namespace

int main(int argc, char** argv) {
  // Defaults first, so that the same flags given on the command line override them.
  std::vector<char*> args{argv[0]};
  std::string repetitions = "--benchmark_repetitions=5";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  std::string min_time = "--benchmark_min_time=0.2";
  args.push_back(repetitions.data());
  args.push_back(interleave.data());
  args.push_back(min_time.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}
