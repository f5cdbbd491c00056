// SPDX-License-Identifier: MIT
// Keys made safe to quote in error messages.
#include "core/escape.hpp"

#include <cstdio>

namespace lockkit::detail {

std::string escape_key(std::string_view key) {
  std::string out;
  std::size_t n = key.size() > 64 ? 64 : key.size();
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (key.size() > n) out += "...";
  return out;
}

}  // namespace lockkit::detail
