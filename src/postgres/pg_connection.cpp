// SPDX-License-Identifier: MIT
// One libpq connection driven non-blocking under deadlines; SQLSTATEs translated to error kinds.
#include "postgres/pg_connection.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "core/url.hpp"

namespace lockkit::detail::pg {
namespace {

enum class Wait { kReady, kTimeout, kError };

// Waits until `fd` is ready for `events` or `deadline` passes. poll(2), not select: fds > 1023.
Wait wait_socket(int fd, short events, Deadline deadline) {
  if (fd < 0) return Wait::kError;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Wait::kTimeout;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count() > 1'000'000 ? 1'000'000 : left.count()));
    if (n > 0) return Wait::kReady;  // POLLERR/POLLHUP too: libpq reports what happened
    if (n < 0 && errno != EINTR) return Wait::kError;
  }
}

// Finds the SQLSTATE in a verbose libpq message ("FATAL:  28P01: password authentication...").
std::string sqlstate_in(std::string_view message) {
  for (std::string_view severity : {"FATAL:", "ERROR:", "PANIC:"}) {
    std::size_t at = message.find(severity);
    if (at == std::string_view::npos) continue;
    std::string_view rest = message.substr(at + severity.size());
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.size() >= 6 && rest[5] == ':') {
      bool ok = true;
      for (int i = 0; i < 5; ++i) {
        char c = rest[i];
        ok = ok && ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'));
      }
      if (ok) return std::string(rest.substr(0, 5));
    }
  }
  return {};
}

}  // namespace

ErrorKind kind_of_sqlstate(std::string_view s) noexcept {
  if (s.size() != 5) return ErrorKind::kProtocol;
  std::string_view cls = s.substr(0, 2);
  if (cls == "28" || s == "42501") return ErrorKind::kAuth;  // credentials, privileges
  if (cls == "08" || cls == "53" || cls == "57") {
    if (s == "57014") return ErrorKind::kTimeout;  // statement_timeout or a cancel
    return ErrorKind::kUnavailable;  // connection, resources, shutdown, cannot connect now
  }
  if (s == "55P03") return ErrorKind::kTimeout;                      // lock_timeout
  if (s == "40001" || s == "40P01") return ErrorKind::kUnavailable;  // retry may succeed
  if (s == "3D000" || s == "25006") return ErrorKind::kUnavailable;  // no such db, read-only
  return ErrorKind::kProtocol;
}

std::string clean_message(const char* message) {
  std::string out = message ? message : "";
  std::size_t loc = out.find("\nLOCATION:");
  if (loc != std::string::npos) out.erase(loc);
  std::string flat;
  for (char c : out) {
    bool space = c == '\n' || c == '\t' || c == ' ';
    if (space && (flat.empty() || flat.back() == ' ')) continue;
    flat.push_back(space ? ' ' : c);
  }
  while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  out = std::move(flat);
  if (out.empty()) out = "unknown libpq error";
  return out;
}

Connection::Connection(PGconn* conn, Session session)
    : conn_(conn), session_(std::move(session)), owner_(::getpid()) {}

Connection::~Connection() {
  if (!conn_ || !inherited()) return;  // ours: PQfinish says goodbye (Terminate) and closes
  // Inherited across fork(): the socket is shared with the process that opened it, whose
  // requests are still on it. PQfinish would send Terminate (ending that process's session),
  // TLS would send close_notify. Point our copy of the descriptor at /dev/null first, so
  // whatever libpq writes goes nowhere and the close drops only our reference.
  int fd = PQsocket(conn_.get());
  if (fd < 0) return;
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  bool detached = null_fd >= 0 && ::dup3(null_fd, fd, O_CLOEXEC) == fd;
  if (null_fd >= 0) ::close(null_fd);
  // If the socket could not be detached, leak the handle rather than write to it.
  if (!detached) (void)conn_.release();
}

bool Connection::inherited() const noexcept {
  return owner_ != ::getpid();
}

