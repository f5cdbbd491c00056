#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts and stops a throwaway etcd cluster (1 or more members) for tests and benchmarks:
# loopback only, free ports, its own directory; members are stopped by the pid they were started
# with (never by name).
#
#   scripts/etcd-server.sh start DIR [--members N] [--port P] [--owner-pid PID]
#                                    [--tls CERT KEY CA [--client-cert-auth CCERT CKEY]]
#                                    [-- EXTRA ARGS]
#       Starts N members (default 1) in DIR/m0, DIR/m1, ...; member i listens for clients on
#       127.0.0.1:P+2i and for peers on P+2i+1 (P: free and below the ephemeral range unless
#       given; DIR/ports remembers it, so a later start reuses it). Prints the client endpoints,
#       comma-separated, once every member answers. With --owner-pid, a watchdog stops the
#       members once PID is gone. EXTRA ARGS go to every etcd (e.g. --auth-token=simple).
#       --tls: the client ports speak TLS with certificate CERT and key KEY (PEM files; peers
#       stay plaintext on loopback); with --client-cert-auth they also require a client
#       certificate signed by CA. The script's own etcdctl checks trust CA and, with
#       --client-cert-auth, present the client certificate CCERT with its key CKEY.
#   scripts/etcd-server.sh stop DIR [I]     SIGTERM (SIGKILL after 5 s) to every member, or member I
#   scripts/etcd-server.sh kill DIR [I]     SIGKILL at once (a crash)
#   scripts/etcd-server.sh pause DIR I      SIGSTOP member I; `resume DIR I` sends SIGCONT
#   scripts/etcd-server.sh restart DIR I    starts member I again on its ports with its data
# Election and heartbeat are shortened (50 ms / 500 ms): leader changes take well under a second
# and etcd's smallest lease TTL (1.5 election timeouts, rounded up to a second) is 1 s.
set -euo pipefail

readonly kName=etcd-server.sh kServer=etcd
# die, is_gone, wait_gone, port_in_use: shared with the redis and postgres scripts.
# shellcheck source=server-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

