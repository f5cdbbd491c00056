#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts and stops a throwaway redis-server for tests and benchmarks: loopback only, a free port
# below the ephemeral range, its own directory, persistence off; stopped by the pid it was
# started with (never by name). Same arguments and output as scripts/postgres-server.sh.
#
#   redis-server.sh start [DIR] [--port PORT] [--owner-pid PID] [--with-tls-port]
#                         [-- EXTRA redis-server ARGS...]
#       Uses DIR (default: a fresh mktemp dir), starts the server (on PORT, else the port DIR
#       used before, else a free one) and, once it answers PING, prints shell-sourceable lines:
#         SERVER_DIR=... SERVER_PORT=... SERVER_PID=... SERVER_URL=redis://127.0.0.1:PORT
#       With --owner-pid, a watchdog stops the server once PID is gone, so a crashed test does
#       not leave a server behind. EXTRA ARGS go to redis-server (e.g. --requirepass pw).
#       --with-tls-port also picks a free port for --tls-port (EXTRA ARGS then carry
#       --tls-cert-file etc.) and prints SERVER_TLS_PORT=... as well.
#   redis-server.sh stop DIR       SIGTERM, then SIGKILL after 10 s; waits for the exit
#   redis-server.sh kill DIR       SIGKILL at once (a crash); waits for the exit
#   redis-server.sh destroy DIR    stops it and deletes DIR
set -euo pipefail

readonly kName=redis-server.sh kServer=redis
# shellcheck source=server-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

signal_server() {
  local dir=$1 sig=$2 pidfile=$1/redis.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  kill -CONT "$pid" 2>/dev/null || true  # a paused server must run to exit
  kill "-$sig" "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" || die "redis-server pid $pid did not exit"
  fi
}

cmd_start() {
  local args=() with_tls="" tls_port="" tls=()
  while [ $# -gt 0 ]; do
    case $1 in
      --with-tls-port) with_tls=1; shift ;;
      --) args+=("$@"); break ;;
      *) args+=("$1"); shift ;;
    esac
  done
  parse_start_args "${args[@]}"
  command -v redis-server >/dev/null || die "redis-server not found (run scripts/setup.sh)"
  local pidfile=$dir/redis.pid pid attempt
  [ -f "$pidfile" ] && die "a server is already running for $dir (pid $(cat "$pidfile"))"
  for attempt in $(seq 1 20); do
    [ -z "$explicit_port" ] && [ "$attempt" -gt 1 ] && port=""  # lost a race: another port
    [ -z "$port" ] && port=$(pick_port)
    if [ -n "$with_tls" ]; then
      tls_port=$(pick_port)
      [ "$tls_port" = "$port" ] && continue
      tls=(--tls-port "$tls_port")
    fi
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --save "" \
      --appendonly no --dir "$dir" --logfile "$dir/redis.log" --daemonize no "${tls[@]}" "${extra[@]}" \
      </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 1 200); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] ||
         redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q NOAUTH; then
        start_watchdog "$owner" "$pid" "$pidfile" TERM
        print_server "$dir" "$port" "$pid" "redis://127.0.0.1:$port"
        [ -z "$with_tls" ] || echo "SERVER_TLS_PORT=$tls_port"
        return 0
      fi
      sleep 0.05
    done
    signal_server "$dir" KILL
    [ -n "$explicit_port" ] && [ "$attempt" -ge 10 ] && break
    [ -n "$explicit_port" ] && sleep 0.2  # the old server's port may still be in TIME_WAIT
  done
  tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
  die "could not start redis-server in $dir${explicit_port:+ on port $explicit_port}"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) signal_server "${2:?stop: DIR missing}" TERM ;;
  kill) signal_server "${2:?kill: DIR missing}" KILL ;;
  destroy) signal_server "${2:?destroy: DIR missing}" TERM; remove_dir "$2" ;;
  *) die "usage: $0 start [DIR] [--port PORT] [--owner-pid PID] [-- ARGS...] | stop DIR | kill DIR | destroy DIR" ;;
esac