std::unique_ptr<Connection> Connection::open(const ConnParams& params, const Session& session,
                                             Deadline deadline) {
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [k, v] : params) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back("fallback_application_name");
  values.push_back("lockkit");
  keys.push_back(nullptr);
  values.push_back(nullptr);
  std::unique_ptr<PGconn, ConnDeleter> conn(PQconnectStartParams(keys.data(), values.data(), 0));
  if (!conn) throw StoreFailure{ErrorKind::kUnavailable, "out of memory", false, true, {}};
  // Verbose: server errors then carry their SQLSTATE ("FATAL:  28P01: ..."), even at connect.
  PQsetErrorVerbosity(conn.get(), PQERRORS_VERBOSE);
  // The library never prints: libpq's default notice processor writes to stderr.
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  auto fail = [&](ErrorKind kind, std::string message) {
    throw StoreFailure{kind, std::move(message), false, true, {}};
  };
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
    // Option errors quote option values; ours never hold secrets (see parse_postgres_url), and
    // libpq's own messages name no password.
    fail(ErrorKind::kUnavailable, clean_message(PQerrorMessage(conn.get())));
  }
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (true) {
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) {
      std::string message = clean_message(PQerrorMessage(conn.get()));
      std::string state = sqlstate_in(message);
      ErrorKind kind = state.empty() ? ErrorKind::kUnavailable : kind_of_sqlstate(state);
      if (PQconnectionNeedsPassword(conn.get())) kind = ErrorKind::kAuth;
      if (kind == ErrorKind::kProtocol) kind = ErrorKind::kUnavailable;
      fail(kind, message);
    }
    short events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    Wait w = wait_socket(PQsocket(conn.get()), events, deadline);
    if (w == Wait::kTimeout) fail(ErrorKind::kTimeout, "timed out");
    if (w == Wait::kError) fail(ErrorKind::kUnavailable, "poll failed");
    st = PQconnectPoll(conn.get());
  }
  if (PQsetnonblocking(conn.get(), 1) != 0) {
    fail(ErrorKind::kUnavailable, clean_message(PQerrorMessage(conn.get())));
  }
  std::unique_ptr<Connection> out(new Connection(conn.release(), session));
  // Errors that arrive outside a query (the server going down) come as notices: note them.
  PQsetNoticeProcessor(out->conn_.get(), &Connection::on_notice, out.get());
  return out;
}

bool Connection::alive() noexcept {
  for (int round = 0; round < 4; ++round) {
    if (dead_ || PQstatus(conn_.get()) != CONNECTION_OK) return false;
    int fd = PQsocket(conn_.get());
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, 0);
    if (n == 0) return true;  // nothing arrived: an idle connection has nothing to say
    if (n < 0) return false;
    // Something arrived while idle: typically a FATAL before a shutdown (it reaches the notice
    // hook, which marks us dead), then EOF (PQconsumeInput fails) on a later round.
    if (PQconsumeInput(conn_.get()) == 0) return false;
  }
  return !dead_ && PQstatus(conn_.get()) == CONNECTION_OK;
}

void Connection::on_notice(void* self, const char* message) {
  std::string_view m = message ? message : "";
  if (m.rfind("FATAL:", 0) == 0 || m.rfind("PANIC:", 0) == 0 || m.rfind("ERROR:", 0) == 0) {
    static_cast<Connection*>(self)->dead_ = true;
  }
}

void Connection::fail_connection(ErrorKind kind, std::string_view what, bool maybe_applied) {
  std::string message(what);
  if (kind != ErrorKind::kTimeout) message += ": " + clean_message(PQerrorMessage(conn_.get()));
  throw StoreFailure{kind, std::move(message), maybe_applied, true, {}};
}

void Connection::prepare_statement(const Statement& stmt, Deadline deadline) {
  PGconn* c = conn_.get();
  const bool guarded = !session_.guard_sql.empty();
  if (!prepared_[stmt.id] || (guarded && !guard_prepared_)) {
    std::string name = "lockkit_" + std::to_string(stmt.id);
    bool statement = !prepared_[stmt.id];
    if (statement &&
        !PQsendPrepare(c, name.c_str(), stmt.sql->c_str(), stmt.param_count, stmt.param_types)) {
      fail_connection(ErrorKind::kUnavailable, "prepare", false);
    }
    if (statement) finish(deadline, false, false);  // nothing applied: a prepare changes no data
    prepared_[stmt.id] = true;
    if (guarded && !guard_prepared_) {
      if (!PQsendPrepare(c, "lockkit_guard", session_.guard_sql.c_str(), 0, nullptr)) {
        fail_connection(ErrorKind::kUnavailable, "prepare", false);
      }
      finish(deadline, false, false);
      guard_prepared_ = true;
    }
  }
}

