// SPDX-License-Identifier: MIT
// Shared parts of the `lockkit` tool: arguments, outcomes and exit statuses, backend choice.
#ifndef LOCKKIT_CLI_COMMON_HPP_
#define LOCKKIT_CLI_COMMON_HPP_

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "lockkit/lock_api.hpp"

namespace lockkit::cli {

// How a subcommand ended. Turned into a number by `exit_status` only.
enum class Outcome {
  kOk,           // 0
  kUsage,        // 64: bad arguments, unknown scheme, malformed URL
  kUnavailable,  // 69: the store failed (`BackendError`)
  kLeaseLost,    // 70: `run` stopped CMD because the lease could not be kept
  kBusy,         // 75: the key is held by someone else (after `--wait`, if given)
  kNotHeld,      // 1: `release`/`extend` with a token that no longer holds the lock
  kChild,        // CMD's own status (`Result::child_status`)
  kInternal,     // 70 (EX_SOFTWARE): a bug or resource exhaustion in lockkit itself
};

struct Result {
  Outcome outcome = Outcome::kOk;
  int child_status = 0;  // with kChild: 0..255, 128+signal, 126 or 127
};

// Returns the process exit status for `result`: the one place where the numbers are decided.
int exit_status(const Result& result) noexcept;

// Maps an exception to its outcome and prints its one-line diagnostic,
// `lockkit: <context>: <what>` (without `<context>: ` when `context` is empty).
Result fail(const std::exception_ptr& error, std::string_view context = {}) noexcept;

// A bad invocation (unknown option, missing argument). Exit status 64.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Prints `lockkit: <message>` as one line on stderr (newlines folded into spaces).
void diagnose(std::string_view message) noexcept;

// Options every subcommand has.
struct Common {
  std::string backend;  // --backend; empty: $LOCKKIT_BACKEND, else the embedded default
  bool json = false;    // --json
};

// A key given as text (`--key`) or as hex bytes (`--key-hex`), exactly one of them.
struct KeyArg {
  std::optional<std::string> text;
  std::optional<std::string> hex;
};

struct RunArgs {
  Common common;
  KeyArg key;
  std::string ttl;
  std::optional<std::string> wait;
  bool no_renew = false;
  std::vector<std::string> command;  // after "--"
  bool saw_separator = false;        // "--" was present
};

struct AcquireArgs {
  Common common;
  KeyArg key;
  std::string ttl;
  std::optional<std::string> wait;
};

struct TokenArgs {  // release, extend
  Common common;
  KeyArg key;
  std::string token;
  std::string ttl;  // extend only
};

struct StatusArgs {
  Common common;
  KeyArg key;
};

struct ListArgs {
  Common common;
  KeyArg prefix;  // --prefix / --prefix-hex; both absent: every key
};

Result run(const RunArgs& args);
Result acquire(const AcquireArgs& args);
Result release(const TokenArgs& args);
Result extend(const TokenArgs& args);
Result status(const StatusArgs& args);
Result list(const ListArgs& args);

// Returns the key bytes; throws `UsageError` unless exactly one of --key/--key-hex was given
// (`name` is "key" or "prefix"), `std::invalid_argument` for bad hex or a bad key.
std::string resolve_key(const KeyArg& arg, std::string_view name, bool required = true);

// Parses a duration option (`--ttl 30s`); throws `std::invalid_argument` naming `what`.
std::chrono::milliseconds parse_ttl(std::string_view text, std::string_view what);
// Parses `--wait`: like a ttl, but 0 is allowed (one attempt).
std::chrono::milliseconds parse_wait(std::string_view text);

// Returns the embedded default backend URL:
// sqlite://$XDG_STATE_HOME/lockkit/locks.db, or ~/.local/state/lockkit/locks.db.
std::string default_backend_url();
// Returns --backend, else $LOCKKIT_BACKEND, else `default_backend_url()`.
std::string backend_url(const Common& common);
// Opens the chosen backend. Throws like `lockkit::open`.
std::shared_ptr<LockApi> open_backend(const Common& common);

// Returns the Unix epoch time in ms at which the steady-clock instant `t` is expected.
std::int64_t to_epoch_ms(std::chrono::steady_clock::time_point t);

// Escapes a key for humans: printable ASCII and valid UTF-8 as is, other bytes as \xNN.
std::string display_key(std::string_view key);

// Formats a remaining time for humans: "12.3s", "850ms", "5m02s".
std::string format_remaining(std::chrono::milliseconds d);

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_COMMON_HPP_
