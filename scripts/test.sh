#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, then builds and runs the whole test suite three times: a normal
# build (warnings as errors, benchmarks and the installed-package test included),
# AddressSanitizer+UndefinedBehaviorSanitizer, and ThreadSanitizer. Servers (redis-server,
# PostgreSQL) are started by the tests themselves on free loopback ports and stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs=$(nproc)
out=${LOCKKIT_BUILD_ROOT:-build/test}
configs=${LOCKKIT_TEST_CONFIGS:-"release asan tsan"}

# Compiling is most of CI's time, and full debug information (-g) a third of that: every build
# here has line tables only (-g1), enough for the sanitizers' reports and for backtraces.
release_flags=(-DLOCKKIT_BUILD_BENCH=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG")
# Sanitizer builds: -O1 (what the sanitizers' documentation recommends for readable reports)
# compiles about twice as fast as -O2.
sanitizer_flags=(-DLOCKKIT_INSTALL=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
for config in $configs; do
  args=(-G Ninja -DLOCKKIT_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  run=()
  case $config in
    release) args+=("${release_flags[@]}") ;;
    asan) args+=(-DLOCKKIT_SANITIZER=address,undefined "${sanitizer_flags[@]}") ;;
    tsan)
      args+=(-DLOCKKIT_SANITIZER=thread "${sanitizer_flags[@]}")
      # TSan's shadow memory needs a fixed layout: run without address-space randomisation.
      run=(setarch "$(uname -m)" -R)
      ;;
    *) echo "test.sh: unknown config $config" >&2; exit 64 ;;
  esac
  echo "== $config: configure and build" >&2
  cmake -S . -B "$out/$config" "${args[@]}" >/dev/null
  cmake --build "$out/$config" -j "$jobs"
  echo "== $config: ctest" >&2
  # One test more than cores: most tests spend much of their time waiting for servers, child
  # processes and leases to run out, and the long ones start first (their COST).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    "${run[@]}" ctest --test-dir "$out/$config" --output-on-failure -j "$((jobs + 1))"
done
