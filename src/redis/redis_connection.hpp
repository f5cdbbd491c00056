// SPDX-License-Identifier: MIT
// Internal: pipelined Redis connections shared by many callers, and the pool that replaces them.
#ifndef LOCKKIT_SRC_REDIS_REDIS_CONNECTION_HPP_
#define LOCKKIT_SRC_REDIS_REDIS_CONNECTION_HPP_

#include <hiredis/hiredis.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/store_failure.hpp"
#include "lockkit/errors.hpp"
#include "redis/redis_tls.hpp"

namespace lockkit::detail::redis {

using TimePoint = std::chrono::steady_clock::time_point;

struct ReplyDeleter {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ReaderDeleter {
  void operator()(redisReader* reader) const noexcept { redisReaderFree(reader); }
};

// How to open a connection. `scripts` are loaded (SCRIPT LOAD) on every new connection.
struct ConnectConfig {
  std::string host;
  std::uint16_t port = 6379;
  std::string user;
  std::optional<std::string> password;
  unsigned db = 0;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
  std::vector<std::string> scripts;
  // False: refuse a server that may evict keys (a memory limit with a policy other than
  // noeviction), as far as INFO tells us.
  bool allow_eviction = false;
  TlsConfig tls;  // rediss://: enabled, with what to verify and present
};

// Returns the kind of a Redis error reply: NOAUTH, WRONGPASS, NOPERM -> auth; LOADING, BUSY,
// READONLY, OOM, TRYAGAIN, MASTERDOWN, CLUSTERDOWN -> unavailable (refused before running);
// anything else -> protocol.
ErrorKind error_reply_kind(std::string_view text) noexcept;

// Returns true if the error reply `text` says the server refused the command before running
// any of it: the kinds auth and unavailable above, and the cluster's redirections and key
// checks (MOVED, ASK, CROSSSLOT). Any other error may come from inside a script, after some of
// its writes.
bool refused_before_running(std::string_view text) noexcept;

// Append the parts of a RESP command: the array header for `count` arguments, one argument.
void append_array_header(std::string& out, std::size_t count);
void append_bulk(std::string& out, std::string_view arg);

// Appends one command in RESP (an array of bulk strings) to `out`.
void append_command(std::string& out, std::initializer_list<std::string_view> args);

// One TCP connection on which any number of callers pipeline requests. A caller appends its
// request to the output buffer; whoever finds no writer active writes everything queued in one
// send; whoever finds no reader active reads and hands each reply to the caller waiting for it
// (replies come in request order), then passes the reader role on when its own reply is in.
// Waiters sleep on a futex of their own and are woken outside the mutex, so a woken caller
// returns without touching the connection's lock. No thread of its own: a single caller costs
// one send and one receive, like a bare hiredis loop.
// Any error or missed deadline breaks the whole connection: every pending request fails and the
// pool replaces it.
// Thread safety: safe to share; calls may run concurrently.
class Connection {
 public:
  // Connects (over TLS made from `tls` when `config.tls.enabled`), authenticates, selects the
  // database and loads the scripts, all within `connect_timeout`. Throws `StoreFailure` (never
  // sent).
  static std::shared_ptr<Connection> open(const ConnectConfig& config, ssl_ctx_st* tls);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `request` (one RESP command) and returns its reply (possibly a Redis error reply).
  // `deadline` must be now + the command timeout. Throws `StoreFailure` if the connection
  // breaks or no reply arrives by `deadline`.
  Reply call(std::string_view request, TimePoint deadline);
  // Like `call`, but sends `first` (one RESP command, e.g. ASKING) immediately before `request`
  // with no other caller's request between them, and returns `request`'s reply only.
  Reply call_after(std::string_view first, std::string_view request, TimePoint deadline);

  bool broken() const noexcept { return broken_.load(std::memory_order_acquire); }
  // In a forked child: closes this process's copy of the socket without sending or receiving
  // anything (the parent still uses it) and without taking the mutex (a thread that does not
  // exist in the child may have held it); a TLS session is dropped untouched (no close_notify,
  // not even freed). The connection must not be used afterwards.
  void abandon_after_fork() noexcept;
  // Returns the SHA1 of `ConnectConfig::scripts[i]` as the server reported it.
  const std::string& script_sha(std::size_t i) const { return shas_[i]; }

