# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034  # the variables are for the sourcing script
# Sourced (from the repository root) by the redlock benchmark scripts: starts three throwaway
# redis-servers with scripts/redis-server.sh, watched by this shell's pid, and destroys them when
# the shell exits. Sets, one entry per server, `dirs`, `ports` and `pids`; and `url`
# (redlock://127.0.0.1:PORT,...) and `portlist` (PORT,PORT,PORT).
#   source bench/redis/three_servers.sh
dirs=() ports=() pids=()
cleanup() { for d in "${dirs[@]}"; do bash scripts/redis-server.sh destroy "$d" || true; done; }
trap cleanup EXIT
for _ in 1 2 3; do
  info=$(bash scripts/redis-server.sh start --owner-pid $$)
  eval "$info"
  dirs+=("$SERVER_DIR")
  ports+=("$SERVER_PORT")
  pids+=("$SERVER_PID")
done
url="redlock://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
portlist="${ports[0]},${ports[1]},${ports[2]}"
