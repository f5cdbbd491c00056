#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Measures etcd:// against its raw ceiling in one run, on a throwaway 1-member etcd:
#   lockkit-bench (one shared LockApi)  vs  etcd-raw-bench (bare gRPC clients sending the same
#   LeaseGrant, Txn, Txn, LeaseRevoke) at 1 and 64 concurrent clients, interleaved;
#   refused try_acquire (lockkit-bench --mode refused);
#   `lockkit run` vs `etcdctl lock NAME -- true` (one process start, lock, command, unlock).
# Prints a Markdown table.
#
#   bench/etcd/compare.sh [BUILD_DIR] [SECONDS] [REPEATS] [RUNS]
# BUILD_DIR must be configured with -DLOCKKIT_BUILD_BENCH=ON and built. Each throughput figure
# is the best of REPEATS runs (default 3) of SECONDS each (default 3); each CLI figure is the
# median of RUNS runs (default 20).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/test/release}
secs=${2:-3}
repeats=${3:-3}
runs=${4:-20}
lockkit_bench=$build/bench/lockkit-bench
raw_bench=$build/bench/etcd/etcd-raw-bench
cli=$build/cli/lockkit
for b in "$lockkit_bench" "$raw_bench" "$cli"; do
  [ -x "$b" ] || { echo "compare.sh: $b not built (configure with -DLOCKKIT_BUILD_BENCH=ON)" >&2; exit 1; }
done
command -v etcdctl >/dev/null || { echo "compare.sh: etcdctl missing (scripts/setup.sh)" >&2; exit 1; }

base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
dir=$(mktemp -d "$base/lockkit-etcd-bench-XXXXXX")
trap 'bash scripts/etcd-server.sh stop "$dir"; rm -rf "$dir"' EXIT
endpoint=$(bash scripts/etcd-server.sh start "$dir" --owner-pid $$)
url="etcd://$endpoint"

field() { sed -n "s|.*$1=\([0-9.]*\).*|\1|p"; }
best() { sort -n | tail -1; }

lockkit_pairs() { "$lockkit_bench" --backend "$url" --clients "$1" --seconds "$secs" | field pairs/s; }
raw_pairs() { "$raw_bench" --endpoint "$endpoint" --clients "$1" --seconds "$secs" | field pairs/s; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| clients | lockkit pairs/s | raw gRPC pairs/s | lockkit / raw |"
echo "|---|---|---|---|"
for c in 1 64; do
  l=() r=()
  for _ in $(seq "$repeats"); do
    l+=("$(lockkit_pairs "$c")")
    r+=("$(raw_pairs "$c")")
  done
  lb=$(printf '%s\n' "${l[@]}" | best)
  rb=$(printf '%s\n' "${r[@]}" | best)
  echo "| $c | $lb | $rb | $(awk -v a="$lb" -v b="$rb" 'BEGIN { printf "%.2f", a / b }') |"
done

refused=$("$lockkit_bench" --backend "$url" --clients 1 --seconds "$secs" --mode refused)
echo
echo "refused try_acquire, 1 client: $(field refused/s <<<"$refused")/s, p50 $(field p50 <<<"$refused") us, p99 $(field p99 <<<"$refused") us (LeaseGrant, Txn, LeaseRevoke: 3 round trips)"

# Median wall time in ms of RUNS runs of "$@".
median_ms() {
  local t=()
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "compare.sh: failed: $*" >&2; exit 1; }
    e=$(date +%s%N)
    t+=($(( (e - s) / 1000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1000 }'
}
echo
echo "| command | median ms per run ($runs runs) |"
echo "|---|---|"
echo "| \`lockkit run --backend etcd://... --key K --ttl 10s -- true\` | $(median_ms "$cli" run --backend "$url" --key bench-run --ttl 10s -- true) |"
echo "| \`etcdctl lock K -- true\` | $(median_ms env ETCDCTL_API=3 etcdctl --endpoints="$endpoint" lock bench-etcdctl -- true) |"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