 private:
  struct Waiter;

  Connection(int fd, std::chrono::milliseconds command_timeout, TlsSession tls);
  // Like send(2)/recv(2) on the plain socket (blocking for at most one slice, then -1 with
  // EAGAIN); over TLS the same through OpenSSL, with -1 and EPROTO for a TLS failure
  // described in `failure`.
  ssize_t transmit(const char* data, std::size_t size, TlsFailure& failure);
  ssize_t receive(char* buf, std::size_t size, bool dont_wait, TlsFailure& failure);
  ssize_t tls_io(bool write, char* buf, std::size_t size, bool dont_wait, TlsFailure& failure);
  void flush_locked(std::unique_lock<std::mutex>& lock, TimePoint deadline);
  void read_loop(Waiter& me, TimePoint deadline);
  void await(Waiter& me, TimePoint deadline);
  void fail_locked(ErrorKind kind, const std::string& message);
  bool idle_peer_closed() noexcept;

  int fd_;  // -1 once abandoned after a fork
  const std::chrono::milliseconds command_timeout_;
  // Over TLS: the session (null for plain connections) and the mutex that serialises the
  // reader's and the writer's calls into it; waits for the socket happen outside it.
  TlsSession tls_;
  std::mutex tls_mu_;
  std::vector<std::string> shas_;  // set before the connection is shared

  std::mutex mu_;
  std::string out_;                    // requests not yet handed to a writer; guarded by mu_
  std::string spare_;                  // the writer's batch; used only by the writer role
  std::deque<Waiter*> pending_;        // callers awaiting replies, in send order; guarded by mu_
  std::uint64_t appended_ = 0;         // bytes ever queued; guarded by mu_
  std::uint64_t write_high_ = 0;       // bytes handed to send() so far; guarded by mu_
  std::uint64_t queued_requests_ = 0;  // requests ever queued; guarded by mu_
  std::uint64_t sent_requests_ = 0;    // requests handed to send() so far; guarded by mu_
  std::uint64_t answered_ = 0;         // replies taken off the stream; guarded by mu_
  TimePoint last_used_{};              // when the last request was queued; guarded by mu_
  bool writing_ = false;               // guarded by mu_
  bool reading_ = false;  // a caller holds (or is being handed) the reader role; guarded by mu_
  std::atomic<bool> broken_{false};                     // written under mu_
  ErrorKind broken_kind_ = ErrorKind::kUnavailable;     // guarded by mu_
  std::string broken_message_;                          // guarded by mu_
  std::unique_ptr<redisReader, ReaderDeleter> reader_;  // used only by the reader role
  std::vector<redisReply*> parsed_;                     // used only by the reader role
};

// A fixed number of connection slots. A slot whose connection broke is reconnected by the next
// caller that picks it, outside every lock; callers arriving meanwhile wait for that attempt
// (bounded by the connect timeout) instead of starting their own.
// Fork-safe: the slots belong to the process that made them. The first call in a forked child
// (any process whose pid differs) sets up fresh slots and drops the inherited connections
// without a byte of I/O and without touching their locks; the parent keeps its own.
// Thread safety: safe to share; calls may run concurrently.
class Pool {
 public:
  Pool(ConnectConfig config, std::size_t size);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Returns the index of the slot the next call should use (round robin).
  std::size_t pick() noexcept;
  // Returns slot `index`'s connection, connecting it if needed. Throws `StoreFailure`.
  std::shared_ptr<Connection> get(std::size_t index);
  const ConnectConfig& config() const noexcept { return config_; }

 private:
  struct Slot;
  struct Generation;
  Generation& current();
  TlsContext make_context() const;

  const ConnectConfig config_;
  const std::size_t size_;
  std::atomic<Generation*> generation_;  // this process's slots; replaced once after a fork
  std::atomic<std::size_t> next_{0};
};

}  // namespace lockkit::detail::redis

#endif  // LOCKKIT_SRC_REDIS_REDIS_CONNECTION_HPP_
