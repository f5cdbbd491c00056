// SPDX-License-Identifier: MIT
// Placeholder until the memory benchmark lands.
#include <benchmark/benchmark.h>
BENCHMARK_MAIN();
