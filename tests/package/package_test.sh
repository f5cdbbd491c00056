#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs a build tree (static or shared) into a temporary prefix and builds consumers against
# it: with find_package(lockkit COMPONENTS ...) and with pkg-config, both linked with
# -Wl,--as-needed (Debian's and Ubuntu's default); a consumer of the core alone and one of sqlite
# alone, configured while the other backends' dependencies cannot be found; with the async
# component, an AsyncLockApi consumer (both ways too) that must take the native redis:// path
# against a redis-server of its own.
#   package_test.sh <build-dir> <source-dir> "<components>" ["<extras>"]
set -euo pipefail
build=$1 src=$2 components=$3 extras=${4:-}
tmp=$(mktemp -d)
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name lockkit.pc -path '*/pkgconfig/*')")/..
shared=0
if [ -e "$libdir/liblockkit.so" ]; then shared=1; fi
echo "installed: $( ((shared)) && echo shared || echo static) libraries in $libdir"
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

urls=(memory:)
unreachable=()
pkgs=(lockkit)
for c in $components; do
  pkgs+=("lockkit-$c")
  case $c in
    sqlite) urls+=("sqlite://$tmp/locks.db") ;;
    # Nothing listens on port 1: connecting fails at once with BackendError.
    redis) unreachable+=("redis://127.0.0.1:1?connect_timeout=2s") ;;
    postgres) unreachable+=("postgres://lockkit@127.0.0.1:1/lockkit?connect_timeout=2s") ;;
    etcd) unreachable+=("etcd://127.0.0.1:1?connect_timeout=2s") ;;
  esac
done
schemes=$components
case " $components " in *" postgres "*) schemes="$schemes postgresql" ;; esac

# configure <dir> <components> [env...]: the consumer project against the installed prefix.
configure() {
  local dir=$1 comps=$2
  shift 2
  env "$@" cmake -S "$src/tests/package" -B "$tmp/$dir" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_EXE_LINKER_FLAGS=-Wl,--as-needed -DLOCKKIT_COMPONENTS="${comps// /;}" >"$tmp/$dir.log" \
    || { cat "$tmp/$dir.log" >&2; echo "package_test: configuring $dir failed" >&2; exit 1; }
  cmake --build "$tmp/$dir" >/dev/null
}

echo "== find_package(lockkit COMPONENTS $components)"
configure all "$components"
# shellcheck disable=SC2086  # one word per scheme
"$tmp/all/consumer" $schemes -- "${urls[@]}" -- "${unreachable[@]}"

echo "== find_package(lockkit) alone, no backend's dependency findable"
configure core "" PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= \
  CMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON CMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON
"$tmp/core/consumer" memory noop -- memory:
case " $components " in
  *" sqlite "*)
    echo "== find_package(lockkit COMPONENTS sqlite), hiredis and libpq not findable"
    configure sqlite sqlite PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= \
      CMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON
    "$tmp/sqlite/consumer" sqlite -- "sqlite://$tmp/sqlite.db"
    ;;
esac

echo "== pkg-config --cflags --libs ${pkgs[*]}"
static=()
if ((!shared)); then static=(--static); fi
flags=$(PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config "${static[@]}" --cflags --libs "${pkgs[@]}")
echo "$flags"
# shellcheck disable=SC2086  # flags are words
c++ -std=c++20 -o "$tmp/pc-consumer" "$src/tests/package/main.cpp" -Wl,--as-needed $flags
# shellcheck disable=SC2086
"$tmp/pc-consumer" $schemes -- "${urls[@]}" -- "${unreachable[@]}"

case " $extras " in *" async "*) ;; *)
  echo "package_test: OK"
  exit 0
  ;;
esac

# A redis-server of our own on a free loopback port: another process may hold the port we try
# (its INFO then shows another pid), so we try a few.
start_redis() {
  local attempt i
  for attempt in 1 2 3 4 5 6 7 8; do
    redis_port=$((20000 + (RANDOM % 20000)))
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
      >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    for i in $(seq 200); do
      if ! kill -0 "$redis_pid" 2>/dev/null; then break; fi
      if redis-cli -p "$redis_port" INFO server 2>/dev/null | grep -q "^process_id:$redis_pid"; then
        return 0
      fi
      sleep 0.02
    done
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  done
  echo "package_test: could not start redis-server:" >&2
  cat "$tmp/redis.log" >&2
  return 1
}
async_args=()
async_comps=async
case " $components " in *" redis "*)
  start_redis
  async_args=("$redis_port")
  async_comps="async redis"
  ;;
esac
echo "== find_package(lockkit COMPONENTS $async_comps): AsyncLockApi"
configure async "$async_comps"
"$tmp/async/async_consumer" "${async_args[@]}"

async_pkgs=(lockkit-async)
case " $components " in *" redis "*) async_pkgs+=(lockkit-redis) ;; esac
echo "== pkg-config --cflags --libs ${async_pkgs[*]}"
flags=$(PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config "${static[@]}" --cflags --libs "${async_pkgs[@]}")
echo "$flags"
# shellcheck disable=SC2086  # flags are words
c++ -std=c++20 -o "$tmp/pc-async-consumer" "$src/tests/package/async_main.cpp" -Wl,--as-needed \
  $flags
"$tmp/pc-async-consumer" "${async_args[@]}"
echo "package_test: OK"
