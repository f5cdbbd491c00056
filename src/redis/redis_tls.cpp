// SPDX-License-Identifier: MIT
// TLS for Redis connections on OpenSSL: the context, the bounded handshake and record I/O.
#include "redis/redis_tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/duration.hpp"

namespace lockkit::detail::redis {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a connection the server
// closed and kills a process that did not ignore it. This one sends with MSG_NOSIGNAL, as the
// plain path does, and otherwise behaves like the socket BIO on a non-blocking descriptor.
int bio_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
  ssize_t n = ::send(fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

int bio_read(BIO* bio, char* out, int size) {
  BIO_clear_retry_flags(bio);
  int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
  ssize_t n = ::recv(fd, out, static_cast<std::size_t>(size), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_read(bio);
  }
  return static_cast<int>(n);
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  // FLUSH must succeed (nothing is buffered here); every other query means "not supported".
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* socket_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lockkit redis socket");
    if (m == nullptr) throw std::bad_alloc();
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;  // never freed: lives as long as the process
  }();
  return method;
}

// The most specific reason OpenSSL queued for this thread, and clears the queue.
unsigned long take_error() {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  return last;
}

std::string reason_text(unsigned long e) {
  if (e == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(e);
  if (reason != nullptr) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Sorts a failed OpenSSL call into what the caller can act on: the server's certificate or
// ours was refused (auth: a setting to fix, not worth retrying), the connection went away
// (unavailable), or anything else the peer or OpenSSL objected to (protocol).
TlsIo classify(SSL* ssl, int ret, TlsFailure& failure) {
  const int saved_errno = errno;
  const int code = SSL_get_error(ssl, ret);
  switch (code) {
    case SSL_ERROR_WANT_READ:
      return TlsIo::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return TlsIo::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      take_error();
      return TlsIo::kClosed;
    default:
      break;
  }
  const unsigned long e = take_error();
  const int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
  if (code == SSL_ERROR_SYSCALL && e == 0) {
    if (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE) {
      return TlsIo::kClosed;
    }
    failure = {ErrorKind::kUnavailable, std::string("TLS: ") + std::strerror(saved_errno)};
    return TlsIo::kFailed;
  }
  if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) return TlsIo::kClosed;
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long verify = SSL_get_verify_result(ssl);
    failure = {ErrorKind::kAuth,
               std::string("TLS: server certificate rejected: ") +
                   X509_verify_cert_error_string(verify) +
                   " (trusted CAs: tls_ca_file, tls_ca_dir or the system store; name checked: "
                   "tls_server_name or the host)"};
    return TlsIo::kFailed;
  }
  switch (reason) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      failure = {ErrorKind::kAuth, "TLS: the server refused our client certificate (" +
                                       reason_text(e) +
                                       "); it may require one: tls_cert and tls_key"};
      return TlsIo::kFailed;
    default:
      break;
  }
  failure = {ErrorKind::kProtocol, "TLS: " + reason_text(e)};
  return TlsIo::kFailed;
}

// Waits until `fd` is ready for what OpenSSL wants, at most until `deadline`. Returns false
// on timeout.
bool wait_ready(int fd, TlsIo want, Clock::time_point deadline) {
  pollfd p{fd, static_cast<short>(want == TlsIo::kWantWrite ? POLLOUT : POLLIN), 0};
  while (true) {
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return true;  // let OpenSSL report the socket's error
  }
}

// In TLS 1.3 the client's handshake ends before the server has checked the client's
// certificate; a server that refuses it sends an alert and closes, and if our first request is
// already on its way the close becomes a reset that destroys the alert: the caller would see
// "connection closed" instead of the reason. So when the server asked for a certificate, wait
// (briefly, within the connect deadline) for its first record: session tickets mean it accepted
// us, an alert is reported as such. A server that sends no tickets costs at most the wait.
void await_client_verdict(SSL* ssl, int fd, Clock::time_point deadline, const std::string& where) {
  const Clock::time_point until = std::min(deadline, Clock::now() + milliseconds(250));
  while (wait_ready(fd, TlsIo::kWantRead, until)) {
    ERR_clear_error();
    char c;
    std::size_t done = 0;
    int ret = SSL_peek_ex(ssl, &c, 1, &done);
    if (ret == 1) return;  // application data: the server accepted us long ago
    TlsFailure failure;
    TlsIo io = classify(ssl, ret, failure);
    if (io == TlsIo::kWantRead) return;  // tickets read: the server accepted us
    if (io == TlsIo::kWantWrite) continue;
    if (io == TlsIo::kClosed) {
      throw StoreFailure(ErrorKind::kAuth,
                         where +
                             ": TLS: the server closed the connection right after the "
                             "handshake: it asked for a client certificate and refused ours "
                             "(or none was given: tls_cert and tls_key)");
    }
    throw StoreFailure(failure.kind, where + ": " + failure.message);
  }
}

// Abandoned TLS objects of a forked child, reachable from here so that leak checkers do not
// count them. Pushed without a lock: a lock held by a parent thread at the fork never opens.
struct Abandoned {
  void* object;
  Abandoned* next;
};
std::atomic<Abandoned*> g_abandoned{nullptr};

void keep_forever(void* object) noexcept {
  if (object == nullptr) return;
  auto* node = new (std::nothrow) Abandoned{object, g_abandoned.load(std::memory_order_relaxed)};
  if (node == nullptr) return;  // out of memory: then it leaks unreferenced, harmlessly
  while (!g_abandoned.compare_exchange_weak(node->next, node, std::memory_order_release)) {
  }
}

}  // namespace

