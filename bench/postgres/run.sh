#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# postgres:// side by side with pgbench running the same statements, in one run on one server:
# acquire+release cycles and refused acquires of a held key, at 1 and 16 clients.
#
#   bash bench/postgres/run.sh [--seconds S] [--rounds R] [--clients "1 16"] [--bench PATH]
#
# Starts its own throwaway cluster (scripts/postgres-server.sh: durable defaults, fsync on),
# builds lockkit-bench into build/bench if no --bench is given, and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=3
rounds=5
clients_list="1 16"
bench=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --clients) clients_list=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -n 1)
[ -x "$pgbin/pgbench" ] || { echo "run.sh: pgbench not found (apt-get install postgresql)" >&2; exit 69; }

if [ -z "$bench" ]; then
  bench=build/bench/bench/lockkit-bench
  if [ ! -x "$bench" ]; then
    echo "run.sh: building lockkit-bench in build/bench" >&2
    cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOCKKIT_BUILD_BENCH=ON \
      -DLOCKKIT_BUILD_TESTS=OFF -DLOCKKIT_BUILD_EXAMPLES=OFF -DLOCKKIT_BUILD_CLI=OFF \
      -DLOCKKIT_INSTALL=OFF >/dev/null
    cmake --build build/bench --target lockkit_bench -j "$(nproc)" >/dev/null
  fi
fi

info=$(bash scripts/postgres-server.sh start --owner-pid $$)
eval "$info"
trap 'bash scripts/postgres-server.sh destroy "$SERVER_DIR"' EXIT
url="$SERVER_URL"
max_clients=$(echo "$clients_list" | tr ' ' '\n' | sort -n | tail -n 1)
lk_url="$url?connections=$max_clients"

psql=("$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url")
pgbench() {
  local c=$1; shift
  local j=$(( c < $(nproc) ? c : $(nproc) ))
  "$pgbin/pgbench" -n -M prepared -c "$c" -j "$j" -T "$seconds" "$@" "$url" 2>&1 |
    sed -n 's/^tps = \([0-9]*\).*/\1/p' | head -n 1
}
json_field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

# First use creates the schema; then every run starts from the same warm state.
"$bench" --backend "$lk_url" --clients 1 --seconds 1 >/dev/null
# pgbench's refused case needs a held key (taken with lockkit's own acquire statement).
held_sql=$(grep -v '^\\' bench/postgres/refused_acquire.sql | grep -v '^--' |
  sed "s/:key::bytea/'pgbench-held'::bytea/g; s/:token::text/'pgbench-holder'::text/; s/:ttl::bigint/3600000::bigint/")
"${psql[@]}" -c "$held_sql" >/dev/null

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Runs lockkit-bench and pgbench alternately, `rounds` times each, and keeps the medians: the
# disk's sync latency drifts on a shared machine, and alternating exposes both to the same drift.
measure() {  # measure <clients> <lockkit mode> <lockkit rate field> <pgbench args...>
  local c=$1 mode=$2 field=$3; shift 3
  local lk_rates="" p50s="" p99s="" pg_rates="" _ out
  for _ in $(seq 1 "$rounds"); do
    out=$("$bench" --backend "$lk_url" --clients "$c" --seconds "$seconds" --mode "$mode" --json)
    lk_rates+=" $(echo "$out" | json_field "$field")"
    p50s+=" $(echo "$out" | json_field p50_us)"
    p99s+=" $(echo "$out" | json_field p99_us)"
    pg_rates+=" $(pgbench "$c" "$@")"
  done
  echo "$(echo "$lk_rates" | median) $(echo "$p50s" | median) $(echo "$p99s" | median) $(echo "$pg_rates" | median)"
}

rows=()
for c in $clients_list; do
  read -r lk p50 p99 pg <<<"$(measure "$c" granted pairs_per_s -f bench/postgres/acquire_release.sql)"
  ratio=$(awk -v a="$lk" -v b="$pg" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  rows+=("| $c | acquire+release (granted) | $lk | $p50 | $p99 | $pg | ${ratio}x |")
  granted_pg=$pg
  read -r lk p50 p99 pg <<<"$(measure "$c" refused refused_per_s \
    -f bench/postgres/refused_acquire.sql -D key=pgbench-held)"
  ratio=$(awk -v a="$lk" -v b="$pg" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  vs=$(awk -v a="$lk" -v b="$granted_pg" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
  rows+=("| $c | refused acquire (key held) | $lk | $p50 | $p99 | $pg | ${ratio}x (${vs}x pgbench's granted rate) |")
done

echo
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), fsync on, $(nproc) cores;" \
  "medians of $rounds alternating ${seconds}s runs; p50/p99 per lockkit pair (or refused call)"
echo
echo "| clients | operation | lockkit ops/s | p50 us | p99 us | pgbench tps (same SQL, -M prepared) | lockkit / pgbench |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
