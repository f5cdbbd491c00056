// SPDX-License-Identifier: MIT
// Shared by the load generators: latency percentiles.
#ifndef LOCKKIT_BENCH_BENCH_STATS_HPP_
#define LOCKKIT_BENCH_BENCH_STATS_HPP_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lockkit::bench {

// Returns the `p` quantile (0..1) of `v`, reordering it; 0 for an empty vector.
inline double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(idx), v.end());
  return v[idx];
}

}  // namespace lockkit::bench

#endif  // LOCKKIT_BENCH_BENCH_STATS_HPP_
