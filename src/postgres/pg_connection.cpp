// SPDX-License-Identifier: MIT
// One libpq connection driven non-blocking under deadlines; SQLSTATEs translated to error kinds.
#include "postgres/pg_connection.hpp"

#include <poll.h>

#include <cerrno>
#include <string>

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

std::unique_ptr<Connection> Connection::open(const std::string& conninfo, Deadline deadline) {
  // expand_dbname: `conninfo` may be a keyword/value string or a URI; later keywords only fill
  // in what it leaves out.
  const char* keys[] = {"dbname", "fallback_application_name", nullptr};
  const char* values[] = {conninfo.c_str(), "lockkit", nullptr};
  std::unique_ptr<PGconn, ConnDeleter> conn(PQconnectStartParams(keys, values, 1));
  if (!conn) throw CallError{ErrorKind::kUnavailable, "out of memory", false, true, {}};
  // Verbose: server errors then carry their SQLSTATE ("FATAL:  28P01: ..."), even at connect.
  PQsetErrorVerbosity(conn.get(), PQERRORS_VERBOSE);
  // The library never prints: libpq's default notice processor writes to stderr.
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  auto fail = [&](ErrorKind kind, std::string message) {
    throw CallError{kind, std::move(message), false, true, {}};
  };
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
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
  std::unique_ptr<Connection> out(new Connection(conn.release()));
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
  throw CallError{kind, std::move(message), maybe_applied, true, {}};
}

ResultPtr Connection::exec(const Statement& stmt, const Params& params, bool prepare,
                           Deadline deadline) {
  PGconn* c = conn_.get();
  if (prepare && !prepared_[stmt.id]) {
    std::string name = "lockkit_" + std::to_string(stmt.id);
    if (!PQsendPrepare(c, name.c_str(), stmt.sql->c_str(), stmt.param_count, stmt.param_types)) {
      fail_connection(ErrorKind::kUnavailable, "prepare", false);
    }
    finish(deadline, false);  // nothing applied either way: a prepare changes no data
    prepared_[stmt.id] = true;
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
  return finish(deadline, true);
}

ResultPtr Connection::exec_simple(const std::string& sql, Deadline deadline) {
  if (!PQsendQuery(conn_.get(), sql.c_str())) {
    fail_connection(ErrorKind::kUnavailable, "send", false);
  }
  return finish(deadline, true);
}

ResultPtr Connection::finish(Deadline deadline, bool sent) {
  PGconn* c = conn_.get();
  while (true) {
    int f = PQflush(c);
    if (f == 0) break;
    if (f < 0) fail_connection(ErrorKind::kUnavailable, "send", sent);
    // Also read while writing: the server may answer (or complain) before taking it all.
    Wait w = wait_socket(PQsocket(c), POLLOUT | POLLIN, deadline);
    if (w == Wait::kTimeout) fail_connection(ErrorKind::kTimeout, "send timed out", sent);
    if (w == Wait::kError) fail_connection(ErrorKind::kUnavailable, "poll", sent);
    if (PQconsumeInput(c) == 0) fail_connection(ErrorKind::kUnavailable, "receive", sent);
  }
  ResultPtr keep;
  ResultPtr error;
  while (true) {
    while (PQisBusy(c)) {
      Wait w = wait_socket(PQsocket(c), POLLIN, deadline);
      if (w == Wait::kTimeout) fail_connection(ErrorKind::kTimeout, "no answer", sent);
      if (w == Wait::kError) fail_connection(ErrorKind::kUnavailable, "poll", sent);
      if (PQconsumeInput(c) == 0) fail_connection(ErrorKind::kUnavailable, "receive", sent);
    }
    ResultPtr r(PQgetResult(c));
    if (!r) break;
    ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      keep = std::move(r);
    } else if (!error) {
      error = std::move(r);
    }
  }
  bool lost = PQstatus(c) != CONNECTION_OK;
  // A connection left inside a transaction block (a failed BEGIN...COMMIT string) is unusable.
  bool broken = lost || PQtransactionStatus(c) != PQTRANS_IDLE;
  if (error) {
    const char* state = PQresultErrorField(error.get(), PG_DIAG_SQLSTATE);
    std::string sqlstate = state ? state : "";
    ErrorKind kind = lost ? ErrorKind::kUnavailable : kind_of_sqlstate(sqlstate);
    // An ERROR rolled the statement back; a lost connection (FATAL) leaves it in doubt.
    throw CallError{kind, clean_message(PQresultErrorMessage(error.get())), sent && lost, broken,
                    sqlstate};
  }
  if (broken) fail_connection(ErrorKind::kUnavailable, "connection lost", sent);
  if (!keep) throw CallError{ErrorKind::kProtocol, "no result", false, true, {}};
  return keep;
}

}  // namespace lockkit::detail::pg
