// SPDX-License-Identifier: MIT
// Internal: one libpq connection driven non-blocking with deadlines, and the error translation.
#ifndef LOCKKIT_SRC_POSTGRES_PG_CONNECTION_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_CONNECTION_HPP_

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
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

 private:
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
};

// Returns libpq's message cleaned to one line (no LOCATION lines, no trailing newline).
std::string clean_message(const char* message);

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_CONNECTION_HPP_
