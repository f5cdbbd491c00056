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
  kOk,            // 0
  kUsage,         // 64 EX_USAGE: bad arguments, unknown scheme, malformed URL
  kUnavailable,   // 69 EX_UNAVAILABLE: the store failed (`BackendError`)
  kLeaseLost,     // 70: `run` stopped CMD because the lease could not be kept
  kInternal,      // 71 EX_OSERR: a failed system call or a bug in lockkit itself
  kIoError,       // 74 EX_IOERR: the result could not be written to stdout
  kBusy,          // 75 EX_TEMPFAIL, or --conflict-exit-code: the key is held by someone else
  kNoPermission,  // 77 EX_NOPERM: the store refused our credentials (`ErrorKind::kAuth`)
  kNotHeld,       // 1: `release`/`extend` with a token that no longer holds the lock
  kChild,         // CMD's own status (`Result::child_status`)
  kInterrupted,   // 128 + N: signal N (`Result::child_status`) ended a wait for the lock
};

// The default status for a busy key (EX_TEMPFAIL); `--conflict-exit-code` replaces it.
inline constexpr int kDefaultConflictExitCode = 75;

struct Result {
  Outcome outcome = Outcome::kOk;
  int child_status = 0;  // kChild: 0..255, 128+signal, 126 or 127; kInterrupted: the signal
  int busy_status = kDefaultConflictExitCode;  // with kBusy
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
// Returns the line `diagnose` writes for `message`, newline included.
std::string format_diagnostic(std::string_view message);

// Options every subcommand has.
struct Common {
  std::optional<std::string> backend;       // -b/--backend URL
  std::optional<std::string> backend_file;  // --backend-file FILE ("-": stdin)
  bool json = false;                        // --json
};

// Where the owner token comes from for `release`/`extend`: --token, else --token-file, else
// $LOCKKIT_TOKEN.
struct TokenSource {
  std::optional<std::string> token;  // --token T
  std::optional<std::string> file;   // --token-file FILE ("-": stdin)
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
  std::optional<std::string> conflict_exit_code;
  bool no_renew = false;
  std::vector<std::string> command;     // after "--"
  bool saw_separator = false;           // "--" was present
  std::optional<std::string> max_hold;  // --max-hold: no renewal after acquisition + this
};

struct AcquireArgs {
  Common common;
  KeyArg key;
  std::string ttl;
  std::optional<std::string> wait;
  std::optional<std::string> conflict_exit_code;
};

struct TokenArgs {  // release, extend
  Common common;
  KeyArg key;
  TokenSource token;
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
// `--wait forever`: retry until the key is free (or a signal ends the wait).
inline constexpr std::chrono::milliseconds kWaitForever = std::chrono::milliseconds::max();
// Parses `--wait`: like a ttl, but 0 is allowed (one attempt), and "forever" gives
// `kWaitForever`.
std::chrono::milliseconds parse_wait(std::string_view text);
// Parses `--conflict-exit-code` (0..255); absent gives `kDefaultConflictExitCode`.
int parse_conflict_exit_code(const std::optional<std::string>& text);

// Returns the owner token from `source` (see `TokenSource`). Throws `UsageError` if none is
// given, both --token and --token-file are, or the file cannot be read or holds no token.
std::string resolve_token(const TokenSource& source);

// Returns the safety margin that `LockApi`'s locks subtract from a lease of `ttl` for local
// validity on `backend` (e.g. "redis"): 0 for the stores that expire leases on this host's
// steady clock (sqlite, memory, noop), otherwise 1% of ttl + 2 ms, as the network stores do.
std::chrono::milliseconds drift_for(std::string_view backend, std::chrono::milliseconds ttl);

// Set once lockkit leaves a thread behind that is still blocked in a store call (a hanging
// store, see `run`): `main` then ends the process without running static destructors.
void note_detached_thread() noexcept;
bool has_detached_thread() noexcept;

// Writes all of `data` to `fd` (retrying short writes and EINTR). Returns false with errno set
// if it could not.
bool write_all(int fd, std::string_view data) noexcept;

// Returns the embedded default backend URL:
// sqlite://$XDG_STATE_HOME/lockkit/locks.db, or ~/.local/state/lockkit/locks.db.
std::string default_backend_url();
// Returns --backend, else the first line of --backend-file, else $LOCKKIT_BACKEND (unless
// empty), else `default_backend_url()`. Throws `UsageError` for an empty --backend, both
// --backend and --backend-file, or an unreadable or empty file.
std::string backend_url(const Common& common);
// Opens the chosen backend, loading its module first if the tool has it as one (modules.hpp).
// Throws like `lockkit::open`, and `BackendError` if that module cannot be loaded.
std::shared_ptr<LockApi> open_backend(const Common& common);

// Returns the Unix epoch time in ms at which the steady-clock instant `t` is expected.
std::int64_t to_epoch_ms(std::chrono::steady_clock::time_point t);

// Escapes a key for humans: printable ASCII and valid UTF-8 as is, other bytes as \xNN.
std::string display_key(std::string_view key);

// Formats a remaining time for humans: "12.3s", "850ms", "5m02s".
std::string format_remaining(std::chrono::milliseconds d);

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_COMMON_HPP_
