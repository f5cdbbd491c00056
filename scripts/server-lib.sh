# SPDX-License-Identifier: MIT
# What scripts/redis-server.sh and scripts/postgres-server.sh share, so that they agree: the
# arguments of `start`, the port choice, the output, waiting for a pid to go, and the owner
# watchdog. Sourced, not run; the sourcing script sets `kName` (for messages) first.

die() { echo "$kName: $*" >&2; exit 1; }

# True once `pid` has exited. An exited server is reparented to init and may linger as a zombie
# until init reaps it: that counts as gone.
is_gone() {
  local state
  kill -0 "$1" 2>/dev/null || return 0
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$state" = Z ] || [ -z "$state" ]
}

# Waits up to `tenths` tenths of a second (default 100) for `pid` to be gone.
wait_gone() {
  local pid=$1 tenths=${2:-100} i
  for i in $(seq 1 $((tenths * 5))); do
    is_gone "$pid" && return 0
    sleep 0.02
  done
  return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a free loopback port below the kernel's ephemeral range: while a server is down for a
# restart, no client socket can take its port (and a loopback connect to a free port in that
# range may even connect to itself).
pick_port() {
  local ephemeral low=10000 high p
  ephemeral=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  high=$(( ephemeral > low + 1000 ? ephemeral : 32768 ))
  for _ in $(seq 1 200); do
    p=$(( low + (RANDOM * 32768 + RANDOM) % (high - low) ))
    if ! port_in_use "$p"; then echo "$p"; return; fi
  done
  die "no free loopback port found below $high"
}

# Parses `start [DIR] [--dir DIR] [--port PORT] [--owner-pid PID] [-- SERVER ARGS...]` into
# `dir`, `port`, `owner` and the array `extra`. Without DIR, makes a fresh temporary directory;
# without --port, uses the port DIR's server had before (DIR/port), else a free one (`port`
# stays empty: the caller picks, and may retry on a lost race).
parse_start_args() {
  dir="" port="" owner="" extra=()
  while [ $# -gt 0 ]; do
    case $1 in
      --dir) dir=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      -*) die "start: unknown argument $1" ;;
      *) [ -z "$dir" ] || die "start: two directories ($dir, $1)"; dir=$1; shift ;;
    esac
  done
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/lockkit-$kServer.XXXXXX")
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  explicit_port=$port
  [ -z "$port" ] && [ -f "$dir/port" ] && port=$(cat "$dir/port")
  return 0
}

# Starts a detached watchdog: once process `owner` is gone, it sends `signal` to server `pid`,
# but only while `pidfile`'s first line still names that pid (a stopped server's pid may have
# been reused). No-op without an owner.
start_watchdog() {
  local owner=$1 pid=$2 pidfile=$3 signal=$4
  [ -n "$owner" ] || return 0
  setsid bash -c '
    owner=$1 pid=$2 pidfile=$3 signal=$4
    while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
    if kill -0 "$pid" 2>/dev/null && [ "$(head -n 1 "$pidfile" 2>/dev/null)" = "$pid" ]; then
      kill -CONT "$pid" 2>/dev/null; kill "-$signal" "$pid" 2>/dev/null
    fi' _ "$owner" "$pid" "$pidfile" "$signal" </dev/null >/dev/null 2>&1 &
}

# Prints what `start` made (print_server DIR PORT PID URL) as shell-sourceable lines, the same
# four for every server, and remembers the port in DIR/port for the next start.
print_server() {
  echo "$2" >"$1/port"
  echo "SERVER_DIR=$1"
  echo "SERVER_PORT=$2"
  echo "SERVER_PID=$3"
  echo "SERVER_URL=$4"
}

# Deletes DIR after its server is stopped.
remove_dir() {
  case $1 in
    /|"") die "refusing to delete '$1'" ;;
  esac
  rm -rf "$1"
}
