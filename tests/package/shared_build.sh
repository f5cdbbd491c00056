#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configures and builds lockkit as shared libraries (libraries and tool only, install prefix
# /usr as for the .deb packages) next to a static test build, for the shared-library tests.
# Incremental: a second run rebuilds only what changed.
#   shared_build.sh <source-dir> <out-dir> <cmake args...>
set -euo pipefail
src=$1 out=$2
shift 2
cmake -S "$src" -B "$out" -G Ninja -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr -DLOCKKIT_BUILD_TESTS=OFF -DLOCKKIT_BUILD_EXAMPLES=OFF \
  -DLOCKKIT_BUILD_BENCH=OFF -DLOCKKIT_INSTALL=ON "$@" >/dev/null
cmake --build "$out" -j 2
