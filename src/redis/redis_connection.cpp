// SPDX-License-Identifier: MIT
// Pipelined Redis connections (leader/follower reading, combined writes) and their pool.
#include "redis/redis_connection.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>

#include "core/url.hpp"

namespace lockkit::detail::redis {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A caller's request in flight. `state` is the futex the caller sleeps on.
struct Connection::Waiter {
  static constexpr std::uint32_t kWaiting = 0;
  static constexpr std::uint32_t kDone = 1;  // reply or failure filled in
  static constexpr std::uint32_t kRead = 2;  // the reader role was handed to this caller
  std::atomic<std::uint32_t> state{kWaiting};
  std::uint64_t offset = 0;  // where the request starts in the connection's byte stream
  bool queued = false;       // still in `pending_`; guarded by the connection's mutex
  redisReply* reply = nullptr;
  bool failed = false;
  bool maybe_sent = false;
  ErrorKind kind = ErrorKind::kUnavailable;
  std::string message;
};

namespace {

std::string errno_text(int err) {
  char buf[128];
  return std::string(strerror_r(err, buf, sizeof buf));
}

template <class T>
void append_decimal(std::string& out, T value) {
  char buf[24];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  out.append(p, end);
}

void append_bulk_impl(std::string& out, std::string_view arg) {
  out.push_back('$');
  append_decimal(out, arg.size());
  out.append("\r\n");
  out.append(arg);
  out.append("\r\n");
}

// The longest a blocking send/receive waits before the caller re-checks its deadline.
timeval slice_of(milliseconds command_timeout) {
  milliseconds slice = std::clamp(command_timeout / 8, milliseconds(1), milliseconds(50));
  return timeval{static_cast<time_t>(slice.count() / 1000),
                 static_cast<suseconds_t>((slice.count() % 1000) * 1000)};
}

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
              std::atomic<std::uint32_t>::is_always_lock_free);

// Sleeps while `word` holds `expected`, at most until `deadline`; may wake spuriously.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, TimePoint deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec rel{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, &rel,
            nullptr, 0);
}

// Wakes `count` sleepers on `word`. The word may already be gone (its caller saw the new state and
// returned): a futex wake on a dead address only causes a spurious wake-up, which every waiter
// tolerates.
void futex_wake(std::atomic<std::uint32_t>& word, int count = 1) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr,
            nullptr, 0);
}

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

using AddrList = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// One name lookup on a thread of its own. getaddrinfo has no timeout, and a resolver that never
// answers holds it for (timeout x attempts x servers) of resolv.conf; so the caller waits only
// until its deadline and then leaves. The thread finishes on its own and frees the result if
// nobody took it. Shared by the two through a shared_ptr.
struct Lookup {
  std::string host;
  std::string port;
  std::mutex mu;
  std::atomic<std::uint32_t> done{0};  // futex: 1 once `rc` and `result` are set
  bool abandoned = false;              // guarded by mu
  int rc = 0;                          // guarded by mu
  addrinfo* result = nullptr;          // guarded by mu
};

