// SPDX-License-Identifier: MIT
// Internal: one libpq connection driven non-blocking with deadlines, and the error translation.
#ifndef LOCKKIT_SRC_POSTGRES_PG_CONNECTION_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_CONNECTION_HPP_

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/store_failure.hpp"
#include "lockkit/errors.hpp"

namespace lockkit::detail::pg {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct ConnDeleter {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// Returns the kind a server error with `sqlstate` stands for.
ErrorKind kind_of_sqlstate(std::string_view sqlstate) noexcept;

// Up to this many statements are prepared per connection.
inline constexpr int kMaxStatements = 8;

// A statement in binary parameter/result format with up to 3 parameters.
struct Params {
  const char* values[3] = {nullptr, nullptr, nullptr};
  int lengths[3] = {0, 0, 0};
  int formats[3] = {0, 0, 0};
  int count = 0;
  // Binary values may hold any bytes; text values must be NUL-terminated (libpq reads them
  // up to the NUL). A null `data()` (an empty string_view) would mean SQL NULL: never pass it.
  void add(std::string_view value, bool binary) {
    values[count] = value.data() ? value.data() : "";
    lengths[count] = static_cast<int>(value.size());
    formats[count] = binary ? 1 : 0;
    ++count;
  }
};

struct Statement {
  int id;                  // 0..kMaxStatements-1, names the prepared statement
  const std::string* sql;  // with $1..$n
  int param_count;
  const Oid* param_types;
};

// Keyword/value pairs for `PQconnectStartParams`, in order (a later keyword overrides).
using ConnParams = std::vector<std::pair<std::string, std::string>>;

// What every statement on a connection runs under.
struct Session {
  // A statement sent with every call in the same implicit transaction, before the call's own
  // statement: `SELECT set_config(..., true)` for durability and server-side time bounds.
  // Empty: none.
  std::string guard_sql;
  // After a call's deadline, how long to wait for the server to confirm a cancel.
  std::chrono::milliseconds cancel_grace{1000};
};

// One connection. Throws `StoreFailure`; never blocks past the deadline it is given (plus
// `Session::cancel_grace` once a statement was sent and its deadline passed).
// Thread safety: one thread at a time (the pool hands it out exclusively).
class Connection {
 public:
  // Connects with `params` before `deadline`.
  static std::unique_ptr<Connection> open(const ConnParams& params, const Session& session,
                                          Deadline deadline);
  // Closes the connection; one inherited across fork() is closed without a word to the server.
  ~Connection();

  // Returns true if this process did not open the connection (it was inherited across fork()):
  // its socket is shared with the process that did, so it must never be used here.
  bool inherited() const noexcept;

  // Returns false if an idle connection has been closed by the server (restart, termination):
  // checks without blocking whether anything arrived while it sat in the pool.
  bool alive() noexcept;

  // Runs `stmt` with `params` before `deadline`, prepared (parsed once per connection) or
  // unnamed, after the session's guard statement in the same transaction; asks for binary
  // results. Returns a PGRES_TUPLES_OK or PGRES_COMMAND_OK result. If the deadline passes, asks
  // the server to cancel and waits up to `cancel_grace` for it to say how the statement ended.
  ResultPtr exec(const Statement& stmt, const Params& params, bool prepare, Deadline deadline);
  // Runs a simple-protocol query string (may hold several statements) before `deadline`;
  // returns the last result.
  ResultPtr exec_simple(const std::string& sql, Deadline deadline);

  // Non-blocking use, for a caller that waits for the socket itself (AsyncLockApi's native
  // path): `start_pipeline` once, then `send` requests (many may be in flight), `flush` when
  // the socket is writable, `consume` when it is readable, and `take` each request's outcome in
  // the order sent. A connection used this way is never handed to `exec` again.

  // Returns the socket libpq talks on, or -1.
  int socket() const noexcept;
  // Prepares `stmts` (if `prepare`) and the guard before `deadline`, blocking, then enters
  // pipeline mode for good. Throws `StoreFailure`.
  void start_pipeline(std::span<const Statement> stmts, bool prepare, Deadline deadline);
  // Queues the guard and `stmt` with `params` before one sync: one implicit transaction, as
  // `exec` runs it. Writes nothing yet (unless libpq's buffer is full). Throws `StoreFailure`
  // (broken) if the connection cannot take it; the request was then not sent.
  void send(const Statement& stmt, const Params& params, bool prepare);
  // Writes what the socket takes now. Returns true once nothing is left to write. Throws
  // `StoreFailure` (broken) if the connection failed.
  bool flush();
  // Reads what has arrived, without blocking. Throws `StoreFailure` (broken) if the connection
  // failed or the server closed it.
  void consume();
  // Returns false if the oldest request's outcome has not fully arrived. Otherwise sets `out`
  // to its PGRES_TUPLES_OK or PGRES_COMMAND_OK result and returns true, or throws
  // `StoreFailure`: not broken for an error of that request alone (the next request's outcome
  // follows), broken if the connection failed (every request on it is lost).
  bool take(ResultPtr& out);
  // Asks the server to cancel the statement running on this connection, without waiting: the
  // cancel request (a connection of its own, which blocks) goes out on a thread of its own.
  void cancel_soon() noexcept;

 private:
  // Parses `stmt` (and the guard) on this connection if not done yet, blocking until `deadline`.
  void prepare_statement(const Statement& stmt, Deadline deadline);
  Connection(PGconn* conn, Session session);
  // Flushes the request and collects every result before `deadline`. `pipeline`: the request
  // is a pipeline ended by a sync.
  ResultPtr finish(Deadline deadline, bool sent, bool pipeline);
  // Sends a cancel request for the running statement; waits for its delivery until `until`.
  bool cancel(Deadline until) noexcept;
  static void on_notice(void* self, const char* message);
  [[noreturn]] void fail_connection(ErrorKind kind, std::string_view what, bool maybe_applied);

  std::unique_ptr<PGconn, ConnDeleter> conn_;
  const Session session_;
  const pid_t owner_;  // the process that opened the connection
  bool prepared_[kMaxStatements] = {};
  bool guard_prepared_ = false;
  bool dead_ = false;  // the server sent an error outside a query (e.g. shutting down)
  // The outcome of the oldest request in `take`, as far as it has arrived.
  ResultPtr take_keep_;
  ResultPtr take_error_;
  int take_nulls_ = 0;
};

// Returns libpq's message cleaned to one line (no LOCATION lines, no trailing newline).
std::string clean_message(const char* message);

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_CONNECTION_HPP_