ResultPtr Connection::exec(const Statement& stmt, const Params& params, bool prepare,
                           Deadline deadline) {
  PGconn* c = conn_.get();
  const bool guarded = !session_.guard_sql.empty();
  if (prepare) prepare_statement(stmt, deadline);
  // The guard and the statement go out together before one sync: one implicit transaction in
  // one round trip. The guard's settings are transaction-local (pooler-safe) and set before the
  // statement starts, so its statement_timeout and lock_timeout bound it and its commit waits
  // for the WAL flush, whatever the session, role or server default says.
  if (guarded) {
    if (!PQenterPipelineMode(c)) fail_connection(ErrorKind::kUnavailable, "pipeline", false);
    int ok = prepare ? PQsendQueryPrepared(c, "lockkit_guard", 0, nullptr, nullptr, nullptr, 1)
                     : PQsendQueryParams(c, session_.guard_sql.c_str(), 0, nullptr, nullptr,
                                         nullptr, nullptr, 1);
    if (!ok) fail_connection(ErrorKind::kUnavailable, "send", false);
  }
  int ok;
  if (prepare) {
    std::string name = "lockkit_" + std::to_string(stmt.id);
    ok = PQsendQueryPrepared(c, name.c_str(), params.count, params.values, params.lengths,
                             params.formats, 1);
  } else {
    ok = PQsendQueryParams(c, stmt.sql->c_str(), params.count, stmt.param_types, params.values,
                           params.lengths, params.formats, 1);
  }
  // A failed send never reached the server whole: the server runs nothing before Sync.
  if (!ok) fail_connection(ErrorKind::kUnavailable, "send", false);
  if (guarded && !PQpipelineSync(c)) fail_connection(ErrorKind::kUnavailable, "send", false);
  return finish(deadline, true, guarded);
}

ResultPtr Connection::exec_simple(const std::string& sql, Deadline deadline) {
  if (!PQsendQuery(conn_.get(), sql.c_str())) {
    fail_connection(ErrorKind::kUnavailable, "send", false);
  }
  return finish(deadline, true, false);
}

bool Connection::cancel(Deadline until) noexcept {
  // PQcancel blocks without a timeout (a new connection to the server, then a wait for it to
  // close), so it runs on its own thread; if the server does not take it in time the thread is
  // left to finish alone, and the statement counts as in doubt.
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool ok = false;
  };
  try {
    PGcancel* handle = PQgetCancel(conn_.get());
    if (!handle) return false;
    auto outcome = std::make_shared<Outcome>();
    try {
      std::thread([handle, outcome] {
        char error[256];
        bool ok = PQcancel(handle, error, sizeof error) == 1;
        PQfreeCancel(handle);
        {
          std::lock_guard<std::mutex> guard(outcome->mu);
          outcome->done = true;
          outcome->ok = ok;
        }
        outcome->cv.notify_all();
      }).detach();
    } catch (...) {
      PQfreeCancel(handle);
      return false;
    }
    std::unique_lock<std::mutex> lock(outcome->mu);
    outcome->cv.wait_until(lock, until, [&] { return outcome->done; });
    return outcome->done && outcome->ok;
  } catch (...) {
    return false;
  }
}

