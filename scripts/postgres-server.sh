#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts and stops a throwaway PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl in a
# temporary directory, listening only on 127.0.0.1 on a free port below the ephemeral range,
# unix sockets inside that directory, durable defaults (fsync on). Runs the server as the
# `postgres` OS user when invoked as root. Stops it by the pid in its postmaster.pid, never by
# name. Same arguments and output as scripts/redis-server.sh.
#
#   postgres-server.sh start [DIR] [--port PORT] [--owner-pid PID] [-- EXTRA postgres ARGS...]
#       Uses DIR (default: a fresh mktemp dir; `--dir DIR` works too) and a cluster in DIR/data
#       unless one is there, starts it (on PORT, else the port DIR used before, else a free one)
#       and prints shell-sourceable lines:
#         SERVER_DIR=... SERVER_PORT=... SERVER_PID=...
#         SERVER_URL=postgres://lockkit:...@127.0.0.1:PORT/lockkit
#       The `lockkit` role has a password (scram-sha-256 on TCP), owns database `lockkit` and may
#       create schemas in it; `lockkit_min` (same password) has no rights beyond what is
#       granted. With --owner-pid, a watchdog stops the server once PID is gone, so a crashed
#       test does not leave a server behind. EXTRA ARGS go to postgres (e.g. -c fsync=off).
#   postgres-server.sh stop DIR       fast shutdown, then SIGKILL after 15 s; waits for the exit
#   postgres-server.sh kill DIR       immediate shutdown (a crash: no checkpoint); waits
#   postgres-server.sh destroy DIR    stops it and deletes DIR
set -euo pipefail

readonly kPassword=lockkit-test-password
readonly kRole=lockkit
readonly kName=postgres-server.sh kServer=pg
# shellcheck source=server-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  done
  die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
}

# Runs a command as the server's OS user: `postgres` when we are root, else ourselves.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

server_pid() {
  local pidfile="$1/data/postmaster.pid"
  [ -f "$pidfile" ] && head -n 1 "$pidfile"
}

cmd_start() {
  parse_start_args "$@"
  local bin
  bin=$(pg_bin)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (apt-get install postgresql)"
    chown postgres "$dir"
    chmod 0755 "$dir"
    # The server user must reach DIR through its parents (e.g. a 0700 build directory).
    local parent
    parent=$(dirname "$dir")
    while [ "$parent" != "/" ]; do
      if ! runuser -u postgres -- test -x "$parent"; then chmod o+x "$parent"; fi
      parent=$(dirname "$parent")
    done
  fi
  local fresh=0
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    fresh=1
    # -N: skip initdb's own fsyncs (a throwaway cluster); the server itself keeps fsync on.
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C -N >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    as_pg mkdir -p "$dir/sock"
    cat >>"$dir/data/postgresql.conf" <<EOF
# lockkit test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
password_encryption = 'scram-sha-256'
max_connections = 200
logging_collector = off
EOF
  fi
  # pg_ctl -o takes one string that the shell splits again: quote each extra argument.
  local options="" arg tries=0
  for arg in "${extra[@]}"; do options+=" $(printf '%q' "$arg")"; done
  while true; do
    if [ -z "$port" ]; then
      port=$(pick_port)
    fi
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port$options" -w -t 60 start \
        >>"$dir/pg_ctl.log" 2>&1; then
      break
    fi
    tries=$((tries + 1))
    if [ -n "$explicit_port" ] || [ $tries -ge 5 ]; then
      tail -n 20 "$dir/server.log" >&2 || true
      die "pg_ctl start failed (port $port)"
    fi
    port=""  # lost a race for the port: try another
  done
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres)
  if [ $fresh -eq 1 ]; then
    as_pg "${psql[@]}" -d postgres >/dev/null <<EOF
CREATE ROLE $kRole LOGIN PASSWORD '$kPassword';
CREATE DATABASE $kRole OWNER $kRole;
CREATE ROLE ${kRole}_min LOGIN PASSWORD '$kPassword';
EOF
  fi
  local pid
  pid=$(server_pid "$dir")
  start_watchdog "$owner" "$pid" "$dir/data/postmaster.pid" INT  # fast shutdown
  print_server "$dir" "$port" "$pid" "postgres://$kRole:$kPassword@127.0.0.1:$port/$kRole"
}

# Sends `sig` to the server of DIR, escalating to SIGQUIT (immediate shutdown) after 10 s and
# SIGKILL after 5 s more; returns once it is gone.
signal_server() {
  local dir=$1 sig=$2 pid child
  pid=$(server_pid "$dir" || true)
  [ -z "$pid" ] && return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # A paused (SIGSTOPped) server must run again to shut down.
  kill -CONT "$pid" 2>/dev/null || true
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -CONT "$child" 2>/dev/null || true; done
  kill "-$sig" "$pid" 2>/dev/null || true
  wait_gone "$pid" 100 && return 0
  kill -QUIT "$pid" 2>/dev/null || true
  wait_gone "$pid" 50 && return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 50 || die "postgres pid $pid did not exit"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) signal_server "${2:?stop: DIR missing}" INT ;;  # fast shutdown
  kill) signal_server "${2:?kill: DIR missing}" QUIT ;;  # immediate shutdown: a crash
  destroy) signal_server "${2:?destroy: DIR missing}" INT; remove_dir "$2" ;;
  *) die "usage: $0 start [DIR] [--port PORT] [--owner-pid PID] [-- ARGS...] | stop DIR | kill DIR | destroy DIR" ;;
esac
