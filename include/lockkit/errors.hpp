// SPDX-License-Identifier: MIT
// The one exception type for store failures, and its kinds.
#ifndef LOCKKIT_ERRORS_HPP_
#define LOCKKIT_ERRORS_HPP_

#include <stdexcept>
#include <string>
#include <string_view>

#include "lockkit/export.hpp"

namespace lockkit {

// Why a store call failed. Add a kind here rather than a subclass of `BackendError`.
enum class ErrorKind {
  kUnavailable,  // could not connect, connection dropped, file not openable
  kTimeout,      // connect, command or busy timeout ran out
  kAuth,         // the store refused our credentials
  kProtocol,     // the store answered something we cannot interpret (or a foreign schema)
  kInDoubt,      // the request was sent, the reply lost; our own token was released if possible
  kUnsupported,  // the backend does not offer this operation
  kIo,           // local I/O failed (permissions, read-only file system, not a database)
};

// Returns the kind's lower-case name, e.g. "unavailable".
LOCKKIT_EXPORT const char* to_string(ErrorKind kind) noexcept;

// Thrown when a store fails: unreachable, timed out, refused, or answered garbage.
// Never thrown for contention (that is an empty optional or `false`).
// `what()` reads `<backend>: <message>`; messages never contain passwords or tokens.
// Thread safety: immutable; safe to share.
class LOCKKIT_EXPORT BackendError : public std::runtime_error {
 public:
  BackendError(std::string_view backend, ErrorKind kind, std::string_view message);

  // Returns the backend's name, e.g. "redis".
  const char* backend() const noexcept { return backend_.what(); }
  ErrorKind kind() const noexcept { return kind_; }
  // Returns true if the same call may succeed when retried (unavailable, timeout, in doubt).
  bool retryable() const noexcept;

 private:
  std::runtime_error backend_;  // a nothrow-copyable string
  ErrorKind kind_;
};

}  // namespace lockkit

#endif  // LOCKKIT_ERRORS_HPP_