// Resolves `config.host` by `deadline`. Numeric addresses are parsed without any lookup.
// Throws `StoreFailure` (never sent).
AddrList resolve(const ConnectConfig& config, TimePoint deadline, const std::string& where) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  const std::string port = std::to_string(config.port);
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(config.host.c_str(), port.c_str(), &hints, &found);
  if (rc == 0) return AddrList(found, &freeaddrinfo);
  if (rc != EAI_NONAME) {
    throw StoreFailure(ErrorKind::kUnavailable, where + ": " + gai_strerror(rc), false);
  }
  auto lookup = std::make_shared<Lookup>();
  lookup->host = config.host;
  lookup->port = port;
  try {
    std::thread([lookup] {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_NUMERICSERV;
      addrinfo* result = nullptr;
      int rc = ::getaddrinfo(lookup->host.c_str(), lookup->port.c_str(), &hints, &result);
      {
        std::lock_guard<std::mutex> guard(lookup->mu);
        if (lookup->abandoned) {
          if (rc == 0) ::freeaddrinfo(result);
        } else {
          lookup->rc = rc;
          lookup->result = result;
        }
        lookup->done.store(1, std::memory_order_release);
      }
      futex_wake(lookup->done);
    }).detach();
  } catch (const std::system_error& e) {
    throw StoreFailure(ErrorKind::kUnavailable,
                       where + ": cannot start the name lookup: " + e.what(), false);
  }
  while (lookup->done.load(std::memory_order_acquire) == 0 && Clock::now() < deadline) {
    futex_wait(lookup->done, 0, deadline);
  }
  std::lock_guard<std::mutex> guard(lookup->mu);
  if (lookup->done.load(std::memory_order_relaxed) == 0) {
    lookup->abandoned = true;
    throw StoreFailure(ErrorKind::kTimeout,
                       where + ": resolving \"" + config.host + "\" timed out after " +
                           format_duration(config.connect_timeout),
                       false);
  }
  if (lookup->rc != 0) {
    throw StoreFailure(ErrorKind::kUnavailable,
                       where + ": resolving \"" + config.host + "\": " + gai_strerror(lookup->rc),
                       false);
  }
  return AddrList(std::exchange(lookup->result, nullptr), &freeaddrinfo);
}

// Connects to `host:port` by the deadline; returns a blocking socket, or for TLS a non-blocking
// one (OpenSSL's waits go through poll). Throws `StoreFailure`.
int connect_tcp(const ConnectConfig& config, TimePoint deadline, const std::string& where) {
  AddrList list = resolve(config, deadline, where);
  addrinfo* found = list.get();
  std::string last = "no address";
  ErrorKind last_kind = ErrorKind::kUnavailable;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    FdCloser sock{
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol)};
    if (sock.fd < 0) {
      last = errno_text(errno);
      continue;
    }
    if (::connect(sock.fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = errno_text(errno);
        continue;
      }
      pollfd p{sock.fd, POLLOUT, 0};
      int ready = 0;
      while (true) {
        auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) break;
        ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
        if (ready > 0 || (ready < 0 && errno != EINTR)) break;
      }
      if (ready <= 0) {
        last = "timed out after " + format_duration(config.connect_timeout);
        last_kind = ErrorKind::kTimeout;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last = errno_text(err);
        last_kind = ErrorKind::kUnavailable;
        continue;
      }
    }
    // With nothing listening on a loopback port inside the ephemeral range, the kernel can
    // pick that very port for our end and connect the socket to itself (TCP simultaneous
    // open). That is a refused connection, and it would keep the server from binding its port.
    sockaddr_storage self{};
    sockaddr_storage peer{};
    socklen_t self_len = sizeof self;
    socklen_t peer_len = sizeof peer;
    if (::getsockname(sock.fd, reinterpret_cast<sockaddr*>(&self), &self_len) == 0 &&
        ::getpeername(sock.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0 &&
        self_len == peer_len && std::memcmp(&self, &peer, self_len) == 0) {
      last = errno_text(ECONNREFUSED);
      last_kind = ErrorKind::kUnavailable;
      continue;
    }
    int one = 1;
    ::setsockopt(sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(sock.fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (!config.tls.enabled) {
      int flags = ::fcntl(sock.fd, F_GETFL);
      ::fcntl(sock.fd, F_SETFL, flags & ~O_NONBLOCK);
      timeval slice = slice_of(config.command_timeout);
      ::setsockopt(sock.fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof slice);
      ::setsockopt(sock.fd, SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof slice);
    }
    return sock.release();
  }
  throw StoreFailure(last_kind, where + ": " + last, false);
}

// Any policy but noeviction may evict a live lock under memory pressure (volatile-* ones pick
// among keys with a TTL, which every lock has), and the key is then free for the next caller.
// Without a memory limit nothing is evicted. A user who may not run INFO (NOPERM) or a server
// that renamed it cannot be checked: that is no reason to refuse the connection.
void check_eviction(Connection& conn, TimePoint deadline, const ConnectConfig& config,
                    const std::string& where) {
  std::string request;
  append_command(request, {"INFO", "memory"});
  Reply info;
  try {
    info = conn.call(request, deadline);
  } catch (const StoreFailure& f) {
    std::string why = f.kind() == ErrorKind::kTimeout
                          ? "timed out after " + format_duration(config.connect_timeout)
                          : std::string(f.what());
    throw StoreFailure(f.kind(), where + ": INFO memory: " + why, false);
  }
  if (info->type != REDIS_REPLY_STRING) return;  // an error reply: NOPERM, unknown command
  std::string_view text(info->str, info->len);
  auto field = [&](std::string_view name) -> std::string_view {
    std::size_t at = 0;
    while (at < text.size()) {
      std::size_t end = text.find('\n', at);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(at, end - at);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > name.size() && line.substr(0, name.size()) == name &&
          line[name.size()] == ':') {
        return line.substr(name.size() + 1);
      }
      at = end + 1;
    }
    return {};
  };
  std::string_view limit = field("maxmemory");
  std::string_view policy = field("maxmemory_policy");
  if (limit.empty() || policy.empty() || limit == "0" || policy == "noeviction") return;
  throw StoreFailure(ErrorKind::kUnsupported,
                     where + ": the server may evict locks (maxmemory-policy " +
                         std::string(policy) + " with maxmemory " + std::string(limit) +
                         " bytes); set maxmemory-policy noeviction, or allow_eviction=true to "
                         "accept that a lock may vanish before its TTL",
                     false);
}

}  // namespace