void TlsContextDeleter::operator()(ssl_ctx_st* ctx) const noexcept {
  SSL_CTX_free(ctx);
}

void TlsSessionDeleter::operator()(ssl_st* ssl) const noexcept {
  // No SSL_shutdown: a close_notify is a courtesy Redis does not need, and a destructor must
  // not wait on the network.
  SSL_free(ssl);
}

void abandon_after_fork(ssl_st* ssl) noexcept {
  keep_forever(ssl);
}

void abandon_after_fork(ssl_ctx_st* ctx) noexcept {
  keep_forever(ctx);
}

TlsContext make_tls_context(const TlsConfig& config) {
  ERR_clear_error();
  TlsContext ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw std::runtime_error("TLS: cannot create a context: " + reason_text(take_error()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Partial writes: the pipelined writer sends what the socket takes and comes back for the
  // rest. No auto-retry: on a non-blocking socket every wait goes through our poll and deadline.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_clear_mode(ctx.get(), SSL_MODE_AUTO_RETRY);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (config.insecure_skip_verify) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (config.ca_file.empty() && config.ca_dir.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
        throw std::invalid_argument("TLS: cannot load the system CA store: " +
                                    reason_text(take_error()));
      }
    } else if (SSL_CTX_load_verify_locations(
                   ctx.get(), config.ca_file.empty() ? nullptr : config.ca_file.c_str(),
                   config.ca_dir.empty() ? nullptr : config.ca_dir.c_str()) != 1) {
      throw std::invalid_argument(std::string(config.ca_file.empty()
                                                  ? "tls_ca_dir \"" + config.ca_dir
                                                  : "tls_ca_file \"" + config.ca_file) +
                                  "\": cannot load CA certificates: " + reason_text(take_error()));
    }
  }
  if (!config.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), config.cert_file.c_str()) != 1) {
      throw std::invalid_argument("tls_cert \"" + config.cert_file +
                                  "\": cannot load the certificate: " + reason_text(take_error()));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), config.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      throw std::invalid_argument("tls_key \"" + config.key_file +
                                  "\": cannot load the private key: " + reason_text(take_error()));
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      throw std::invalid_argument("tls_key \"" + config.key_file +
                                  "\": does not match tls_cert: " + reason_text(take_error()));
    }
  }
  return ctx;
}

TlsSession tls_handshake(ssl_ctx_st* ctx, int fd, const std::string& host, const TlsConfig& config,
                         Clock::time_point deadline, milliseconds connect_timeout,
                         const std::string& where) {
  ERR_clear_error();
  TlsSession ssl(SSL_new(ctx));
  BIO* bio = ssl ? BIO_new(socket_method()) : nullptr;
  if (!bio) {
    throw StoreFailure(ErrorKind::kUnavailable,
                       where + ": TLS: cannot create a session: " + reason_text(take_error()));
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  SSL_set_bio(ssl.get(), bio, bio);  // the session owns the BIO; the socket stays ours
  const std::string& name = config.server_name.empty() ? host : config.server_name;
  if (!config.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    int ok = is_ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                                 : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    if (ok != 1) {
      throw StoreFailure(ErrorKind::kProtocol,
                         where + ": TLS: cannot verify the name \"" + name + "\"");
    }
  }
  // SNI carries host names only (RFC 6066): never an address.
  if (!is_ip_literal(name)) SSL_set_tlsext_host_name(ssl.get(), name.c_str());
  // Whether the server asked for a client certificate (called whether or not we have one).
  bool cert_requested = false;
  SSL_set_cert_cb(
      ssl.get(),
      [](SSL*, void* flag) {
        *static_cast<bool*>(flag) = true;
        return 1;
      },
      &cert_requested);
  SSL_set_connect_state(ssl.get());
  while (true) {
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl.get());
    if (ret == 1) {
      SSL_set_cert_cb(ssl.get(), nullptr, nullptr);
      if (cert_requested && SSL_version(ssl.get()) == TLS1_3_VERSION) {
        await_client_verdict(ssl.get(), fd, deadline, where);
      }
      return ssl;
    }
    TlsFailure failure;
    TlsIo io = classify(ssl.get(), ret, failure);
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) {
      if (!wait_ready(fd, io, deadline)) {
        throw StoreFailure(ErrorKind::kTimeout, where + ": TLS handshake timed out after " +
                                                    format_duration(connect_timeout));
      }
      continue;
    }
    if (io == TlsIo::kClosed) {
      throw StoreFailure(ErrorKind::kUnavailable,
                         where + ": TLS handshake: connection closed by the server");
    }
    if (failure.kind == ErrorKind::kProtocol) {
      failure.message += " (does the server speak TLS on this port?)";
    }
    throw StoreFailure(failure.kind, where + ": " + failure.message);
  }
}

TlsIo tls_read(ssl_st* ssl, char* buf, std::size_t size, std::size_t& done, TlsFailure& failure) {
  ERR_clear_error();
  int ret = SSL_read_ex(ssl, buf, size, &done);
  if (ret == 1) return TlsIo::kDone;
  return classify(ssl, ret, failure);
}

TlsIo tls_write(ssl_st* ssl, const char* data, std::size_t size, std::size_t& done,
                TlsFailure& failure) {
  ERR_clear_error();
  int ret = SSL_write_ex(ssl, data, size, &done);
  if (ret == 1) return TlsIo::kDone;
  return classify(ssl, ret, failure);
}

}  // namespace lockkit::detail::redis
