#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts and stops a throwaway PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl in a
# temporary directory, listening only on 127.0.0.1 on a free port, unix sockets inside that
# directory, durable defaults (fsync on). Runs the server as the `postgres` OS user when invoked
# as root. Stops it by the pid in its postmaster.pid, never by name.
#
#   postgres-server.sh start [--dir DIR] [--port PORT] [--owner-pid PID]
#       Creates DIR (default: a fresh mktemp dir) and a cluster in DIR/data unless one is there,
#       starts it (on PORT, else the port DIR used before, else a free one) and prints
#       shell-sourceable lines:
#         PG_DIR=... PG_PORT=... PG_PID=... PG_URL=postgres://lockkit:...@127.0.0.1:PORT/lockkit
#       The `lockkit` role has a password (scram-sha-256 on TCP), owns database `lockkit` and may
#       create schemas in it; `lockkit_min` (same password) has no rights beyond what is granted. With --owner-pid, a watchdog stops the server once PID is gone, so a
#       crashed test does not leave a server behind.
#   postgres-server.sh stop DIR       stops the server of DIR (fast shutdown, then SIGKILL)
#   postgres-server.sh destroy DIR    stops it and deletes DIR
set -euo pipefail

readonly kPassword=lockkit-test-password
readonly kRole=lockkit

die() { echo "postgres-server: $*" >&2; exit 1; }

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

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    if ! port_in_use "$p"; then echo "$p"; return; fi
  done
  die "no free loopback port found"
}

server_pid() {
  local pidfile="$1/data/postmaster.pid"
  [ -f "$pidfile" ] && head -n 1 "$pidfile"
}

cmd_start() {
  local dir="" port="" owner=""
  while [ $# -gt 0 ]; do
    case $1 in
      --dir) dir=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  local bin
  bin=$(pg_bin)
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/lockkit-pg.XXXXXX")
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
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
  [ -z "$port" ] && [ -f "$dir/port" ] && port=$(cat "$dir/port")
  local tries=0 explicit_port=$port
  while true; do
    [ -z "$port" ] && port=$(pick_port)
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start \
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
  echo "$port" >"$dir/port"
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
  if [ -n "$owner" ]; then
    # Detached watchdog: stops this server by pid once the owner process is gone.
    setsid bash -c '
      owner=$1 pid=$2 dir=$3 bin=$4
      while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
      if kill -0 "$pid" 2>/dev/null && [ "$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)" = "$pid" ]; then
        kill -CONT "$pid" 2>/dev/null; kill -INT "$pid" 2>/dev/null
      fi' _ "$owner" "$pid" "$dir" "$bin" </dev/null >/dev/null 2>&1 &
  fi
  echo "PG_DIR=$dir"
  echo "PG_PORT=$port"
  echo "PG_PID=$pid"
  echo "PG_URL=postgres://$kRole:$kPassword@127.0.0.1:$port/$kRole"
}

cmd_stop() {
  local dir=${1:?stop: DIR missing}
  local pid
  pid=$(server_pid "$dir" || true)
  [ -z "$pid" ] && return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # A paused (SIGSTOPped) server must run again to shut down.
  kill -CONT "$pid" 2>/dev/null || true
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -CONT "$child" 2>/dev/null || true; done
  kill -INT "$pid" 2>/dev/null || true  # fast shutdown
  local _
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -QUIT "$pid" 2>/dev/null || true  # immediate shutdown
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_destroy() {
  local dir=${1:?destroy: DIR missing}
  cmd_stop "$dir"
  case $dir in
    /|"") die "refusing to delete '$dir'" ;;
  esac
  rm -rf "$dir"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  destroy) shift; cmd_destroy "$@" ;;
  *) die "usage: $0 start [--dir DIR] [--port PORT] [--owner-pid PID] | stop DIR | destroy DIR" ;;
esac