ErrorKind error_reply_kind(std::string_view text) noexcept {
  for (std::string_view auth : {"NOAUTH", "WRONGPASS", "NOPERM"}) {
    if (text.substr(0, auth.size()) == auth) return ErrorKind::kAuth;
  }
  if (text.find("invalid password") != std::string_view::npos) return ErrorKind::kAuth;
  for (std::string_view refused :
       {"LOADING", "BUSY", "READONLY", "OOM", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"}) {
    if (text.substr(0, refused.size()) == refused) return ErrorKind::kUnavailable;
  }
  return ErrorKind::kProtocol;
}

bool refused_before_running(std::string_view text) noexcept {
  if (error_reply_kind(text) != ErrorKind::kProtocol) return true;
  for (std::string_view refused : {"MOVED ", "ASK ", "CROSSSLOT"}) {
    if (text.substr(0, refused.size()) == refused) return true;
  }
  return false;
}

void append_array_header(std::string& out, std::size_t count) {
  out.push_back('*');
  append_decimal(out, count);
  out.append("\r\n");
}

void append_bulk(std::string& out, std::string_view arg) {
  append_bulk_impl(out, arg);
}

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  out.push_back('*');
  append_decimal(out, args.size());
  out.append("\r\n");
  for (std::string_view arg : args) append_bulk_impl(out, arg);
}

Connection::Connection(int fd, milliseconds command_timeout, TlsSession tls)
    : fd_(fd),
      command_timeout_(command_timeout),
      tls_(std::move(tls)),
      reader_(redisReaderCreate()) {
  if (!reader_) {
    ::close(fd_);
    throw std::bad_alloc();
  }
}

Connection::~Connection() {
  for (redisReply* r : parsed_) freeReplyObject(r);
  if (fd_ >= 0) ::close(fd_);
}

void Connection::abandon_after_fork() noexcept {
  // close(), not shutdown() and no QUIT: the socket stays intact for the parent.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  // Not SSL_shutdown (a close_notify would end the parent's session) and not SSL_free (a
  // parent thread may have been inside it at the fork).
  redis::abandon_after_fork(tls_.release());
}

ssize_t Connection::transmit(const char* data, std::size_t size, TlsFailure& failure) {
  if (!tls_) [[likely]]
    return ::send(fd_, data, size, MSG_NOSIGNAL);
  return tls_io(true, const_cast<char*>(data), size, false, failure);
}

