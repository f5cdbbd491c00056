#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redlock:// against npm redlock v5 (bench/redis/redlock_npm_bench.js) on the same three
# throwaway redis-servers, 1, 64 and 256 concurrent clients (CLIENTS), distinct keys and 8 hot
# keys: lockkit through the blocking API (lockkit-bench, C threads sharing one LockApi) and
# through AsyncLockApi's native path (async-bench, C operations in flight on one io thread).
# Prints a Markdown table with the ratios of lockkit's better column to npm (best of REPEATS
# runs each, interleaved) and the load average at the start and the end. Then the 3-node
# ceiling: redis-raw-bench --redlock (and --redlock --batch) against all three servers at once (bare hiredis clients
# sending redlock://'s acquire and release scripts, pipelined), the most pairs/s these servers
# can serve on this machine whatever the client.
# With REDIS_PLUS_PLUS_DIR set to an install prefix of redis-plus-plus (include/, lib/), its
# Redlock (bench/redis/redlock_rpp_bench.cpp, compiled here against it and Debian's hiredis)
# runs in the same rounds and gets a column of its own. Never part of the build or of CI.
#
#   [REDIS_PLUS_PLUS_DIR=/prefix] [CLIENTS="1 64 256"] \
#     bench/redis/redlock_compare.sh [BUILD_DIR] [SECONDS] [REPEATS]
# BUILD_DIR must be configured with -DLOCKKIT_BUILD_BENCH=ON and built; npm redlock comes from
# tests/redis/node (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/test/release}
secs=${2:-5}
repeats=${3:-3}
lockkit_bench=$build/bench/lockkit-bench
async_bench=$build/bench/async/async-bench
raw_bench=$build/bench/redis/redis-raw-bench
client_counts=${CLIENTS:-1 64 256}
[ -x "$lockkit_bench" ] || { echo "redlock_compare.sh: $lockkit_bench not built" >&2; exit 1; }
[ -x "$async_bench" ] || async_bench=""  # configured without lockkit::async
[ -d tests/redis/node/node_modules/redlock ] ||
  { echo "redlock_compare.sh: npm redlock missing (scripts/setup.sh)" >&2; exit 1; }

rpp=""
if [ -n "${REDIS_PLUS_PLUS_DIR:-}" ]; then
  rpp=$build/redlock_rpp_bench
  rpp_lib=$(ls "$REDIS_PLUS_PLUS_DIR"/lib*/libredis++.a 2>/dev/null | head -1)
  [ -n "$rpp_lib" ] || { echo "redlock_compare.sh: no libredis++.a under $REDIS_PLUS_PLUS_DIR" >&2; exit 1; }
  g++ -O2 -std=c++17 -pthread -I"$REDIS_PLUS_PLUS_DIR/include" bench/redis/redlock_rpp_bench.cpp \
    "$rpp_lib" -lhiredis -o "$rpp"
fi

# Sets dirs, ports, pids, url and portlist; destroys the servers on exit.
source bench/redis/three_servers.sh
field() { sed -n "s|.*$1=\([0-9.]*\).*|\1|p"; }

best() { sort -n | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
head="| clients | keys | redlock:// sync | redlock:// async (native) | npm redlock v5 | lockkit / npm |"
rule="|---|---|---|---|---|---|"
[ -n "$rpp" ] && head+=" redis-plus-plus | lockkit / redis-plus-plus |" && rule+="---|---|"
echo "$head"
echo "$rule"
for clients in $client_counts; do
  for hot in 0 8; do
    hotarg=() keys=distinct
    [ "$hot" -gt 0 ] && hotarg=(--hot-keys "$hot") && keys="8 hot"
    l=() a=(0) n=() r=(0)
    for _ in $(seq "$repeats"); do
      l+=("$("$lockkit_bench" --backend "$url" --clients "$clients" --seconds "$secs" "${hotarg[@]}" | field pairs/s)")
      if [ -n "$async_bench" ]; then
        a+=("$("$async_bench" pairs --backend "$url" --inflight "$clients" --seconds "$secs" \
          --hot-keys "$hot" | field pairs/s)")
      fi
      n+=("$(node bench/redis/redlock_npm_bench.js "$portlist" "$clients" "$secs" "$hot" | field pairs/s)")
      [ -n "$rpp" ] && r+=("$("$rpp" "$portlist" "$clients" "$secs" "$hot" | field pairs/s)")
    done
    lb=$(printf '%s\n' "${l[@]}" | best)
    ab=$(printf '%s\n' "${a[@]}" | best)
    nb=$(printf '%s\n' "${n[@]}" | best)
    top=$(printf '%s\n' "$lb" "$ab" | best)
    shown_ab=$ab
    [ "$ab" = 0 ] && shown_ab=n/a
    line="| $clients | $keys | $lb | $shown_ab | $nb | $(ratio "$top" "$nb")× |"
    if [ -n "$rpp" ]; then
      rb=$(printf '%s\n' "${r[@]}" | best)
      line+=" $rb | $(ratio "$top" "$rb")× |"
    fi
    echo "$line"
  done
done
echo
echo "load average at the end of the table: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -x "$raw_bench" ]; then
  # Every redlock:// pair runs on every node (a quorum is asked, and the third node gets the
  # request too), so the ceiling is what the slowest node serves while all three are loaded.
  echo
  # Few client threads with deep pipelines: 64 threads per node would spend on themselves the
  # CPU the servers need on a small machine, and measure the client instead.
  # Twice: one script call per operation (what the sync API and the other libraries send), and
  # --batch, each pipeline's operations as one script run (what the native async path sends).
  for batch in "" --batch; do
    echo "3-node ceiling (redis-raw-bench --redlock $batch, 4 clients x pipeline 32 per node, all nodes at once):"
    outs=()
    for p in "${ports[@]}"; do
      outs+=("$(mktemp)")
      "$raw_bench" --port "$p" --clients 4 --pipeline 32 --seconds "$secs" --redlock $batch >"${outs[-1]}" &
    done
    wait
    per_node=()
    for o in "${outs[@]}"; do per_node+=("$(field pairs/s <"$o")"); rm -f "$o"; done
    low=$(printf '%s\n' "${per_node[@]}" | sort -n | head -1)
    echo "per node pairs/s: ${per_node[*]}; ceiling (slowest node): $low pairs/s"
  done
  echo "load average after the ceiling: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
