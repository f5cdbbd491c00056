// SPDX-License-Identifier: MIT
// `lockkit acquire`: takes a lock, prints it as JSON (with its token) and leaves it held.
#include <cstdio>
#include <string>

#include "common.hpp"
#include "json.hpp"
#include "wait.hpp"

namespace lockkit::cli {

// The lock `acquire` leaves held; never destroyed.
std::optional<Lock>* g_kept_lock = nullptr;

Result acquire(const AcquireArgs& args) {
  std::string key = resolve_key(args.key, "key");
  if (args.ttl.empty()) throw UsageError("missing --ttl");
  auto ttl = parse_ttl(args.ttl, "ttl");
  std::optional<std::chrono::milliseconds> wait;
  if (args.wait) wait = parse_wait(*args.wait);
  auto api = open_backend(args.common);
  WaitEnd end;
  auto lock = take_lock(*api, key, ttl, wait, -1, end);
  if (!lock) {
    diagnose("\"" + display_key(key) + "\" is held by someone else" +
             (wait ? " (waited " + args.wait.value_or("") + ")" : ""));
    return {Outcome::kBusy};
  }
  std::string out = "{";
  append_key_fields(out, lock->key());
  out += ",\"token\":\"" + lock->token() + "\"";
  out += ",\"fence\":" + std::to_string(lock->fence());
  out += ",\"expires_at_ms\":" + std::to_string(to_epoch_ms(lock->valid_until()));
  out += "}\n";
  std::fputs(out.c_str(), stdout);
  // The lease must outlive this process: hand the handle to a never-destroyed object so its
  // destructor (which would release) never runs. A global with external linkage keeps it
  // reachable (no leak for LeakSanitizer) and the store to it from being optimised away.
  g_kept_lock = new std::optional<Lock>(std::move(lock));
  return {Outcome::kOk};
}

}  // namespace lockkit::cli
