#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages lockkit needs to build, test and benchmark (only the missing
# ones), as root or through sudo. Safe to run again.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config git ca-certificates  # toolchain
  libgtest-dev libgmock-dev libbenchmark-dev           # tests and benchmarks
  libsqlite3-dev sqlite3                                # sqlite:// backend (the default)
  libhiredis-dev redis-server redis-tools               # redis:// backend, test server, redis-benchmark
  libpq-dev postgresql postgresql-client                # postgres:// backend, test server, pgbench
  libcli11-dev                                          # the lockkit tool's argument parser
  procps psmisc util-linux                              # ps/kill/setsid for the process tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
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
