// SPDX-License-Identifier: MIT
// `lockkit release`: releases a lock held by a token (from `lockkit acquire`).
#include <string>

#include "common.hpp"

namespace lockkit::cli {

Result release(const TokenArgs& args) {
  std::string key = resolve_key(args.key, "key");
  std::string token = resolve_token(args.token);
  auto api = open_backend(args.common);
  if (!api->release(key, token)) {
    diagnose("release: the token does not hold \"" + display_key(key) +
             "\" (expired, released or taken over)");
    return {Outcome::kNotHeld};
  }
  return {Outcome::kOk};
}

}  // namespace lockkit::cli
