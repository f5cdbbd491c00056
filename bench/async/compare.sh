#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# AsyncLockApi on redis:// (one io thread, INFLIGHT operations in flight, distinct keys) against
# redis-benchmark -P16 running the same acquire and release scripts at the same concurrency
# (the pipelined ceiling) and npm redlock v5 (ioredis, one server) with as many concurrent
# loops, on one throwaway redis-server; then 10,000 waiters on redis:// and memory:.
# Prints Markdown tables (best of REPEATS runs each, interleaved). Each run starts from an
# empty keyspace (FLUSHALL): the run after redis-benchmark would otherwise share the server with
# the expiry of the hundreds of thousands of 1 ms keys that one left. Besides pairs/s: CPU time per pair of the client process and of
# redis-server (its utime+stime from /proc before and after the run), for all three.
#
#   bench/async/compare.sh [BUILD_DIR] [SECONDS] [REPEATS] [INFLIGHT]
# BUILD_DIR must be configured with -DLOCKKIT_BUILD_BENCH=ON and built (async-bench,
# redis-raw-bench for the scripts); npm redlock comes from tests/redis/node (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/test/release}
secs=${2:-5}
repeats=${3:-3}
inflight=${4:-256}
async_bench=$build/bench/async/async-bench
raw_bench=$build/bench/redis/redis-raw-bench
for b in "$async_bench" "$raw_bench"; do
  [ -x "$b" ] || { echo "compare.sh: $b not built (configure with -DLOCKKIT_BUILD_BENCH=ON)" >&2; exit 1; }
done
command -v redis-benchmark >/dev/null || { echo "compare.sh: redis-benchmark missing (scripts/setup.sh)" >&2; exit 1; }
[ -d tests/redis/node/node_modules/redlock ] ||
  { echo "compare.sh: npm redlock missing (scripts/setup.sh)" >&2; exit 1; }

