// SPDX-License-Identifier: MIT
// Keys quoted in error messages.
#include "core/escape.hpp"

#include <gtest/gtest.h>

#include <string>

namespace lockkit::detail {
namespace {

TEST(EscapeKey, ShowsBinaryBytesAsHexAndCutsLongKeys) {
  EXPECT_EQ(escape_key(std::string("a\0\xff\"", 4)), "a\\x00\\xff\\x22");
  EXPECT_EQ(escape_key(std::string(100, 'k')), std::string(64, 'k') + "...");
}

}  // namespace
}  // namespace lockkit::detail