ssize_t Connection::receive(char* buf, std::size_t size, bool dont_wait, TlsFailure& failure) {
  if (!tls_) [[likely]]
    return ::recv(fd_, buf, size, dont_wait ? MSG_DONTWAIT : 0);
  return tls_io(false, buf, size, dont_wait, failure);
}

ssize_t Connection::tls_io(bool write, char* buf, std::size_t size, bool dont_wait,
                           TlsFailure& failure) {
  // One slice at most, like the plain socket's SO_RCVTIMEO/SO_SNDTIMEO: the caller re-checks
  // its deadline and whether the connection broke.
  const TimePoint until =
      Clock::now() + std::clamp(command_timeout_ / 8, milliseconds(1), milliseconds(50));
  while (true) {
    std::size_t done = 0;
    TlsIo io;
    {
      std::lock_guard<std::mutex> guard(tls_mu_);
      io = write ? tls_write(tls_.get(), buf, size, done, failure)
                 : tls_read(tls_.get(), buf, size, done, failure);
    }
    switch (io) {
      case TlsIo::kDone:
        return static_cast<ssize_t>(done);
      case TlsIo::kClosed:
        if (write) {
          errno = EPIPE;
          return -1;
        }
        return 0;
      case TlsIo::kFailed:
        errno = EPROTO;
        return -1;
      case TlsIo::kWantRead:
      case TlsIo::kWantWrite:
        break;
    }
    if (dont_wait || Clock::now() >= until) {
      errno = EAGAIN;
      return -1;
    }
    pollfd p{fd_, static_cast<short>(io == TlsIo::kWantWrite ? POLLOUT : POLLIN), 0};
    auto left = std::chrono::ceil<milliseconds>(until - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 1))) == 0) {
      errno = EAGAIN;
      return -1;
    }
  }
}

std::shared_ptr<Connection> Connection::open(const ConnectConfig& config, ssl_ctx_st* tls) {
  const std::string where = "connect " + config.host + ":" + std::to_string(config.port);
  const TimePoint deadline = Clock::now() + config.connect_timeout;
  FdCloser fd{connect_tcp(config, deadline, where)};
  TlsSession session;
  if (config.tls.enabled) {
    session =
        tls_handshake(tls, fd.fd, config.host, config.tls, deadline, config.connect_timeout, where);
  }
  std::shared_ptr<Connection> conn(
      new Connection(fd.release(), config.command_timeout, std::move(session)));

  // The handshake runs through the ordinary request path, bounded by the connect deadline.
  auto step = [&](std::string_view what, std::initializer_list<std::string_view> args) {
    std::string request;
    append_command(request, args);
    Reply reply;
    try {
      reply = conn->call(request, deadline);
    } catch (const StoreFailure& f) {
      std::string why = f.kind() == ErrorKind::kTimeout
                            ? "timed out after " + format_duration(config.connect_timeout)
                            : std::string(f.what());
      throw StoreFailure(f.kind(), where + ": " + std::string(what) + ": " + why, false);
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string text(reply->str, reply->len);
      throw StoreFailure(error_reply_kind(text),
                         where + ": " + std::string(what) + " refused: " + text, false);
    }
    return reply;
  };
  if (config.password) {
    // The password goes to the server only; messages name the user, never the password.
    if (config.user.empty()) {
      step("AUTH", {"AUTH", *config.password});
    } else {
      step("AUTH as user \"" + config.user + "\"", {"AUTH", config.user, *config.password});
    }
  }
  if (config.db != 0) {
    std::string db = std::to_string(config.db);
    step("SELECT " + db, {"SELECT", db});
  }
  for (const std::string& script : config.scripts) {
    Reply sha = step("SCRIPT LOAD", {"SCRIPT", "LOAD", script});
    if (sha->type != REDIS_REPLY_STRING) {
      throw StoreFailure(ErrorKind::kProtocol, where + ": SCRIPT LOAD: unexpected reply", false);
    }
    conn->shas_.emplace_back(sha->str, sha->len);
  }
  if (!config.allow_eviction) check_eviction(*conn, deadline, config, where);
  return conn;
}

