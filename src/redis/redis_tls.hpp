// SPDX-License-Identifier: MIT
// Internal: TLS for Redis connections (rediss://) on OpenSSL: context, handshake, record I/O.
#ifndef LOCKKIT_SRC_REDIS_REDIS_TLS_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_TLS_HPP_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "lockkit/errors.hpp"

// OpenSSL's own names for SSL and SSL_CTX: its headers stay inside redis_tls.cpp.
struct ssl_st;
struct ssl_ctx_st;

namespace lockkit::detail::redis {

// What `rediss://` verifies and presents. Empty strings mean "not set".
struct TlsConfig {
  bool enabled = false;
  std::string ca_file;      // PEM bundle of trusted CAs; with ca_dir empty too: the system store
  std::string ca_dir;       // OpenSSL hashed directory of trusted CAs
  std::string cert_file;    // client certificate chain (PEM), for servers that require one
  std::string key_file;     // its private key (PEM)
  std::string server_name;  // name to verify and send as SNI; empty: the host connected to
  bool insecure_skip_verify = false;  // no certificate or name check at all
};

struct TlsContextDeleter {
  void operator()(ssl_ctx_st* ctx) const noexcept;
};
struct TlsSessionDeleter {
  void operator()(ssl_st* ssl) const noexcept;
};
using TlsContext = std::unique_ptr<ssl_ctx_st, TlsContextDeleter>;
using TlsSession = std::unique_ptr<ssl_st, TlsSessionDeleter>;

// Returns a client context for `config` (TLS 1.2 or later, peer verification unless
// `insecure_skip_verify`). Reads the CA, certificate and key files now. Throws
// `std::invalid_argument` naming the option whose file cannot be used.
TlsContext make_tls_context(const TlsConfig& config);

// Runs the client handshake on the connected, non-blocking socket `fd` until `deadline`,
// verifying the server as `config.server_name`, else `host`. Throws `StoreFailure` (never
// sent): kTimeout, kUnavailable (closed or reset), kAuth (certificate rejected, with
// OpenSSL's verify reason), kProtocol (anything else, e.g. the server does not speak TLS).
TlsSession tls_handshake(ssl_ctx_st* ctx, int fd, const std::string& host, const TlsConfig& config,
                         std::chrono::steady_clock::time_point deadline,
                         std::chrono::milliseconds connect_timeout, const std::string& where);

// Keeps `ssl` / `ctx` allocated and reachable for the rest of the process without touching
// them: in a forked child, the parent's TLS state may be mid-update (a parent thread was inside
// OpenSSL at the fork), and freeing or closing it could crash, hang or send a close_notify on
// the parent's stream.
void abandon_after_fork(ssl_st* ssl) noexcept;
void abandon_after_fork(ssl_ctx_st* ctx) noexcept;

// The result of one non-blocking record operation.
enum class TlsIo { kDone, kWantRead, kWantWrite, kClosed, kFailed };

// Why a record operation failed (`kFailed`).
struct TlsFailure {
  ErrorKind kind = ErrorKind::kProtocol;
  std::string message;
};

// One non-blocking SSL_read / SSL_write. `done` is the number of bytes moved on `kDone`.
// Callers serialise calls on one session (OpenSSL sessions are not thread-safe).
TlsIo tls_read(ssl_st* ssl, char* buf, std::size_t size, std::size_t& done, TlsFailure& failure);
TlsIo tls_write(ssl_st* ssl, const char* data, std::size_t size, std::size_t& done,
                TlsFailure& failure);

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_TLS_HPP_
