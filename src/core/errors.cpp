// SPDX-License-Identifier: MIT
// BackendError and ErrorKind names.
#include "lockkit/errors.hpp"

#include <string>

namespace lockkit {

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kUnavailable:
      return "unavailable";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kAuth:
      return "auth";
    case ErrorKind::kProtocol:
      return "protocol";
    case ErrorKind::kInDoubt:
      return "in-doubt";
    case ErrorKind::kUnsupported:
      return "unsupported";
    case ErrorKind::kIo:
      return "io";
  }
  return "unknown";
}

BackendError::BackendError(std::string_view backend, ErrorKind kind, std::string_view message)
    : std::runtime_error(std::string(backend) + ": " + std::string(message)),
      backend_(std::string(backend)),
      kind_(kind) {}

bool BackendError::retryable() const noexcept {
  return kind_ == ErrorKind::kUnavailable || kind_ == ErrorKind::kTimeout ||
         kind_ == ErrorKind::kInDoubt;
}

}  // namespace lockkit
