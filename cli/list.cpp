// SPDX-License-Identifier: MIT
// `lockkit list`: the held keys under a prefix, with fence and remaining time (never tokens).
#include <algorithm>
#include <cstdio>
#include <string>

#include "common.hpp"
#include "json.hpp"

namespace lockkit::cli {

Result list(const ListArgs& args) {
  std::string prefix = resolve_key(args.prefix, "prefix", /*required=*/false);
  auto api = open_backend(args.common);
  auto infos = api->list(prefix);
  std::string out;
  if (args.common.json) {
    out = "[";
    for (std::size_t i = 0; i < infos.size(); ++i) {
      out += i == 0 ? "{" : ",{";
      append_key_fields(out, infos[i].key);
      out += ",\"fence\":" + std::to_string(infos[i].fence) +
             ",\"remaining_ms\":" + std::to_string(infos[i].remaining.count()) + "}";
    }
    out += "]\n";
  } else {
    std::size_t width = 5;
    for (const auto& info : infos) width = std::max(width, std::to_string(info.fence).size());
    auto pad = [](std::string s, std::size_t w) {
      s.resize(std::max(s.size(), w), ' ');
      return s;
    };
    out = pad("FENCE", width) + "  " + pad("EXPIRES IN", 10) + "  KEY\n";
    for (const auto& info : infos) {
      out += pad(std::to_string(info.fence), width) + "  " +
             pad(format_remaining(info.remaining), 10) + "  " + display_key(info.key) + "\n";
    }
  }
  std::fputs(out.c_str(), stdout);
  return {Outcome::kOk};
}

}  // namespace lockkit::cli
