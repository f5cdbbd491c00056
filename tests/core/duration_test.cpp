// SPDX-License-Identifier: MIT
// lockkit/duration.hpp: durations as people write them, through the public header only.
#include "lockkit/duration.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace lockkit {
namespace {

using namespace std::chrono_literals;

TEST(ParseDuration, AcceptsEveryUnit) {
  EXPECT_EQ(parse_duration("250ms", "ttl"), 250ms);
  EXPECT_EQ(parse_duration("30s", "ttl"), 30s);
  EXPECT_EQ(parse_duration("1.5s", "ttl"), 1500ms);
  EXPECT_EQ(parse_duration("5m", "ttl"), 5min);
  EXPECT_EQ(parse_duration("1h", "ttl"), 1h);
  EXPECT_EQ(parse_duration("2d", "ttl"), 48h);
  EXPECT_EQ(parse_duration("0s", "ttl"), 0ms);
}

TEST(ParseDuration, RejectsGarbageNamingTheArgument) {
  for (const char* bad : {"", "10", "10x", "-5s", "s", "1e3s", "ms", "1..2s", "99999999999999d"}) {
    try {
      parse_duration(bad, "ttl");
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind("ttl: ", 0), 0u) << e.what();
    }
  }
}

TEST(FormatDuration, PicksTheLargestExactUnit) {
  EXPECT_EQ(format_duration(0ms), "0ms");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(30s), "30s");
  EXPECT_EQ(format_duration(168h), "7d");
  EXPECT_EQ(format_duration(-5s), "-5s");
}

TEST(FormatDuration, ParseDurationReadsItBack) {
  using std::chrono::milliseconds;
  for (milliseconds d :
       {milliseconds(0), milliseconds(1), milliseconds(999), milliseconds(1500), milliseconds(60s),
        milliseconds(90s), milliseconds(36h), milliseconds(168h), milliseconds(604801000)}) {
    EXPECT_EQ(parse_duration(format_duration(d), "d"), d) << format_duration(d);
  }
}

}  // namespace
}  // namespace lockkit