info=$(bash scripts/redis-server.sh start --owner-pid $$)
eval "$info"
trap 'bash scripts/redis-server.sh destroy "$SERVER_DIR"' EXIT
port=$SERVER_PORT
url=$SERVER_URL
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
tick=$(getconf CLK_TCK)
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
# Runs "$@" with its output in $out and sets $client_cpu (seconds, user+sys of the command).
timed() {
  local t
  out=$( { "$@"; times; } )
  t=$(tail -1 <<<"$out")  # times: the shell's line, then its children's
  out=$(head -n -2 <<<"$out")
  client_cpu=$(awk '{ split($1, u, "[ms]"); split($2, s, "[ms]"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' <<<"$t")
}
per_pair() {  # SECONDS PAIRS -> microseconds per pair
  awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", c * 1e6 / n; else print "-" }'
}
acquire_sha=$(cli SCRIPT LOAD "$("$raw_bench" --print-script acquire)")
release_sha=$(cli SCRIPT LOAD "$("$raw_bench" --print-script release)")
token=0123456789abcdef0123456789abcdef
field() { sed -n "s|.*$1=\([0-9.]*\).*|\1|p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# As bench/redis/compare.sh: the two scripts as separate passes, pairs/s = 1/(1/a + 1/r).
# Sets rb_pairs, rb_n (pairs done) and rb_cpu (the client's CPU seconds, both passes).
run_redis_benchmark() {  # CLIENTS PIPELINE
  local n=$(( secs * 80000 )) acq rel acq_cpu
  timed redis-benchmark -p "$port" -c "$1" -P "$2" -r 1000000 -n "$n" -q \
    EVALSHA "$acquire_sha" 3 bench:__rand_int__ "lockkit:{0}" "lockkit:{0}h:__rand_int__" "$token" 1
  acq=$(tr '\r' '\n' <<<"$out" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  acq_cpu=$client_cpu
  timed redis-benchmark -p "$port" -c "$1" -P "$2" -r 1000000 -n "$n" -q \
    EVALSHA "$release_sha" 2 bench:__rand_int__ "lockkit:{0}h:__rand_int__" "$token"
  rel=$(tr '\r' '\n' <<<"$out" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  rb_pairs=$(awk -v a="$acq" -v r="$rel" 'BEGIN { printf "%.0f", 1 / (1 / a + 1 / r) }')
  rb_n=$n
  rb_cpu=$(awk -v a="$acq_cpu" -v b="$client_cpu" 'BEGIN { print a + b }')
}
# Sets srv_us to redis-server's CPU time per pair since `s0` (ticks), over PAIRS pairs.
server_per_pair() {
  srv_us=$(per_pair "$(awk -v a="$s0" -v b="$(server_ticks)" -v t="$tick" 'BEGIN { print (b - a) / t }')" "$1")
}

echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $(nproc) cores, best of ${repeats} runs of ${secs}s, load at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo
lk=0 p50="" p99="" cpu="" lk_srv="" rb=0 rb_client="" rb_srv="" nr=0 nr_client="" nr_srv=""
# redis-benchmark's -c: INFLIGHT/16 connections with 16 pipelined each = INFLIGHT in flight.
rb_clients=$(( inflight / 16 > 0 ? inflight / 16 : 1 ))
better() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
for _ in $(seq "$repeats"); do
  cli FLUSHALL >/dev/null
  s0=$(server_ticks)
  out=$("$async_bench" pairs --backend "$url" --inflight "$inflight" --seconds "$secs")
  pairs=$(field pairs/s <<<"$out")
  server_per_pair "$(awk -v p="$pairs" -v s="$secs" 'BEGIN { print p * s }')"
  if better "$pairs" "$lk"; then
    lk=$pairs p50=$(field p50 <<<"$out") p99=$(field p99 <<<"$out") cpu=$(field cpu/pair <<<"$out")
    lk_srv=$srv_us
  fi
  cli FLUSHALL >/dev/null
  s0=$(server_ticks)
  run_redis_benchmark "$rb_clients" 16
  server_per_pair "$rb_n"  # both passes: rb_n acquires, then rb_n releases
  if better "$rb_pairs" "$rb"; then
    rb=$rb_pairs rb_client=$(per_pair "$rb_cpu" "$rb_n") rb_srv=$srv_us
  fi
  cli FLUSHALL >/dev/null
  s0=$(server_ticks)
  timed node bench/redis/redlock_npm_bench.js "$port" "$inflight" "$secs" 0
  pairs=$(field pairs/s <<<"$out")
  n=$(awk -v p="$pairs" -v s="$secs" 'BEGIN { print p * s }')
  server_per_pair "$n"
  if better "$pairs" "$nr"; then
    nr=$pairs nr_client=$(per_pair "$client_cpu" "$n") nr_srv=$srv_us
  fi
done
echo "| redis://, one io thread, $inflight in flight, distinct keys | pairs/s | p50 / p99 µs | client CPU µs/pair | redis-server CPU µs/pair | vs redis-benchmark -P16 | vs npm redlock v5 |"
echo "|---|---|---|---|---|---|---|"
echo "| AsyncLockApi | $lk | $p50 / $p99 | $cpu | $lk_srv | $(ratio "$lk" "$rb")× | $(ratio "$lk" "$nr")× |"
echo "| redis-benchmark -P16, $rb_clients connections, same scripts | $rb | | $rb_client | $rb_srv | 1.00× | |"
echo "| npm redlock v5 (ioredis), $inflight concurrent loops | $nr | | $nr_client | $nr_srv | | 1.00× |"
echo
echo "| 10,000 waiters (5 per key), one io thread | RSS per waiter | CPU per waiter while waiting | release → next grant p50 / p99 |"
echo "|---|---|---|---|"
for backend in "$url" memory:; do
  out=$("$async_bench" waiters --backend "$backend" --waiters 10000 --per-key 5)
  name=${backend%%:*}
  echo "| $name | $(field rss/waiter <<<"$out") kB | $(field cpu/waiter <<<"$out") µs/s | $(field 'handoff p50' <<<"$out") / $(field p99 <<<"$out") ms |"
done
