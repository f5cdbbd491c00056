// SPDX-License-Identifier: MIT
// Durations as people write them: "250ms", "30s", "5m", "1h", "2d".
#include "lockkit/duration.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <system_error>

namespace lockkit {

std::chrono::milliseconds parse_duration(std::string_view text, std::string_view what) {
  auto fail = [&](std::string_view why) -> std::chrono::milliseconds {
    throw std::invalid_argument(std::string(what) + ": \"" + std::string(text) + "\" " +
                                std::string(why));
  };
  if (text.empty()) return fail("is empty (use e.g. 250ms, 30s, 5m, 1h, 2d)");
  if (text.front() == '-') return fail("is negative");
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  std::string_view number = text.substr(0, i);
  std::string_view unit = text.substr(i);
  double value = 0;
  auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || ptr != number.data() + number.size()) {
    return fail("is not a duration (use e.g. 250ms, 30s, 5m, 1h, 2d)");
  }
  double scale = 0;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1e3;
  else if (unit == "m")
    scale = 60e3;
  else if (unit == "h")
    scale = 3600e3;
  else if (unit == "d")
    scale = 86400e3;
  else if (unit.empty())
    return fail("has no unit (use e.g. 250ms, 30s, 5m, 1h, 2d)");
  else
    return fail("has an unknown unit (use ms, s, m, h or d)");
  double ms = value * scale;
  if (!std::isfinite(ms) || ms > 1e15) return fail("is too large");
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms == 0) return "0ms";
  struct Unit {
    std::int64_t size;
    const char* name;
  };
  for (Unit u : {Unit{86400000, "d"}, Unit{3600000, "h"}, Unit{60000, "m"}, Unit{1000, "s"}}) {
    if (ms % u.size == 0) return std::to_string(ms / u.size) + u.name;
  }
  return std::to_string(ms) + "ms";
}

}  // namespace lockkit
