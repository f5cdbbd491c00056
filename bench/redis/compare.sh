#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Measures redis:// against its raw ceilings in one run, on a throwaway redis-server:
#   lockkit-bench (one shared LockApi)  vs  redis-raw-bench (a bare hiredis connection per
#   client sending the same EVALSHA acquire + release, without and with pipelining)  vs
#   redis-benchmark on the same two scripts with -P 1 and -P 16 at the same concurrency.
# Prints a Markdown table with lockkit/raw ratios.
#
#   bench/redis/compare.sh [BUILD_DIR] [SECONDS] [REPEATS]
# BUILD_DIR must be configured with -DLOCKKIT_BUILD_BENCH=ON and built. Each measurement is
# repeated REPEATS times (default 3), lockkit and raw runs interleaved, and the best run is
# kept: on a shared machine the best of a few runs is the least disturbed one.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/test/release}
secs=${2:-5}
repeats=${3:-3}
lockkit_bench=$build/bench/lockkit-bench
raw_bench=$build/bench/redis/redis-raw-bench
for b in "$lockkit_bench" "$raw_bench"; do
  [ -x "$b" ] || { echo "compare.sh: $b not built (configure with -DLOCKKIT_BUILD_BENCH=ON)" >&2; exit 1; }
done
command -v redis-benchmark >/dev/null || { echo "compare.sh: redis-benchmark missing (scripts/setup.sh)" >&2; exit 1; }

info=$(bash scripts/redis-server.sh start --owner-pid $$)
eval "$info"
trap 'bash scripts/redis-server.sh destroy "$SERVER_DIR"' EXIT
port=$SERVER_PORT
url=$SERVER_URL
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
acquire_sha=$(cli SCRIPT LOAD "$("$raw_bench" --print-script acquire)")
release_sha=$(cli SCRIPT LOAD "$("$raw_bench" --print-script release)")
token=0123456789abcdef0123456789abcdef

field() { sed -n "s|.*$1=\([0-9.]*\).*|\1|p"; }

# lockkit-bench CLIENTS [HOT] -> "pairs p50 p99"
run_lockkit() {
  local hot=() out
  [ "${2:-0}" -gt 0 ] && hot=(--hot-keys "$2")
  out=$("$lockkit_bench" --backend "$url" --clients "$1" --seconds "$secs" "${hot[@]}")
  echo "$(field pairs/s <<<"$out") $(field p50 <<<"$out") $(field p99 <<<"$out")"
}

# redis-raw-bench CLIENTS PIPELINE [HOT] -> "pairs"
run_raw() {
  local hot=()
  [ "${3:-0}" -gt 0 ] && hot=(--hot-keys "$3")
  "$raw_bench" --port "$port" --clients "$1" --pipeline "$2" --seconds "$secs" "${hot[@]}" |
    field pairs/s
}

# redis-benchmark CLIENTS PIPELINE KEYSPACE -> pairs/s from the acquire and release rates.
# Acquires use a 1 ms TTL so random keys keep being free (granted path); the two scripts run
# as separate redis-benchmark passes, so pairs/s = 1 / (1/acquire_rate + 1/release_rate).
run_redis_benchmark() {
  local n=$(( secs * ($2 > 1 ? 80000 : ($1 == 1 ? 12000 : 30000)) ))
  local acq rel
  acq=$(redis-benchmark -p "$port" -c "$1" -P "$2" -r "$3" -n "$n" -q \
        EVALSHA "$acquire_sha" 3 bench:__rand_int__ "lockkit:{0}" "lockkit:{0}h:__rand_int__" \
        "$token" 1 | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  rel=$(redis-benchmark -p "$port" -c "$1" -P "$2" -r "$3" -n "$n" -q \
        EVALSHA "$release_sha" 2 bench:__rand_int__ "lockkit:{0}h:__rand_int__" "$token" |
        tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  awk -v a="$acq" -v r="$rel" 'BEGIN { printf "%.0f", 1 / (1 / a + 1 / r) }'
}

best() { tr ' ' '\n' | sort -g | tail -1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $(nproc) cores, best of ${repeats} runs of ${secs}s, load at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | lockkit pairs/s (p50/p99 µs) | raw hiredis | raw hiredis -P16 | redis-benchmark | redis-benchmark -P16 | lockkit / raw | lockkit / redis-benchmark -P16 |"
echo "|---|---|---|---|---|---|---|---|"
row() {  # NAME CLIENTS HOT KEYSPACE
  local lk=0 p50="" p99="" raw1="" raw16="" rb1="" rb16="" i out pairs
  for i in $(seq 1 "$repeats"); do
    read -r pairs out <<<"$(run_lockkit "$2" "$3")"
    if awk -v a="$pairs" -v b="$lk" 'BEGIN { exit !(a > b) }'; then lk=$pairs; read -r p50 p99 <<<"$out"; fi
    raw1+=" $(run_raw "$2" 1 "$3")"
    raw16+=" $(run_raw "$2" 16 "$3")"
    # redis-benchmark cannot chain a release to a granted acquire: on hot keys its acquires
    # are nearly all refused, which says nothing about pairs. Only distinct keys are compared.
    if [ "$3" -eq 0 ]; then
      rb1+=" $(run_redis_benchmark "$2" 1 "$4")"
      rb16+=" $(run_redis_benchmark "$2" 16 "$4")"
    fi
  done
  raw1=$(best <<<"$raw1"); raw16=$(best <<<"$raw16")
  local vs_rb16=n/a
  if [ "$3" -eq 0 ]; then
    rb1=$(best <<<"$rb1"); rb16=$(best <<<"$rb16"); vs_rb16=$(ratio "$lk" "$rb16")
  else
    rb1=n/a; rb16=n/a
  fi
  printf '| %s | %.0f (%s/%s) | %.0f | %.0f | %s | %s | %s | %s |\n' "$1" "$lk" "$p50" "$p99" \
    "$raw1" "$raw16" "$rb1" "$rb16" "$(ratio "$lk" "$raw1")" "$vs_rb16"
}
row "1 client, distinct keys" 1 0 1000000
row "64 threads, one LockApi, distinct keys" 64 0 1000000
row "64 threads, one LockApi, 8 hot keys" 64 8 8