ResultPtr Connection::finish(Deadline deadline, bool sent, bool pipeline) {
  PGconn* c = conn_.get();
  while (true) {
    int f = PQflush(c);
    if (f == 0) break;
    if (f < 0) fail_connection(ErrorKind::kUnavailable, "send", sent);
    // Also read while writing: the server may answer (or complain) before taking it all.
    Wait w = wait_socket(PQsocket(c), POLLOUT | POLLIN, deadline);
    // Not all of it went out, so no Sync reached the server and nothing can commit: the
    // server rolls back once it sees the connection closed.
    if (w == Wait::kTimeout) fail_connection(ErrorKind::kTimeout, "send timed out", false);
    if (w == Wait::kError) fail_connection(ErrorKind::kUnavailable, "poll", sent);
    if (PQconsumeInput(c) == 0) fail_connection(ErrorKind::kUnavailable, "receive", sent);
  }
  ResultPtr keep;
  ResultPtr error;
  // Collects results until the request's end; returns false if `until` passed first.
  auto drain = [&](Deadline until) {
    int empty = 0;
    while (true) {
      while (PQisBusy(c)) {
        Wait w = wait_socket(PQsocket(c), POLLIN, until);
        if (w == Wait::kTimeout) return false;
        if (w == Wait::kError) fail_connection(ErrorKind::kUnavailable, "poll", sent);
        if (PQconsumeInput(c) == 0) fail_connection(ErrorKind::kUnavailable, "receive", sent);
      }
      ResultPtr r(PQgetResult(c));
      if (!r) {
        // Outside a pipeline, the end. In one, NULL ends each statement's results; the sync
        // result ends the request (two NULLs in a row: the connection broke).
        if (!pipeline || ++empty >= 2 || PQstatus(c) != CONNECTION_OK) return true;
        continue;
      }
      empty = 0;
      ExecStatusType st = PQresultStatus(r.get());
      if (st == PGRES_PIPELINE_SYNC) return true;
      if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        keep = std::move(r);  // the guard's, then the statement's: the last one is the answer
      } else if (st != PGRES_PIPELINE_ABORTED && !error) {
        error = std::move(r);
      }
    }
  };
  if (!drain(deadline)) {
    // The statement may still be running (waiting for a lock, say). Dropping the connection
    // would leave it to commit later, unseen, and its server process working on: ask the
    // server to cancel it and wait for the verdict. A statement_timeout in the guard ends it
    // on the server side as well. A prepare changes no data but may wait for a lock too.
    Deadline until = Clock::now() + session_.cancel_grace;
    bool verdict = cancel(until) && drain(until);
    if (!verdict) {
      fail_connection(ErrorKind::kTimeout, "no answer, and no confirmation of a cancel", sent);
    }
    // The connection is dropped all the same: the cancel signal may still be on its way to
    // the server process and would hit the next statement.
    if (error || !sent) {
      throw StoreFailure{ErrorKind::kTimeout, "no answer (statement cancelled)", false, true, {}};
    }
    throw StoreFailure{ErrorKind::kTimeout, "no answer until after the deadline", true, true, {}};
  }
  if (pipeline && PQpipelineStatus(c) != PQ_PIPELINE_OFF && PQstatus(c) == CONNECTION_OK &&
      !PQexitPipelineMode(c)) {
    fail_connection(ErrorKind::kProtocol, "pipeline", sent);
  }
  bool lost = PQstatus(c) != CONNECTION_OK;
  // A connection left inside a transaction block (a failed BEGIN...COMMIT string) is unusable.
  bool broken = lost || PQtransactionStatus(c) != PQTRANS_IDLE;
  if (error) {
    const char* state = PQresultErrorField(error.get(), PG_DIAG_SQLSTATE);
    std::string sqlstate = state ? state : "";
    ErrorKind kind = lost ? ErrorKind::kUnavailable : kind_of_sqlstate(sqlstate);
    // An ERROR rolled the statement back; a lost connection (FATAL) leaves it in doubt.
    throw StoreFailure{kind, clean_message(PQresultErrorMessage(error.get())), sent && lost, broken,
                       sqlstate};
  }
  if (broken) fail_connection(ErrorKind::kUnavailable, "connection lost", sent);
  if (!keep) throw StoreFailure{ErrorKind::kProtocol, "no result", false, true, {}};
  return keep;
}

