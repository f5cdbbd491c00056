#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages lockkit needs (only the missing ones), as root or through sudo.
# Safe to run again.
#   setup.sh [full]  everything to build, test, package and benchmark (scripts/test.sh)
#   setup.sh demo    only what scripts/demo.sh needs: the tool with the sqlite:// backend
set -euo pipefail

demo=(
  g++ cmake ninja-build pkg-config  # toolchain
  libsqlite3-dev                    # sqlite:// backend (the default)
  libcli11-dev                      # the lockkit tool's argument parser
)
full=(
  "${demo[@]}" git ca-certificates
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and benchmarks
  sqlite3                                     # the sqlite3 shell, to inspect lock files
  libhiredis-dev redis-server redis-tools     # redis:// backend, test server, redis-benchmark
  libssl-dev openssl                          # rediss:// (TLS); the tests' certificates
  libpq-dev postgresql postgresql-client      # postgres:// backend, test server, pgbench
  libasio-dev                                 # lockkit::async (AsyncLockApi; standalone asio)
  libgrpc++-dev libprotobuf-dev               # etcd:// backend (gRPC, protobuf)
  protobuf-compiler protobuf-compiler-grpc    # protoc and grpc_cpp_plugin for etcd's .proto
  etcd-server etcd-client                     # etcd test server and etcdctl
  procps psmisc util-linux                    # ps/kill/setsid for the process tests
  dpkg-dev file binutils                      # .deb packages: dpkg-shlibdeps, file, nm/readelf
  man-db groff-base bash-completion           # package tests: man -l, the completion framework
)
case ${1:-full} in
  demo) packages=("${demo[@]}") ;;
  full) packages=("${full[@]}") ;;
  *) echo "usage: setup.sh [full|demo]" >&2; exit 64 ;;
esac

# The redlock:// interop test and benchmark run npm `redlock` v5 (pinned by the lockfile) with
# node, installed into the test's own directory; never globally.
node_deps() {
  [ "${1:-full}" = full ] || return 0
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/redis/node"
  if command -v npm >/dev/null; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  else
    echo "setup: no npm: the redlock:// test against npm redlock will be skipped" >&2
  fi
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  node_deps "${1:-full}"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
# No services may start inside a container without an init system; tests start their own.
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
node_deps "${1:-full}"
