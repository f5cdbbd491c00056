// SPDX-License-Identifier: MIT
// `lockkit acquire`: takes a lock, prints it as JSON (with its token) and leaves it held.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common.hpp"
#include "json.hpp"
#include "lockkit/errors.hpp"
#include "signals.hpp"
#include "wait.hpp"

namespace lockkit::cli {

// The lock `acquire` leaves held; never destroyed.
std::optional<Lock>* g_kept_lock = nullptr;

namespace {

// Gives back a lease whose token never reached anyone: nobody else could release it.
void give_back(Lock& lock) {
  try {
    lock.release();
  } catch (const BackendError& e) {
    diagnose(std::string("acquire: could not release the lease, it ends by itself: ") + e.what());
  }
}

}  // namespace

Result acquire(const AcquireArgs& args) {
  std::string key = resolve_key(args.key, "key");
  if (args.ttl.empty()) throw UsageError("missing --ttl");
  auto ttl = parse_ttl(args.ttl, "ttl");
  std::optional<std::chrono::milliseconds> wait;
  if (args.wait) wait = parse_wait(*args.wait);
  const int conflict_status = parse_conflict_exit_code(args.conflict_exit_code);

  // The token is the only way to release the lease: whatever stops us from handing it out (a
  // signal while waiting or while the request is in flight, a closed or full stdout) must end
  // with the lease released, not left held for its whole ttl. So signals are read, not died
  // from, and a write to a closed pipe fails with EPIPE instead of killing us.
  ::signal(SIGPIPE, SIG_IGN);
  SignalGuard signals(/*with_sigchld=*/false);
  auto api = open_backend(args.common);
  WaitEnd end;
  auto lock = take_lock(*api, key, ttl, wait, signals.fd(), end);
  if (!lock) {
    if (end.signal != 0) {
      diagnose("acquire: interrupted by signal " + std::to_string(end.signal) +
               " while waiting for \"" + display_key(key) + "\"");
      return {Outcome::kInterrupted, end.signal};
    }
    diagnose("\"" + display_key(key) + "\" is held by someone else" +
             (wait ? " (waited " + args.wait.value_or("") + ")" : ""));
    return {Outcome::kBusy, 0, conflict_status};
  }
  if (int sig = signals.next(); sig != 0) {
    give_back(*lock);
    diagnose("acquire: interrupted by signal " + std::to_string(sig) + "; released \"" +
             display_key(key) + "\" again");
    return {Outcome::kInterrupted, sig};
  }
  std::string out = "{";
  append_key_fields(out, lock->key());
  out += ",\"token\":\"";
  out += lock->token();
  out += "\"";
  out += ",\"fence\":" + std::to_string(lock->fence());
  out += ",\"expires_at_ms\":" + std::to_string(to_epoch_ms(lock->valid_until()));
  out += "}\n";
  // write(2), not stdio: a failure must be known here, while the lease can still be released.
  if (!write_all(STDOUT_FILENO, out)) {
    int err = errno;
    give_back(*lock);
    diagnose(std::string("acquire: cannot write the lock to stdout (") + std::strerror(err) +
             "); released \"" + display_key(key) + "\" again");
    return {Outcome::kIoError};
  }
  // The lease must outlive this process: hand the handle to a never-destroyed object so its
  // destructor (which would release) never runs. A global with external linkage keeps it
  // reachable (no leak for LeakSanitizer) and the store to it from being optimised away.
  g_kept_lock = new std::optional<Lock>(std::move(lock));
  return {Outcome::kOk};
}

}  // namespace lockkit::cli
