#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# CPU per redlock pair, client and servers apart, on three throwaway redis-servers: the native
# async path (async-bench pairs), the blocking API (lockkit-bench), npm redlock v5
# (bench/redis/redlock_npm_bench.js) and the bare 3-node ceiling (redis-raw-bench --redlock, without
# and with --batch, one per node at once), one after another in the same run, C clients on distinct keys (or HOT hot
# keys). Client CPU: `perf stat -e task-clock` of the client process(es); servers' CPU: utime +
# stime of the three redis-servers from /proc/PID/stat before and after, summed. Each divided by
# the pairs made (for the ceiling, a redlock pair is one pair on each of the three nodes).
# Prints one line per client and the bound this puts on a client's rate on this machine:
# client and servers share `nproc` cores, so no client makes more than
# nproc / (server CPU per pair + its own CPU per pair) pairs per second.
#
#   [CLIENTS=64] [HOT=0] bench/redis/redlock_cpu.sh [BUILD_DIR] [SECONDS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/rel}
secs=${2:-3}
repeats=${3:-1}
clients=${CLIENTS:-64}
hot=${HOT:-0}
lockkit_bench=$build/bench/lockkit-bench
async_bench=$build/bench/async/async-bench
raw_bench=$build/bench/redis/redis-raw-bench
for b in "$lockkit_bench" "$async_bench" "$raw_bench"; do
  [ -x "$b" ] || { echo "redlock_cpu.sh: $b not built" >&2; exit 1; }
done
[ -d tests/redis/node/node_modules/redlock ] ||
  { echo "redlock_cpu.sh: npm redlock missing (npm ci in tests/redis/node)" >&2; exit 1; }
command -v perf >/dev/null || { echo "redlock_cpu.sh: perf not found" >&2; exit 1; }

# Sets dirs, ports, pids, url and portlist; destroys the servers on exit.
source bench/redis/three_servers.sh
tck=$(getconf CLK_TCK)
field() { sed -n "s|.*$1=\([0-9.]*\).*|\1|p" | head -1; }
# utime + stime of the three servers, in seconds.
servers_cpu() {
  local sum=0 p
  for p in "${pids[@]}"; do
    # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    sum=$((sum + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  awk -v s="$sum" -v t="$tck" 'BEGIN { printf "%.4f", s / t }'
}
# Runs "$@" under perf stat; prints its stdout, then "task_ms=..." of the whole process tree.
with_cpu() {
  local out err
  out=$(mktemp) err=$(mktemp)
  perf stat -x, -e task-clock -o "$err" -- "$@" >"$out"
  cat "$out"
  echo "task_ms=$(awk -F, '/task-clock/ { print $1 }' "$err")"
  rm -f "$out" "$err"
}
report() {  # name pairs/s seconds client_ms s0 s1
  awk -v n="$1" -v r="$2" -v secs="$3" -v c="$4" -v s0="$5" -v s1="$6" -v cores="$(nproc)" 'BEGIN {
    pairs = r * secs
    if (pairs <= 0) { printf "%-34s no pairs\n", n; exit }
    cl = c * 1000 / pairs; sv = (s1 - s0) * 1e6 / pairs
    printf "%-34s pairs/s=%-7.0f client=%5.1f us/pair  servers=%5.1f us/pair  sum=%5.1f us/pair  bound=%6.0f pairs/s\n",
      n, r, cl, sv, cl + sv, cores * 1e6 / (cl + sv)
  }'
}
hotargs=() keys=distinct
[ "$hot" -gt 0 ] && hotargs=(--hot-keys "$hot") && keys="$hot hot"
echo "clients=$clients keys=$keys seconds=$secs cores=$(nproc)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$repeats"); do
  s0=$(servers_cpu)
  o=$(with_cpu "$async_bench" pairs --backend "$url" --inflight "$clients" --seconds "$secs" \
    --hot-keys "$hot")
  s1=$(servers_cpu)
  report "redlock:// async (native)" "$(field pairs/s <<<"$o")" "$secs" "$(field task_ms <<<"$o")" "$s0" "$s1"

  s0=$(servers_cpu)
  o=$(with_cpu "$lockkit_bench" --backend "$url" --clients "$clients" --seconds "$secs" "${hotargs[@]}")
  s1=$(servers_cpu)
  report "redlock:// threads" "$(field pairs/s <<<"$o")" "$secs" "$(field task_ms <<<"$o")" "$s0" "$s1"

  s0=$(servers_cpu)
  o=$(with_cpu node bench/redis/redlock_npm_bench.js "$portlist" "$clients" "$secs" "$hot")
  s1=$(servers_cpu)
  report "npm redlock v5" "$(field pairs/s <<<"$o")" "$secs" "$(field task_ms <<<"$o")" "$s0" "$s1"

  # The ceiling: one redis-raw-bench per node at once, under one perf stat; one script call per
  # operation, then (--batch) each pipeline's operations as one script run.
  for batch in "" --batch; do
    s0=$(servers_cpu)
    o=$(with_cpu bash -c '
      for p in '"${ports[*]}"'; do
        "$0" --port "$p" --clients 4 --pipeline 32 --seconds '"$secs"' --redlock '"$batch"' '"${hotargs[*]}"' &
      done; wait' "$raw_bench")
    s1=$(servers_cpu)
    # A redlock pair is one pair on each node: the three nodes' pairs / 3.
    per_node=$(sed -n 's|.*pairs/s=\([0-9.]*\).*|\1|p' <<<"$o" | awk '{ s += $1 } END { printf "%.0f", s / 3 }')
    report "redis-raw-bench --redlock $batch" "$per_node" "$secs" "$(field task_ms <<<"$o")" "$s0" "$s1"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