bool Connection::idle_peer_closed() noexcept {
  if (tls_) {
    // Records may be waiting that are not replies (a TLS 1.3 session ticket): only OpenSSL can
    // tell, and reading them now is safe (nobody else reads on an idle connection).
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char c;
    std::size_t done = 0;
    TlsFailure failure;
    std::lock_guard<std::mutex> guard(tls_mu_);
    return tls_read(tls_.get(), &c, 1, done, failure) != TlsIo::kWantRead;
  }
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  return true;  // EOF, or bytes nobody asked for: either way the stream is unusable
}

Reply Connection::call(std::string_view request, TimePoint deadline) {
  return call_after({}, request, deadline);
}

Reply Connection::call_after(std::string_view first, std::string_view request, TimePoint deadline) {
  Waiter head;  // `first`'s reply, if any
  Waiter me;
  bool reader = false;
  bool head_reader = false;  // the reader role came with `first`'s reply still to read
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (broken_.load(std::memory_order_relaxed)) {
      throw StoreFailure(broken_kind_, broken_message_, false);
    }
    // An idle connection may have been closed by a server restart while nobody used it; finding
    // out now keeps the request unsent, so the caller can retry on a fresh connection. Not
    // worth a system call when it was in use a moment ago.
    const TimePoint now = deadline - command_timeout_;
    if (pending_.empty() && !writing_ && !reading_ && now - last_used_ >= milliseconds(5) &&
        idle_peer_closed()) {
      fail_locked(ErrorKind::kUnavailable, "connection closed by the server");
      throw StoreFailure(broken_kind_, broken_message_, false);
    }
    last_used_ = now;
    if (!first.empty()) {
      // Queued together under the mutex: no other caller's request can come between them.
      head.offset = appended_;
      out_.append(first);
      appended_ += first.size();
      pending_.push_back(&head);
      head.queued = true;
      ++queued_requests_;
    }
    me.offset = appended_;
    out_.append(request);
    appended_ += request.size();
    pending_.push_back(&me);
    me.queued = true;
    ++queued_requests_;
    // While a reader waits for replies to requests already sent, it will send ours too as soon
    // as one arrives: requests of concurrent callers then leave in one batch (one syscall here,
    // one read on the server) instead of one send each.
    if (!writing_ && !(reading_ && sent_requests_ > answered_)) flush_locked(lock, deadline);
    // While we were sending, a reader may already have taken our reply off the queue (and
    // given up the role): then there is nothing left for us to read.
    if (!reading_ && me.queued) {
      reading_ = true;
      reader = true;
      head_reader = head.queued;
    }
  }
  if (!first.empty()) {
    // Wait for `first`'s reply (perhaps as the reader), then for ours. Reading for `head` ends
    // with the role released or handed on (possibly to `me`), so each is awaited the same way.
    if (head_reader) {
      read_loop(head, deadline);
      reader = false;
    }
    await(head, deadline);
    if (head.reply) freeReplyObject(head.reply);  // ASKING's +OK; an error shows in ours
  }
  if (reader) read_loop(me, deadline);
  await(me, deadline);
  if (me.failed) throw StoreFailure(me.kind, me.message, me.maybe_sent);
  return Reply(me.reply);
}

