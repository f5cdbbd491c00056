// SPDX-License-Identifier: MIT
// Internal: the one failure type a backend's connection layer throws up to its store.
#ifndef LOCKKIT_SRC_CORE_STORE_FAILURE_HPP_
#define LOCKKIT_SRC_CORE_STORE_FAILURE_HPP_

#include <stdexcept>
#include <string>
#include <utility>

#include "lockkit/errors.hpp"

namespace lockkit::detail {

// Why a call to a store failed, before the store turns it into a `BackendError` that names the
// operation and the key. The message never holds a password or token.
class StoreFailure : public std::runtime_error {
 public:
  StoreFailure(ErrorKind kind, const std::string& message, bool maybe_applied = false,
               bool broken = false, std::string server_code = {})
      : std::runtime_error(message),
        kind_(kind),
        maybe_applied_(maybe_applied),
        broken_(broken),
        server_code_(std::move(server_code)) {}

  ErrorKind kind() const noexcept { return kind_; }
  // The request may have run on the server (sent, answer lost): an acquire is then in doubt.
  bool maybe_applied() const noexcept { return maybe_applied_; }
  // The connection it ran on is unusable and must be dropped.
  bool broken() const noexcept { return broken_; }
  // The server's own code for the error (e.g. a SQLSTATE), empty if none.
  const std::string& server_code() const noexcept { return server_code_; }

 private:
  ErrorKind kind_;
  bool maybe_applied_;
  bool broken_;
  std::string server_code_;
};

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_STORE_FAILURE_HPP_
