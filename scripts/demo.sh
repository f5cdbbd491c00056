#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs only what is missing for it (compiler, CMake, SQLite, CLI11: no servers, no test
# frameworks), builds the `lockkit` tool with the sqlite:// backend alone and runs a demo on the
# embedded default (an SQLite file): several processes contend for one key; their critical
# sections never overlap and their fences increase. Usage: bash scripts/demo.sh [WORKERS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-4}
rounds=${2:-3}

bash scripts/setup.sh demo
echo "== building lockkit (build/demo)" >&2
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOCKKIT_BUILD_TESTS=OFF \
  -DLOCKKIT_BUILD_EXAMPLES=OFF -DLOCKKIT_INSTALL=OFF -DLOCKKIT_WITH_REDIS=OFF \
  -DLOCKKIT_WITH_POSTGRES=OFF -DLOCKKIT_WITH_ETCD=OFF -DLOCKKIT_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo --target lockkit_cli -j "$(nproc)" >/dev/null
lockkit=$PWD/build/demo/cli/lockkit

# A private state directory: the embedded default becomes $XDG_STATE_HOME/lockkit/locks.db.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_STATE_HOME=$tmp/state
unset LOCKKIT_BACKEND
key=demo/printer

echo
echo "== $workers processes, $rounds rounds each, contend for \"$key\" on the embedded default"
echo "   (sqlite://$XDG_STATE_HOME/lockkit/locks.db); each critical section takes 0.2 s"
echo "\$ lockkit list    # creates the database; nothing is held yet"
"$lockkit" list
echo
# The critical section: a directory that only one process may have created at a time detects
# any overlap; the fences are appended in the order the critical sections ran.
section='
  if ! mkdir "$DEMO_DIR/inside" 2>/dev/null; then
    echo "worker $DEMO_WORKER  fence $LOCKKIT_FENCE  OVERLAP: another process is inside"
    exit 1
  fi
  echo "worker $DEMO_WORKER  fence $LOCKKIT_FENCE  enter"
  echo "$LOCKKIT_FENCE" >> "$DEMO_DIR/fences"
  sleep 0.2
  echo "worker $DEMO_WORKER  fence $LOCKKIT_FENCE  leave"
  rmdir "$DEMO_DIR/inside"
'
pids=()
for w in $(seq 1 "$workers"); do
  (
    for _ in $(seq 1 "$rounds"); do
      DEMO_DIR=$tmp DEMO_WORKER=$w "$lockkit" run --key "$key" --ttl 5s --wait 60s -- \
        bash -c "$section" || echo "worker $w: lockkit run failed with exit status $?"
      sleep 0.1  # work outside the lock
    done
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

echo
echo "== scripting the same lock: acquire, status, a busy run, release"
lock=$("$lockkit" acquire --key "$key" --ttl 30s)
echo "\$ lockkit acquire --key $key --ttl 30s"
echo "$lock" | sed 's/"token":"[0-9a-f]*"/"token":"(hidden)"/'
echo "\$ lockkit status --key $key"
"$lockkit" status --key "$key"
echo "\$ lockkit run --key $key --ttl 5s -- true"
busy=0
"$lockkit" run --key "$key" --ttl 5s -- true || busy=$?
echo "exit status $busy (75: busy)"
token=$(echo "$lock" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
"$lockkit" release --key "$key" --token "$token"
echo "\$ lockkit release --key $key --token ...; lockkit status --key $key"
"$lockkit" status --key "$key"

echo
mapfile -t fences < "$tmp/fences"
expected=$((workers * rounds))
ok=1
[ "${#fences[@]}" -eq "$expected" ] || ok=0
for ((i = 1; i < ${#fences[@]}; i++)); do
  [ "${fences[i]}" -gt "${fences[i - 1]}" ] || ok=0
done
[ -d "$tmp/inside" ] && ok=0
[ "$busy" -eq 75 ] || ok=0
if [ "$ok" -eq 1 ]; then
  echo "demo: OK: ${#fences[@]} critical sections by $workers concurrent processes never" \
    "overlapped; fences strictly increasing (${fences[0]} .. ${fences[-1]})"
else
  echo "demo: FAILED: ${#fences[@]} of $expected critical sections completed; fences in order:" \
    "${fences[*]:-none}" >&2
  exit 1
fi
