#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis:// on one server vs a throwaway 3-master Redis Cluster (3 replicas), and the cost of
# wait_replicas=1, with lockkit-bench at the same number of threads sharing one LockApi.
# Prints one Markdown row per case; the runs are interleaved, REPEATS times (best kept).
#
#   bench/redis/cluster.sh [BUILD_DIR] [SECONDS] [REPEATS] [CLIENTS]
# BUILD_DIR must be configured with -DLOCKKIT_BUILD_BENCH=ON and built. Every server runs on
# loopback in its own temporary directory and is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/test/release}
secs=${2:-3}
repeats=${3:-3}
clients=${4:-64}
lockkit_bench=$build/bench/lockkit-bench
[ -x "$lockkit_bench" ] || { echo "cluster.sh: $lockkit_bench not built" >&2; exit 1; }

root=$(mktemp -d)
dirs=()
cleanup() {
  for d in "${dirs[@]}"; do bash scripts/redis-server.sh stop "$d" || true; done
  rm -rf "$root"
}
trap cleanup EXIT
start() {  # start NAME [ARGS...] -> sets port (not in a subshell: dirs must reach cleanup)
  local d=$root/$1 info
  shift
  dirs+=("$d")
  info=$(bash scripts/redis-server.sh start "$d" --owner-pid $$ -- "$@")
  port=$(sed -n 's/^SERVER_PORT=//p' <<<"$info")
}

start single
single=$port
ports=()
for i in 1 2 3 4 5 6; do
  start "node$i" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000 --repl-diskless-sync-delay 0
  ports+=("$port")
done
nodes=()
for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
for i in $(seq 1 300); do  # cluster_state:ok and every replica in sync, polled
  ok=1
  for p in "${ports[@]}"; do
    redis-cli -p "$p" cluster info | grep -q cluster_state:ok || ok=0
    info=$(redis-cli -p "$p" info replication)
    if grep -q role:master <<<"$info"; then
      grep -q connected_slaves:1 <<<"$info" && ! grep -q "state=wait\|state=send" <<<"$info" || ok=0
    fi
  done
  [ $ok = 1 ] && break
  sleep 0.1
done
[ $ok = 1 ] || { echo "cluster.sh: the cluster did not become ok" >&2; exit 1; }
seeds=$(IFS=,; echo "${nodes[*]}")

field() { sed -n "s|.*$1=\([0-9.]*\).*|\1|p"; }
run() {  # run URL -> "pairs p50 p99"
  local out
  out=$("$lockkit_bench" --backend "$1" --clients "$clients" --seconds "$secs")
  echo "$(field pairs/s <<<"$out") $(field p50 <<<"$out") $(field p99 <<<"$out")"
}
declare -A best
cases=(single cluster cluster_wait)
declare -A urls=(
  [single]="redis://127.0.0.1:$single"
  [cluster]="redis://$seeds?cluster=1"
  [cluster_wait]="redis://$seeds?cluster=1&wait_replicas=1&wait_timeout=50ms"
)
for r in $(seq 1 "$repeats"); do
  for c in "${cases[@]}"; do
    read -r pairs p50 p99 <<<"$(run "${urls[$c]}")"
    echo "# round $r $c: $pairs pairs/s p50 $p50 p99 $p99" >&2
    prev=${best[$c]:-0 0 0}
    if awk "BEGIN{exit !($pairs > ${prev%% *})}"; then best[$c]="$pairs $p50 $p99"; fi
  done
done
echo "| case ($clients threads, one LockApi) | pairs/s (p50/p99 µs) |"
echo "|---|---|"
for c in "${cases[@]}"; do
  read -r pairs p50 p99 <<<"${best[$c]}"
  echo "| $c | $pairs ($p50/$p99) |"
done
