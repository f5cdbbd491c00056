#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts and stops a throwaway redis-server: loopback only, a free port, its own directory,
# persistence off; stopped by the pid it was started with (never by name).
#
#   scripts/redis-server.sh start DIR [--port P] [--with-tls-port] [-- EXTRA redis-server ARGS...]
#       prints the port on stdout once the server answers PING (fails loudly otherwise);
#       --with-tls-port also picks a free port for --tls-port (the EXTRA ARGS then carry the
#       --tls-cert-file etc.) and prints "PORT TLS_PORT"
#   scripts/redis-server.sh stop DIR      SIGTERM, then SIGKILL after 5 s; waits for the exit
#   scripts/redis-server.sh kill DIR      SIGKILL at once (a crash); waits for the exit
set -euo pipefail

die() { echo "redis-server.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 start|stop|kill DIR [--port P] [-- ARGS...]"
cmd=$1
dir=$2
shift 2
pidfile=$dir/redis.pid

# True once `pid` has exited. An exited server is reparented to init and may linger as a zombie
# until init reaps it: that counts as gone.
is_gone() {
  local state
  kill -0 "$1" 2>/dev/null || return 0
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$state" = Z ] || [ -z "$state" ]
}

wait_gone() {
  local pid=$1 i
  for i in $(seq 1 200); do
    is_gone "$pid" && return 0
    sleep 0.02
  done
  return 1
}

signal_server() {
  local sig=$1
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  kill "-$sig" "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" || die "redis-server pid $pid did not exit"
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case $cmd in
  start)
    port=""
    with_tls=""
    while [ $# -gt 0 ]; do
      case $1 in
        --port) port=$2; shift 2 ;;
        --with-tls-port) with_tls=1; shift ;;
        --) shift; break ;;
        *) die "unknown argument $1" ;;
      esac
    done
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/setup.sh)"
    mkdir -p "$dir"
    [ -f "$pidfile" ] && die "a server is already running for $dir (pid $(cat "$pidfile"))"
    fixed=$port
    # Below the kernel's ephemeral range: while the server is down for a restart, no client
    # socket can take its port (loopback connects to a free port may even connect to themselves).
    ephemeral=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    low=10000
    high=$(( ephemeral > low + 1000 ? ephemeral : 32768 ))
    for attempt in $(seq 1 20); do
      if [ -z "$fixed" ]; then
        port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
        port_in_use "$port" && continue
      fi
      tls=()
      if [ -n "$with_tls" ]; then
        tls_port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
        { [ "$tls_port" = "$port" ] || port_in_use "$tls_port"; } && continue
        tls=(--tls-port "$tls_port")
      fi
      redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --save "" \
        --appendonly no --dir "$dir" --logfile "$dir/redis.log" --daemonize no "${tls[@]}" "$@" \
        </dev/null >/dev/null 2>&1 &
      pid=$!
      echo "$pid" >"$pidfile"
      for i in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] ||
           redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q NOAUTH; then
          echo "$port${with_tls:+ $tls_port}"
          exit 0
        fi
        sleep 0.05
      done
      signal_server KILL
      [ -n "$fixed" ] && [ "$attempt" -ge 10 ] && break
      [ -n "$fixed" ] && sleep 0.2  # the old server's port may still be in TIME_WAIT
    done
    tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
    die "could not start redis-server in $dir${fixed:+ on port $fixed}"
    ;;
  stop) signal_server TERM ;;
  kill) signal_server KILL ;;
  *) die "unknown command $cmd (start|stop|kill)" ;;
esac