void Connection::await(Waiter& me, TimePoint deadline) {
  while (true) {
    std::uint32_t state = me.state.load(std::memory_order_acquire);
    if (state == Waiter::kDone) return;
    if (state == Waiter::kRead) {
      if (me.state.compare_exchange_strong(state, Waiter::kWaiting, std::memory_order_acq_rel)) {
        read_loop(me, deadline);
      }
      continue;
    }
    if (Clock::now() >= deadline) {
      std::unique_lock<std::mutex> lock(mu_);
      if (me.state.load(std::memory_order_acquire) != Waiter::kWaiting) continue;
      if (me.queued) {
        // Replies come in order: ours being late means the stream is stuck for everyone.
        fail_locked(ErrorKind::kTimeout, "no reply within " + format_duration(command_timeout_));
        continue;
      }
      // The reader already took our reply off the queue and is handing it over right now.
      lock.unlock();
      futex_wait(me.state, Waiter::kWaiting, Clock::now() + milliseconds(1));
      continue;
    }
    futex_wait(me.state, Waiter::kWaiting, deadline);
  }
}

void Connection::flush_locked(std::unique_lock<std::mutex>& lock, TimePoint deadline) {
  writing_ = true;
  while (!out_.empty() && !broken_.load(std::memory_order_relaxed)) {
    out_.swap(spare_);  // callers keep appending to out_ while this batch is sent
    write_high_ = appended_;
    sent_requests_ = queued_requests_;
    lock.unlock();
    const char* data = spare_.data();
    std::size_t left = spare_.size();
    ErrorKind kind = ErrorKind::kUnavailable;
    std::string error;
    TlsFailure tls_failure;
    while (left > 0) {
      ssize_t n = transmit(data, left, tls_failure);
      if (n > 0) {
        data += n;
        left -= static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (broken_.load(std::memory_order_acquire)) break;
        if (Clock::now() < deadline) continue;
        kind = ErrorKind::kTimeout;
        error = "send timed out after " + format_duration(command_timeout_);
        break;
      }
      if (tls_ && errno == EPROTO) {
        kind = tls_failure.kind;
        error = "send: " + tls_failure.message;
        break;
      }
      error = "send: " + errno_text(errno);
      break;
    }
    lock.lock();
    spare_.clear();
    if (!error.empty()) fail_locked(kind, error);
  }
  writing_ = false;
}

void Connection::read_loop(Waiter& me, TimePoint deadline) {
  char buf[16384];
  // Local, not a member: once the role is handed on, the next reader runs while we deliver.
  std::vector<std::pair<Waiter*, redisReply*>> ready;
  // Once our own reply is in, we keep delivering whatever has already arrived for the others
  // and hand the role on only when the socket would block: every hand-off costs a wake-up.
  bool mine = false;
  while (true) {
    ErrorKind kind = ErrorKind::kUnavailable;
    std::string error;
    bool would_block = false;
    TlsFailure tls_failure;
    while (true) {
      ssize_t n = receive(buf, sizeof buf, mine, tls_failure);
      if (n > 0) {
        if (redisReaderFeed(reader_.get(), buf, static_cast<std::size_t>(n)) != REDIS_OK) {
          kind = ErrorKind::kProtocol;
          error = std::string("bad reply: ") + reader_->errstr;
          break;
        }
        while (true) {
          void* reply = nullptr;
          if (redisReaderGetReply(reader_.get(), &reply) != REDIS_OK) {
            kind = ErrorKind::kProtocol;
            error = std::string("bad reply: ") + reader_->errstr;
            break;
          }
          if (reply == nullptr) break;
          parsed_.push_back(static_cast<redisReply*>(reply));
        }
        if (!parsed_.empty() || !error.empty()) break;
        continue;
      }
      if (n == 0) {
        error = "connection closed by the server";
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (mine) {
          would_block = true;
          break;
        }
        if (broken_.load(std::memory_order_acquire)) break;
        if (Clock::now() < deadline) continue;
        kind = ErrorKind::kTimeout;
        error = "no reply within " + format_duration(command_timeout_);
        break;
      }
      if (tls_ && errno == EPROTO) {
        kind = tls_failure.kind;
        error = "receive: " + tls_failure.message;
        break;
      }
      error = "receive: " + errno_text(errno);
      break;
    }

    Waiter* next_reader = nullptr;
    bool done = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (broken_.load(std::memory_order_relaxed) || !error.empty()) {
        for (redisReply* r : parsed_) freeReplyObject(r);
        parsed_.clear();
        reading_ = false;
        if (!error.empty()) fail_locked(kind, error);  // marks us done too, unless ours is in
        done = true;
      } else {
        for (redisReply* r : parsed_) {
          if (pending_.empty()) {
            freeReplyObject(r);
            error = "reply without a request";
            continue;
          }
          Waiter* w = pending_.front();
          pending_.pop_front();
          w->queued = false;
          ++answered_;
          if (w == &me) mine = true;
          ready.emplace_back(w, r);
        }
        parsed_.clear();
        // Requests that arrived while we waited were left for us to send in one batch.
        if (error.empty() && !out_.empty() && !writing_) flush_locked(lock, deadline);
        if (!error.empty() || broken_.load(std::memory_order_relaxed)) {
          reading_ = false;
          if (!error.empty()) fail_locked(ErrorKind::kProtocol, error);
          done = true;
        } else if (mine && pending_.empty()) {
          reading_ = false;
          done = true;
        } else if (mine && would_block) {
          // Hand the reader role to the oldest caller still waiting: its reply comes next.
          next_reader = pending_.front();
          next_reader->state.store(Waiter::kRead, std::memory_order_release);
          done = true;
        }
      }
    }
    // Outside the mutex: woken callers return without contending for it.
    for (auto [w, r] : ready) {
      w->reply = r;
      if (w == &me) continue;
      w->state.store(Waiter::kDone, std::memory_order_release);
      futex_wake(w->state);
    }
    ready.clear();
    if (next_reader) futex_wake(next_reader->state);
    if (mine && done) {
      me.state.store(Waiter::kDone, std::memory_order_release);
      return;
    }
    if (done || me.state.load(std::memory_order_acquire) == Waiter::kDone) return;
  }
}

