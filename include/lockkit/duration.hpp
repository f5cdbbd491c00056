// SPDX-License-Identifier: MIT
// Durations as people write them ("250ms", "30s", "5m", "1h", "2d"): the syntax of every
// duration in a lockkit URL option and on the `lockkit` command line, for programs that read
// their own settings the same way.
#ifndef LOCKKIT_DURATION_HPP_
#define LOCKKIT_DURATION_HPP_

#include <chrono>
#include <string>
#include <string_view>

#include "lockkit/export.hpp"

namespace lockkit {

// Parses a number with a unit: ms, s, m, h or d, e.g. "250ms", "30s", "1.5s" (1500ms), "5m",
// "1h", "2d". Rounds to the nearest millisecond. Throws `std::invalid_argument` whose message
// starts with `what` ("ttl: \"10\" has no unit ...") for anything else: an empty text, a bare
// number, a negative value, an unknown unit, or more than 10^15 ms. Checks no range beyond that:
// the caller knows what its duration is for (a TTL must be 1ms..7d, see `LockApi`).
//   auto ttl = lockkit::parse_duration(argv[1], "ttl");
LOCKKIT_EXPORT std::chrono::milliseconds parse_duration(std::string_view text,
                                                        std::string_view what);

// Formats `d` in the largest unit that divides it exactly: "0ms", "250ms", "1500ms", "30s",
// "7d", "-5s". `parse_duration` reads every non-negative result back to the same value.
LOCKKIT_EXPORT std::string format_duration(std::chrono::milliseconds d);

}  // namespace lockkit

#endif  // LOCKKIT_DURATION_HPP_
