// SPDX-License-Identifier: MIT
// redis-raw-bench: the ceiling lockkit's redis:// is measured against. Each client is a thread
// with its own bare hiredis connection sending exactly what lockkit sends (EVALSHA of the same
// acquire script on the same keys, then the token-checked release), optionally pipelined.
//
//   redis-raw-bench --port 6379 --clients 64 --seconds 5 [--hot-keys 8] [--pipeline 16]
// With --redlock it sends what redlock:// sends one node (kRedlockAcquireScript, then the
// release): bench/redis/redlock_compare.sh runs one per node at once for the 3-node ceiling.
// With --redlock --batch each pipeline's acquires go as one run of kRedlockBatchScript, and
// its releases as another, as redlock://'s native async client sends what one turn holds.
#include <hiredis/hiredis.h>
#include "../bench_stats.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lockkit/lock_api.hpp"
#include "redis/redis_keys.hpp"
#include "redis/redis_scripts.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string host = "127.0.0.1";
  int port = 6379;
  int clients = 1;
  double seconds = 5;
  int keys = 1000;
  int hot_keys = 0;
  int pipeline = 1;
  bool json = false;
  bool redlock = false;
  bool batch = false;
};

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "redis-raw-bench: %s\nusage: redis-raw-bench [--host H] --port P [--clients C] "
               "[--seconds S] [--keys K] [--hot-keys N] [--pipeline D] [--redlock [--batch]] "
               "[--json]\n"
               "       redis-raw-bench --print-script acquire|release\n",
               problem);
  std::exit(64);
}

struct Result {
  std::uint64_t pairs = 0;
  std::uint64_t refused = 0;
  std::vector<std::uint32_t> latency_us;
  std::string error;
};

struct Context {
  redisContext* c;
  ~Context() {
    if (c) redisFree(c);
  }
};