void Connection::fail_locked(ErrorKind kind, const std::string& message) {
  if (broken_.load(std::memory_order_relaxed)) return;
  broken_kind_ = kind;
  broken_message_ = message;
  broken_.store(true, std::memory_order_release);
  ::shutdown(fd_, SHUT_RDWR);  // wakes a reader or writer blocked outside the mutex
  for (Waiter* w : pending_) {
    w->queued = false;
    w->failed = true;
    w->kind = kind;
    w->message = message;
    w->maybe_sent = w->offset < write_high_;
    w->state.store(Waiter::kDone, std::memory_order_release);
    futex_wake(w->state);
  }
  pending_.clear();
  out_.clear();
}

struct Pool::Slot {
  std::mutex mu;
  // Bumped whenever a connect attempt ends (after `connecting` was cleared under mu); waiters
  // sleep on it as a futex. Not a condition variable: a forked child may destroy slots that a
  // thread which does not exist in the child was waiting on, and pthread_cond_destroy would
  // wait for that thread forever.
  std::atomic<std::uint32_t> attempts{0};
  std::shared_ptr<Connection> conn;  // guarded by mu
  bool connecting = false;           // guarded by mu
  std::uint64_t failures = 0;        // guarded by mu
  // The last failed attempt, as plain strings: copies of one exception object would share
  // its reference-counted message across threads.
  ErrorKind failure_kind = ErrorKind::kUnavailable;  // guarded by mu
  std::string failure_message;                       // guarded by mu
};

// The slots of one process. A forked child retires its parent's generation (keeping it, unused,
// until the pool goes) and makes its own.
struct Pool::Generation {
  Generation(pid_t owner, std::size_t size, Generation* parent, TlsContext context)
      : pid(owner), tls(std::move(context)), retired(parent) {
    slots.reserve(size);
    for (std::size_t i = 0; i < size; ++i) slots.push_back(std::make_unique<Slot>());
  }
  ~Generation() { delete retired; }
  const pid_t pid;
  // This process's own TLS context (null for plain connections): a child does not share its
  // parent's, whose locks a parent thread may have held at the fork.
  TlsContext tls;
  std::vector<std::unique_ptr<Slot>> slots;
  Generation* retired;  // owned
};