[ $# -ge 2 ] || die "usage: $0 start|stop|kill|pause|resume|restart DIR [...]"
cmd=$1
dir=$2
shift 2

signal_member() {
  local sig=$1 member=$2 pidfile pid
  pidfile=$dir/m$member/pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  kill -CONT "$pid" 2>/dev/null || true  # a paused member must run to exit
  kill "-$sig" "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" || die "etcd pid $pid did not exit"
  fi
}

members() { cat "$dir/members" 2>/dev/null || echo 0; }

each_member() {
  local sig=$1 which=${2:-} i
  if [ -n "$which" ]; then
    signal_member "$sig" "$which"
    return
  fi
  for i in $(seq 0 $(( $(members) - 1 ))); do signal_member "$sig" "$i"; done
}

# The client URL scheme and etcdctl's TLS flags, from DIR/tls ("CERT\nKEY\nCA\nCCERT\nCKEY";
# the last two only with --client-cert-auth).
tls_file() { sed -n "$1p" "$dir/tls" 2>/dev/null; }
client_scheme() { [ -s "$dir/tls" ] && echo https || echo http; }
etcdctl_tls() {
  [ -s "$dir/tls" ] || return 0
  echo "--cacert=$(tls_file 3)"
  if [ -n "$(tls_file 4)" ]; then
    echo "--cert=$(tls_file 4)"
    echo "--key=$(tls_file 5)"
  fi
  return 0
}
etcd_tls() {
  [ -s "$dir/tls" ] || return 0
  echo "--cert-file=$(tls_file 1)"
  echo "--key-file=$(tls_file 2)"
  if [ -n "$(tls_file 4)" ]; then
    echo "--client-cert-auth"
    echo "--trusted-ca-file=$(tls_file 3)"
  fi
  return 0
}

client_port() { echo $(( $(cat "$dir/ports") + 2 * $1 )); }
peer_port() { echo $(( $(cat "$dir/ports") + 2 * $1 + 1 )); }

initial_cluster() {
  local i out=""
  for i in $(seq 0 $(( $(members) - 1 ))); do
    out+="${out:+,}m$i=http://127.0.0.1:$(peer_port "$i")"
  done
  echo "$out"
}

endpoints() {
  local i out=""
  for i in $(seq 0 $(( $(members) - 1 ))); do
    out+="${out:+,}127.0.0.1:$(client_port "$i")"
  done
  echo "$out"
}

# Launches member `i` in the background (a new data dir joins the initial cluster; an existing
# one ignores the initial-cluster flags and comes back with its data).
launch() {
  local i=$1 mdir=$dir/m$1 pid
  mkdir -p "$mdir"
  [ -f "$mdir/pid" ] && die "member $i of $dir is already running (pid $(cat "$mdir/pid"))"
  local extra=() tls=()
  [ -f "$dir/extra" ] && mapfile -t extra <"$dir/extra"
  mapfile -t tls < <(etcd_tls)
  etcd --name "m$i" --data-dir "$mdir/data" \
    --listen-client-urls "$(client_scheme)://127.0.0.1:$(client_port "$i")" \
    --advertise-client-urls "$(client_scheme)://127.0.0.1:$(client_port "$i")" \
    --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
    --initial-cluster "$(initial_cluster)" --initial-cluster-state new \
    --initial-cluster-token "$(cat "$dir/token")" \
    --heartbeat-interval 50 --election-timeout 500 \
    --logger zap --log-outputs "$mdir/etcd.log" "${tls[@]}" "${extra[@]}" \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  echo "$pid" >"$mdir/pid"
}

# Waits until member `i` answers (up to 10 s); false if it exited or never answered.
wait_ready() {
  local i=$1 pid n tls=()
  pid=$(cat "$dir/m$i/pid")
  mapfile -t tls < <(etcdctl_tls)
  for n in $(seq 1 200); do
    is_gone "$pid" && return 1
    # /health needs a leader; a plain TCP answer is enough for a member that is coming back.
    if ETCDCTL_API=3 etcdctl "${tls[@]}" --endpoints="127.0.0.1:$(client_port "$i")" \
         --dial-timeout=1s --command-timeout=1s endpoint health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

watchdog() {
  local owner=$1
  setsid bash -c '
    owner=$1 dir=$2
    while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ] && ls "$dir"/m*/pid >/dev/null 2>&1; do
      sleep 1
    done
    for f in "$dir"/m*/pid; do
      [ -f "$f" ] || continue
      pid=$(cat "$f"); rm -f "$f"
      kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
    done' _ "$owner" "$dir" </dev/null >/dev/null 2>&1 &
}

case $cmd in
  start)
    port="" n=1 owner="" tls=""
    while [ $# -gt 0 ]; do
      case $1 in
        --tls) tls="$2"$'\n'"$3"$'\n'"$4"; shift 4 ;;
        --client-cert-auth) tls+=$'\n'"$2"$'\n'"$3"; shift 3 ;;
        --port) port=$2; shift 2 ;;
        --members) n=$2; shift 2 ;;
        --owner-pid) owner=$2; shift 2 ;;
        --) shift; break ;;
        *) die "unknown argument $1" ;;
      esac
    done
    command -v etcd >/dev/null || die "etcd not found (run scripts/setup.sh: etcd-server)"
    command -v etcdctl >/dev/null || die "etcdctl not found (run scripts/setup.sh: etcd-client)"
    mkdir -p "$dir"
    [ -z "$port" ] && [ -f "$dir/ports" ] && port=$(cat "$dir/ports")
    echo "$n" >"$dir/members"
    if [ -n "$tls" ]; then echo "$tls" >"$dir/tls"; else rm -f "$dir/tls"; fi
    printf '%s\n' "$@" | sed '/^$/d' >"$dir/extra"
    fixed=$port
    # Below the kernel's ephemeral range: while a member is down, no client socket can take its
    # port (loopback connects to a free port may even connect to themselves).
    ephemeral=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    low=10000
    high=$(( ephemeral > low + 1000 ? ephemeral - 2 * n : 32768 - 2 * n ))
    for attempt in $(seq 1 10); do
      if [ -z "$fixed" ]; then
        port=$(( low + (RANDOM * 32768 + RANDOM) % (high - low) ))
        busy=0
        for p in $(seq "$port" $(( port + 2 * n - 1 ))); do
          port_in_use "$p" && busy=1
        done
        [ $busy = 1 ] && continue
      fi
      echo "$port" >"$dir/ports"
      echo "lockkit-$$-$RANDOM" >"$dir/token"  # one cluster id for all members of this start
      rm -rf "$dir"/m*/data
      for i in $(seq 0 $(( n - 1 ))); do launch "$i"; done
      ok=1
      for i in $(seq 0 $(( n - 1 ))); do wait_ready "$i" || { ok=0; break; }; done
      if [ $ok = 1 ]; then
        [ -n "$owner" ] && watchdog "$owner"
        endpoints
        exit 0
      fi
      for i in $(seq 0 $(( n - 1 ))); do signal_member KILL "$i"; done
      [ -n "$fixed" ] && [ "$attempt" -ge 3 ] && break
      [ -n "$fixed" ] && sleep 0.2  # the old server's ports may still be in TIME_WAIT
    done
    tail -n 5 "$dir"/m0/etcd.log >&2 2>/dev/null || true
    die "could not start etcd in $dir${fixed:+ on port $fixed}"
    ;;
  restart)
    i=${1:?restart: member index missing}
    launch "$i"
    wait_ready "$i" || { tail -n 5 "$dir/m$i/etcd.log" >&2 || true; die "member $i did not come back"; }
    ;;
  stop) each_member TERM "${1:-}" ;;
  kill) each_member KILL "${1:-}" ;;
  pause) kill -STOP "$(cat "$dir/m${1:?pause: member index missing}/pid")" ;;
  resume) kill -CONT "$(cat "$dir/m${1:?resume: member index missing}/pid")" ;;
  *) die "unknown command $cmd (start|stop|kill|pause|resume|restart)" ;;
esac