redisReply* command(redisContext* c, const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (auto a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
}

void append(redisContext* c, const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (auto a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data());
}

std::string load(redisContext* c, const char* script) {
  auto* r = command(c, {"SCRIPT", "LOAD", script});
  if (!r || r->type != REDIS_REPLY_STRING) usage("SCRIPT LOAD failed");
  std::string sha(r->str, r->len);
  freeReplyObject(r);
  return sha;
}

using lockkit::bench::percentile;

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (a == "--host")
      cfg.host = value();
    else if (a == "--port")
      cfg.port = std::atoi(value());
    else if (a == "--clients")
      cfg.clients = std::atoi(value());
    else if (a == "--seconds")
      cfg.seconds = std::atof(value());
    else if (a == "--keys")
      cfg.keys = std::atoi(value());
    else if (a == "--hot-keys")
      cfg.hot_keys = std::atoi(value());
    else if (a == "--pipeline")
      cfg.pipeline = std::atoi(value());
    else if (a == "--json")
      cfg.json = true;
    else if (a == "--redlock")
      cfg.redlock = true;
    else if (a == "--batch")
      cfg.batch = true;
    else if (a == "--print-script") {
      // For redis-benchmark: the exact scripts, so that it sends the same EVALSHA.
      std::string_view which = value();
      std::fputs(which == "acquire" ? lockkit::detail::redis::kAcquireScript
                                    : lockkit::detail::redis::kReleaseScript,
                 stdout);
      return 0;
    } else
      usage("unknown argument");
  }
  if (cfg.port <= 0 || cfg.clients <= 0 || cfg.seconds <= 0 || cfg.keys <= 0 || cfg.pipeline <= 0) {
    usage("bad numbers");
  }
  if (cfg.batch && !cfg.redlock) usage("--batch needs --redlock");
  const std::string run = "raw-bench/" + lockkit::make_token().substr(0, 8) + "/";
  const lockkit::detail::redis::KeyLayout layout("");
  std::vector<Result> results(static_cast<std::size_t>(cfg.clients));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < cfg.clients; ++t) {
    threads.emplace_back([&, t] {
      Result& r = results[static_cast<std::size_t>(t)];
      Context ctx{redisConnectWithTimeout(cfg.host.c_str(), cfg.port, timeval{2, 0})};
      if (!ctx.c || ctx.c->err) {
        r.error = ctx.c ? ctx.c->errstr : "connect failed";
        ready.fetch_add(1);
        return;
      }
      redisSetTimeout(ctx.c, timeval{2, 0});
      const std::string acquire_sha =
          load(ctx.c, cfg.redlock ? lockkit::detail::redis::kRedlockAcquireScript
                                  : lockkit::detail::redis::kAcquireScript);
      const std::string meta = "lockkit:{redlock}";
      const std::string release_sha = load(ctx.c, lockkit::detail::redis::kReleaseScript);
      const std::string batch_sha =
          cfg.batch ? load(ctx.c, lockkit::detail::redis::kRedlockBatchScript) : std::string();
      struct Keys {
        std::string lock, fence, holder;
      };
      std::vector<Keys> keys;
      int n = cfg.hot_keys > 0 ? cfg.hot_keys : cfg.keys;
      for (int k = 0; k < n; ++k) {
        std::string name = cfg.hot_keys > 0 ? run + "hot/" + std::to_string(k)
                                            : run + std::to_string(t) + "/" + std::to_string(k);
        Keys ks;
        layout.keys_of(name, ks.lock, ks.fence, ks.holder);
        keys.push_back(std::move(ks));
      }
      r.latency_us.reserve(1 << 16);
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      std::size_t i = static_cast<std::size_t>(t);
      std::vector<std::string> tokens(static_cast<std::size_t>(cfg.pipeline));
      std::vector<const Keys*> batch(static_cast<std::size_t>(cfg.pipeline));
      std::vector<bool> granted(static_cast<std::size_t>(cfg.pipeline));
      // Counts one pipeline's outcome: `wins` pairs made since `start`.
      const auto record = [&](int wins, Clock::time_point start) {
        r.pairs += static_cast<std::uint64_t>(wins);
        r.refused += static_cast<std::uint64_t>(cfg.pipeline - wins);
        if (wins > 0) {
          auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
          r.latency_us.push_back(static_cast<std::uint32_t>(us.count()));
        }
      };
      std::vector<std::string> floors(static_cast<std::size_t>(cfg.pipeline));
      while (cfg.batch && !stop.load(std::memory_order_relaxed)) {
        auto start = Clock::now();
        const std::size_t pipeline = static_cast<std::size_t>(cfg.pipeline);
        const std::string numkeys = std::to_string(4 * pipeline);
        std::vector<std::string_view> args = {"EVALSHA", batch_sha, numkeys};
        for (std::size_t p = 0; p < pipeline; ++p) {
          batch[p] = &keys[i++ % keys.size()];
          tokens[p] = lockkit::make_token();
          floors[p] = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
          args.insert(args.end(), {batch[p]->lock, batch[p]->fence, batch[p]->holder, meta});
        }
        const std::string ops(pipeline, 'a');
        args.push_back(ops);
        for (std::size_t p = 0; p < pipeline; ++p) {
          args.insert(args.end(), {tokens[p], "10000", "10000", "", floors[p]});
        }
        auto* rep = command(ctx.c, args);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != pipeline) {
          r.error = rep ? "unexpected reply to the batch" : ctx.c->errstr;
          if (rep) freeReplyObject(rep);
          return;
        }
        std::vector<std::string_view> release = {"EVALSHA", batch_sha, ""};
        std::string rops;
        for (std::size_t p = 0; p < pipeline; ++p) {
          const redisReply* e = rep->element[p];
          granted[p] = e->type == REDIS_REPLY_ARRAY && e->elements == 3 &&
                       e->element[0]->type == REDIS_REPLY_INTEGER && e->element[0]->integer > 0;
          if (granted[p]) {
            release.insert(release.end(), {batch[p]->lock, batch[p]->holder});
            rops.push_back('r');
          }
        }
        freeReplyObject(rep);
        const int wins = static_cast<int>(rops.size());
        const std::string release_keys = std::to_string(2 * rops.size());
        release[2] = release_keys;
        release.push_back(rops);
        for (std::size_t p = 0; p < pipeline; ++p) {
          if (granted[p]) release.push_back(tokens[p]);
        }
        if (wins > 0) {
          rep = command(ctx.c, release);
          if (!rep) {
            r.error = ctx.c->errstr;
            return;
          }
          freeReplyObject(rep);
        }
        record(wins, start);
      }
      while (!cfg.batch && !stop.load(std::memory_order_relaxed)) {
        auto start = Clock::now();
        for (int p = 0; p < cfg.pipeline; ++p) {
          batch[p] = &keys[i++ % keys.size()];
          tokens[p] = lockkit::make_token();
          if (cfg.redlock) {
            const std::string floor =
                std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
            append(ctx.c, {"EVALSHA", acquire_sha, "4", batch[p]->lock, batch[p]->fence,
                           batch[p]->holder, meta, tokens[p], "10000", "10000", "", floor});
          } else {
            append(ctx.c, {"EVALSHA", acquire_sha, "3", batch[p]->lock, batch[p]->fence,
                           batch[p]->holder, tokens[p], "10000"});
          }
        }
        int wins = 0;
        for (int p = 0; p < cfg.pipeline; ++p) {
          void* reply = nullptr;
          if (redisGetReply(ctx.c, &reply) != REDIS_OK) {
            r.error = ctx.c->errstr;
            return;
          }
          auto* rep = static_cast<redisReply*>(reply);
          granted[p] =
              rep->type == REDIS_REPLY_INTEGER ? rep->integer > 0
              : rep->type == REDIS_REPLY_ARRAY && rep->elements == 3
                  ? rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer > 0
                  : false;
          freeReplyObject(rep);
          if (granted[p]) {
            ++wins;
            append(ctx.c,
                   {"EVALSHA", release_sha, "2", batch[p]->lock, batch[p]->holder, tokens[p]});
          }
        }
        for (int p = 0; p < wins; ++p) {
          void* reply = nullptr;
          if (redisGetReply(ctx.c, &reply) != REDIS_OK) {
            r.error = ctx.c->errstr;
            return;
          }
          freeReplyObject(reply);
        }
        record(wins, start);
      }
    });
  }
  while (ready.load() < cfg.clients) std::this_thread::yield();
  auto begin = Clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(cfg.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  Result total;
  for (auto& r : results) {
    total.pairs += r.pairs;
    total.refused += r.refused;
    if (total.error.empty()) total.error = r.error;
    total.latency_us.insert(total.latency_us.end(), r.latency_us.begin(), r.latency_us.end());
  }
  if (!total.error.empty()) {
    std::fprintf(stderr, "redis-raw-bench: %s\n", total.error.c_str());
    return 69;
  }
  double p50 = percentile(total.latency_us, 0.5);
  double p99 = percentile(total.latency_us, 0.99);
  double pairs_s = static_cast<double>(total.pairs) / seconds;
  double refused_s = static_cast<double>(total.refused) / seconds;
  if (cfg.json) {
    std::printf(
        "{\"clients\":%d,\"pipeline\":%d,\"hot_keys\":%d,\"pairs_per_s\":%.0f,"
        "\"refused_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
        cfg.clients, cfg.pipeline, cfg.hot_keys, pairs_s, refused_s, p50, p99);
  } else {
    std::printf(
        "raw hiredis clients=%-4d pipeline=%-3d %-8s pairs/s=%-10.0f refused/s=%-10.0f "
        "p50=%.0fus p99=%.0fus\n",
        cfg.clients, cfg.pipeline, cfg.hot_keys > 0 ? "hot" : "distinct", pairs_s, refused_s, p50,
        p99);
  }
  return 0;
}