void Connection::cancel_soon() noexcept {
  PGcancel* handle = PQgetCancel(conn_.get());
  if (!handle) return;
  try {
    // Detached, as in `cancel`: PQcancel has no timeout of its own, and a silent server would
    // hold whichever thread ran it.
    std::thread([handle] {
      char error[256];
      (void)PQcancel(handle, error, sizeof error);
      PQfreeCancel(handle);
    }).detach();
  } catch (...) {
    PQfreeCancel(handle);
  }
}

int Connection::socket() const noexcept {
  return PQsocket(conn_.get());
}

void Connection::start_pipeline(std::span<const Statement> stmts, bool prepare, Deadline deadline) {
  if (prepare) {
    for (const Statement& stmt : stmts) prepare_statement(stmt, deadline);
  }
  // Pipeline mode for good: requests follow each other without waiting for the previous
  // answer, each ended by its own sync (its own transaction), and their results come in order.
  if (!PQenterPipelineMode(conn_.get())) {
    fail_connection(ErrorKind::kUnavailable, "pipeline", false);
  }
}

void Connection::send(const Statement& stmt, const Params& params, bool prepare) {
  PGconn* c = conn_.get();
  if (!session_.guard_sql.empty()) {
    int ok = prepare ? PQsendQueryPrepared(c, "lockkit_guard", 0, nullptr, nullptr, nullptr, 1)
                     : PQsendQueryParams(c, session_.guard_sql.c_str(), 0, nullptr, nullptr,
                                         nullptr, nullptr, 1);
    if (!ok) fail_connection(ErrorKind::kUnavailable, "send", false);
  }
  int ok;
  if (prepare) {
    std::string name = "lockkit_" + std::to_string(stmt.id);
    ok = PQsendQueryPrepared(c, name.c_str(), params.count, params.values, params.lengths,
                             params.formats, 1);
  } else {
    ok = PQsendQueryParams(c, stmt.sql->c_str(), params.count, stmt.param_types, params.values,
                           params.lengths, params.formats, 1);
  }
  // Nothing runs on the server before the sync, and a failed send leaves the connection
  // unusable (a half-queued request): never sent, but broken.
  if (!ok || !PQpipelineSync(c)) fail_connection(ErrorKind::kUnavailable, "send", false);
}

bool Connection::flush() {
  int f = PQflush(conn_.get());
  if (f < 0) fail_connection(ErrorKind::kUnavailable, "send", true);
  return f == 0;
}

void Connection::consume() {
  if (PQconsumeInput(conn_.get()) == 0 || dead_) {
    fail_connection(ErrorKind::kUnavailable, "receive", true);
  }
}

bool Connection::take(ResultPtr& out) {
  PGconn* c = conn_.get();
  while (true) {
    if (PQstatus(c) != CONNECTION_OK) fail_connection(ErrorKind::kUnavailable, "receive", true);
    if (PQisBusy(c)) return false;
    ResultPtr r(PQgetResult(c));
    if (!r) {
      // NULL ends each statement's results; the sync result ends the request. More NULLs in a
      // row than statements in a request: libpq has nothing for us, the stream is out of step.
      if (++take_nulls_ > 2) {
        take_nulls_ = 0;
        fail_connection(ErrorKind::kProtocol, "pipeline out of step", true);
      }
      continue;
    }
    take_nulls_ = 0;
    ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_PIPELINE_SYNC) break;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      take_keep_ = std::move(r);  // the guard's, then the statement's: the last is the answer
    } else if (st != PGRES_PIPELINE_ABORTED && !take_error_) {
      take_error_ = std::move(r);
    }
  }
  ResultPtr keep = std::move(take_keep_);
  ResultPtr error = std::move(take_error_);
  if (error) {
    const char* state = PQresultErrorField(error.get(), PG_DIAG_SQLSTATE);
    std::string sqlstate = state ? state : "";
    // An ERROR rolled the request back and its sync ended it: the next request goes on.
    throw StoreFailure{kind_of_sqlstate(sqlstate), clean_message(PQresultErrorMessage(error.get())),
                       false, false, sqlstate};
  }
  if (!keep) throw StoreFailure{ErrorKind::kProtocol, "no result", false, true, {}};
  out = std::move(keep);
  return true;
}

}  // namespace lockkit::detail::pg
