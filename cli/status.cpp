// SPDX-License-Identifier: MIT
// `lockkit status`: who holds a key (fence and remaining time, never the token).
#include <cstdio>
#include <string>

#include "common.hpp"
#include "json.hpp"

namespace lockkit::cli {

Result status(const StatusArgs& args) {
  std::string key = resolve_key(args.key, "key");
  auto api = open_backend(args.common);
  auto info = api->status(key);
  std::string out;
  if (args.common.json) {
    out = "{";
    append_key_fields(out, key);
    if (info) {
      out += ",\"held\":true,\"fence\":" + std::to_string(info->fence) +
             ",\"remaining_ms\":" + std::to_string(info->remaining.count());
    } else {
      out += ",\"held\":false";
    }
    out += "}\n";
  } else if (info) {
    out = display_key(key) + ": held, fence " + std::to_string(info->fence) + ", expires in " +
          format_remaining(info->remaining) + "\n";
  } else {
    out = display_key(key) + ": free\n";
  }
  std::fputs(out.c_str(), stdout);
  return {Outcome::kOk};
}

}  // namespace lockkit::cli