TlsContext Pool::make_context() const {
  if (!config_.tls.enabled) return nullptr;
  return make_tls_context(config_.tls);
}

Pool::Pool(ConnectConfig config, std::size_t size)
    : config_(std::move(config)), size_(size), generation_(nullptr) {
  generation_.store(new Generation(::getpid(), size, nullptr, make_context()),
                    std::memory_order_release);
}

Pool::~Pool() {
  delete generation_.load(std::memory_order_acquire);
}

std::size_t Pool::pick() noexcept {
  return next_.fetch_add(1, std::memory_order_relaxed) % size_;
}

Pool::Generation& Pool::current() {
  Generation* gen = generation_.load(std::memory_order_acquire);
  // getpid() and not a pthread_atfork flag: it also catches children made without libc's fork
  // wrapper (clone, _Fork). One cheap system call next to a network round trip.
  const pid_t me = ::getpid();
  if (gen->pid == me) return *gen;
  // We are a forked child: every connection here is the parent's socket too. Whatever we send or
  // read on it would mix with the parent's stream, so each is closed without I/O and without its
  // locks (a parent thread that no longer exists may hold them), and we start over.
  TlsContext context;
  try {
    context = make_context();
  } catch (const std::exception& e) {
    throw StoreFailure(ErrorKind::kUnavailable,
                       std::string("TLS setup after fork failed: ") + e.what(), false);
  }
  auto fresh = std::make_unique<Generation>(me, size_, gen, std::move(context));
  if (!generation_.compare_exchange_strong(gen, fresh.get(), std::memory_order_acq_rel)) {
    fresh->retired = nullptr;
    return *gen;  // another thread of this process replaced it first
  }
  for (auto& slot : gen->slots) {
    if (slot->conn) slot->conn->abandon_after_fork();
  }
  redis::abandon_after_fork(gen->tls.release());
  return *fresh.release();
}

std::shared_ptr<Connection> Pool::get(std::size_t index) {
  Generation& gen = current();
  Slot& slot = *gen.slots[index];
  std::unique_lock<std::mutex> lock(slot.mu);
  const std::uint64_t seen = slot.failures;
  const TimePoint wait_until = Clock::now() + config_.connect_timeout + milliseconds(100);
  while (true) {
    if (slot.conn && !slot.conn->broken()) return slot.conn;
    if (slot.failures != seen) throw StoreFailure(slot.failure_kind, slot.failure_message, false);
    if (!slot.connecting) break;
    if (Clock::now() >= wait_until) {
      throw StoreFailure(ErrorKind::kTimeout,
                         "no connection within " + format_duration(config_.connect_timeout), false);
    }
    const std::uint32_t attempts = slot.attempts.load(std::memory_order_relaxed);
    lock.unlock();
    futex_wait(slot.attempts, attempts, wait_until);
    lock.lock();
  }
  slot.connecting = true;
  slot.conn.reset();  // the broken one goes when its last in-flight caller leaves
  lock.unlock();
  // Ends the attempt: wakes every caller waiting for it, outside the mutex.
  auto finish = [&slot] {
    slot.attempts.fetch_add(1, std::memory_order_release);
    futex_wake(slot.attempts, std::numeric_limits<int>::max());
  };
  std::shared_ptr<Connection> conn;
  try {
    // Outside the slot's mutex: others only wait, bounded.
    conn = Connection::open(config_, gen.tls.get());
  } catch (const StoreFailure& f) {
    lock.lock();
    slot.connecting = false;
    ++slot.failures;
    slot.failure_kind = f.kind();
    slot.failure_message = f.what();
    lock.unlock();
    finish();
    throw;
  } catch (...) {
    lock.lock();
    slot.connecting = false;
    lock.unlock();
    finish();
    throw;
  }
  lock.lock();
  slot.connecting = false;
  slot.conn = conn;
  lock.unlock();
  finish();
  return conn;
}

}  // namespace lockkit::detail::redis
