#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds lockkit and runs the demo: the original module's examples
# (processOrder, a locked counter) with two threads contending.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOCKKIT_BUILD_TESTS=OFF >/dev/null
cmake --build build/demo --target process_orders
./build/demo/examples/process_orders "${1:-memory:}"
