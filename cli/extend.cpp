// SPDX-License-Identifier: MIT
// `lockkit extend`: moves the expiry of a lock held by a token to now + ttl.
#include <chrono>
#include <cstdio>
#include <string>

#include "common.hpp"
#include "json.hpp"

namespace lockkit::cli {

Result extend(const TokenArgs& args) {
  std::string key = resolve_key(args.key, "key");
  if (args.ttl.empty()) throw UsageError("missing --ttl");
  auto ttl = parse_ttl(args.ttl, "ttl");
  std::string token = resolve_token(args.token);
  auto api = open_backend(args.common);
  auto start = std::chrono::steady_clock::now();  // validity counts from before the request
  if (!api->extend(key, token, ttl)) {
    diagnose("extend: the token does not hold \"" + display_key(key) +
             "\" (expired, released or taken over)");
    return {Outcome::kNotHeld};
  }
  if (args.common.json) {
    std::string out = "{";
    append_key_fields(out, key);
    // Like `acquire`'s: request start + ttl - the backend's drift margin, never later than the
    // store's expiry.
    out += ",\"expires_at_ms\":" +
           std::to_string(to_epoch_ms(start + ttl - drift_for(api->backend(), ttl))) + "}\n";
    std::fputs(out.c_str(), stdout);
  }
  return {Outcome::kOk};
}

}  // namespace lockkit::cli
