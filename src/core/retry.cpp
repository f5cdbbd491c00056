// SPDX-License-Identifier: MIT
// Backoff delays with full jitter.
#include "lockkit/retry.hpp"

#include <random>
#include <stdexcept>
#include <string>

#include "lockkit/duration.hpp"

namespace lockkit {
namespace {

std::mt19937_64& jitter_rng() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

}  // namespace

void validate_retry_policy(const RetryPolicy& policy) {
  using std::chrono::milliseconds;
  if (policy.max_wait < milliseconds(0) || policy.max_wait > std::chrono::hours(24 * 7)) {
    throw std::invalid_argument("max_wait: must be 0ms..7d, got " +
                                format_duration(policy.max_wait));
  }
  if (policy.initial_delay < milliseconds(1)) {
    throw std::invalid_argument("initial_delay: must be at least 1ms, got " +
                                format_duration(policy.initial_delay));
  }
  if (policy.max_delay < policy.initial_delay) {
    throw std::invalid_argument("max_delay: must be at least initial_delay (" +
                                format_duration(policy.initial_delay) + "), got " +
                                format_duration(policy.max_delay));
  }
}

std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, unsigned attempt) {
  validate_retry_policy(policy);
  auto cap = policy.initial_delay.count();
  for (unsigned i = 0; i < attempt && cap < policy.max_delay.count(); ++i) cap *= 2;
  if (cap > policy.max_delay.count()) cap = policy.max_delay.count();
  std::uniform_int_distribution<std::int64_t> dist(0, cap);
  return std::chrono::milliseconds(dist(jitter_rng()));
}

}  // namespace lockkit
