// SPDX-License-Identifier: MIT
// The postgres:// backend's `LeaseStore`: the lease table over a connection pool.
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/escape.hpp"
#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/postgres.hpp"
#include "postgres/pg_connection.hpp"
#include "postgres/pg_native.hpp"
#include "postgres/pg_pool.hpp"
#include "postgres/pg_resolve.hpp"
#include "postgres/pg_sql.hpp"

namespace lockkit {

using detail::StoreFailure;
using detail::pg::Clock;
using detail::pg::Connection;
using detail::pg::ConnParams;
using detail::pg::Deadline;
using detail::pg::Params;
using detail::pg::Pool;
using detail::pg::ResultPtr;
using detail::pg::Session;
using detail::pg::Statement;

namespace {

constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;
constexpr Oid kAcquireTypes[] = {kByteaOid, kTextOid, kInt8Oid};
constexpr Oid kKeyTokenTypes[] = {kByteaOid, kTextOid};
constexpr Oid kKeyTypes[] = {kByteaOid, kByteaOid};
constexpr Oid kTextArrayOid = 1009;
constexpr Oid kInt8ArrayOid = 1016;
constexpr Oid kExtendManyTypes[] = {kTextArrayOid, kTextArrayOid, kInt8ArrayOid};

enum StatementId { kAcquire, kRelease, kExtend, kStatus, kList, kExtendMany };
static_assert(kAcquire == static_cast<int>(detail::pg::NativeOp::kAcquire) &&
              kRelease == static_cast<int>(detail::pg::NativeOp::kRelease) &&
              kExtend == static_cast<int>(detail::pg::NativeOp::kExtend));

// Renewals per statement: one round trip and one commit each; a statement of this size still
// runs in a few milliseconds, far inside any command timeout.
constexpr std::size_t kExtendChunk = 1000;

constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(1);

// Connections AsyncLockApi's native path keeps (never more than `connections`), each with
// many requests in flight: a few server sessions carry any number of pending acquires.
constexpr std::size_t kNativeConnections = 8;

std::int64_t read_int8(const PGresult* r, int row, int col) {
  if (PQgetlength(r, row, col) != 8) throw StoreFailure(ErrorKind::kProtocol, "bad int8");
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return static_cast<std::int64_t>(v);
}

bool read_bool(const PGresult* r, int row, int col) {
  return PQgetlength(r, row, col) == 1 && PQgetvalue(r, row, col)[0] != 0;
}

struct ConninfoDeleter {
  void operator()(PQconninfoOption* o) const noexcept { PQconninfoFree(o); }
};
using ConninfoPtr = std::unique_ptr<PQconninfoOption, ConninfoDeleter>;

// Parses `conninfo` like libpq will; throws `std::invalid_argument` for what libpq rejects.
ConninfoPtr parse_conninfo(const std::string& conninfo) {
  char* error = nullptr;
  ConninfoPtr opts(PQconninfoParse(conninfo.c_str(), &error));
  if (!opts) {
    // libpq's message quotes the text it choked on, which may be a password: never pass it on.
    PQfreemem(error);
    throw std::invalid_argument(
        "conninfo: libpq cannot parse it (expected keyword='value' pairs or a postgresql:// "
        "URI; quote values with \\ and ' escaped)");
  }
  return opts;
}

// Returns "host:port/dbname" for messages (never user or password).
std::string describe_target(const PQconninfoOption* opts) {
  std::string host, hostaddr, port, dbname, user;
  for (const auto* o = opts; o->keyword; ++o) {
    std::string_view k = o->keyword;
    std::string v = o->val ? o->val : "";
    if (k == "host")
      host = v;
    else if (k == "hostaddr")
      hostaddr = v;
    else if (k == "port")
      port = v;
    else if (k == "dbname")
      dbname = v;
  }
  if (host.empty()) host = hostaddr;
  if (host.empty()) host = "localhost";
  return host + ":" + (port.empty() ? "5432" : port) + (dbname.empty() ? "" : "/" + dbname);
}

// Returns false for a token no acquisition can have made: empty, too long, or holding bytes
// other than printable ASCII (ours are 32 hex characters).
bool plausible_token(std::string_view token) {
  if (token.empty() || token.size() > 256) return false;
  return std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Returns the keywords `opts` sets, in libpq's order.
ConnParams explicit_params(const PQconninfoOption* opts) {
  ConnParams out;
  for (const auto* o = opts; o->keyword; ++o) {
    if (o->val) out.emplace_back(o->keyword, o->val);
  }
  return out;
}

bool valid_synchronous_commit(std::string_view v) {
  return v == "on" || v == "off" || v == "local" || v == "remote_write" || v == "remote_apply";
}

// The statement sent before each of ours in the same transaction. Transaction-local settings
// (set_config(..., true)) outrank the server, database and role defaults and the session's own
// settings, and vanish at commit, so nothing leaks to a pooler's other clients. statement_timeout
// and lock_timeout end a statement on the server at the call's deadline even if the client's
// cancel never arrives; synchronous_commit makes COMMIT wait for the WAL flush.
std::string guard_sql(const PostgresOptions& o) {
  std::string ms = std::to_string(o.command_timeout.count());
  return "SELECT set_config('statement_timeout', '" + ms +
         "', true), set_config('lock_timeout', '" + ms +
         "', true), set_config('synchronous_commit', '" + o.synchronous_commit + "', true)";
}

using detail::pg::NativeOp;

// A connection of AsyncLockApi's native path: the store's statements, sent in pipeline mode;
// answers read in the order sent.
// Thread safety: one thread at a time (the native client's strand).
class PostgresNativeConnection final : public detail::pg::NativeConnection {
 public:
  PostgresNativeConnection(std::unique_ptr<Connection> conn, const Statement* statements,
                           bool prepare)
      : conn_(std::move(conn)), statements_(statements), prepare_(prepare) {}

  int socket() const noexcept override { return conn_->socket(); }
  bool inherited() const noexcept override { return conn_->inherited(); }

  void send(NativeOp op, std::string_view key, std::string_view token,
            std::chrono::milliseconds ttl) override {
    const std::string token_text(token);  // NUL-terminated for libpq
    const std::string ttl_ms = std::to_string(ttl.count());
    Params params;
    params.add(key, true);
    params.add(token_text, false);
    if (op != NativeOp::kRelease) params.add(ttl_ms, false);
    conn_->send(statements_[static_cast<int>(op)], params, prepare_);
    ops_.push_back(op);
  }

  bool flush() override { return conn_->flush(); }
  void consume() override { conn_->consume(); }
  void cancel() noexcept override { conn_->cancel_soon(); }

  bool next(detail::pg::NativeReply& reply) override {
    if (ops_.empty()) return false;
    ResultPtr r;
    try {
      if (!conn_->take(r)) return false;
    } catch (const StoreFailure&) {
      ops_.pop_front();
      throw;
    }
    const NativeOp op = ops_.front();
    ops_.pop_front();
    const int rows = PQntuples(r.get());
    reply = {};
    switch (op) {
      case NativeOp::kAcquire:
        reply.ok = rows > 0;
        if (reply.ok) reply.fence = static_cast<std::uint64_t>(read_int8(r.get(), 0, 0));
        break;
      case NativeOp::kRelease:
        reply.ok = rows == 1 && read_bool(r.get(), 0, 0);
        break;
      case NativeOp::kExtend:
        reply.ok = rows == 1;
        break;
    }
    return true;
  }

 private:
  const std::unique_ptr<Connection> conn_;
  const Statement* const statements_;  // the store's, indexed by NativeOp
  const bool prepare_;
  std::deque<NativeOp> ops_;  // sent, not answered yet, oldest first
};

// The lease table `<schema>.leases` over a bounded pool of libpq connections. Validates its
// options on construction and connects on first use.
// Thread safety: safe to share; calls may run concurrently.
class PostgresStore final : public LeaseStore, public detail::pg::NativeAsyncSource {
 public:
  explicit PostgresStore(PostgresOptions options)
      : options_(std::move(options)),
        target_(validate(options_)),
        sql_(detail::pg::make_sql(options_.schema)),
        statements_{Statement{kAcquire, &sql_.acquire, 3, kAcquireTypes},
                    Statement{kRelease, &sql_.release, 2, kKeyTokenTypes},
                    Statement{kExtend, &sql_.extend, 3, kAcquireTypes},
                    Statement{kStatus, &sql_.status, 1, kKeyTypes},
                    Statement{kList, &sql_.list, 2, kKeyTypes},
                    Statement{kExtendMany, &sql_.extend_many, 3, kExtendManyTypes}},
        params_(explicit_params(parse_conninfo(options_.conninfo).get())),
        session_{guard_sql(options_),
                 std::min(options_.command_timeout, std::chrono::milliseconds(1000))},
        pool_(options_.connections, [this] { return connect(); }) {}

  std::string_view backend() const noexcept override { return "postgres"; }

  // The server's clock decides expiry; ours may run up to 1% fast, and the request's way there
  // takes a moment the lease already counts.
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return ttl / 100 + std::chrono::milliseconds(2);
  }

  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override {
    const std::string token_text(token);  // NUL-terminated for libpq
    const std::string ttl_ms = std::to_string(ttl.count());
    Params params;
    params.add(key, true);
    params.add(token_text, false);
    params.add(ttl_ms, false);
    ResultPtr r;
    try {
      r = run(kAcquire, params);
    } catch (const StoreFailure& e) {
      if (!e.maybe_applied()) raise("try_acquire", key, e);
      // No retry and no cleanup here: the grant may have been applied, and the core releases
      // it with this same token before it reports kInDoubt.
      throw BackendError("postgres", ErrorKind::kInDoubt,
                         "try_acquire \"" + detail::escape_key(key) +
                             "\": answer lost, the lease may have been granted (" + describe(e) +
                             ")");
    }
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return static_cast<std::uint64_t>(
        checked([&] { return read_int8(r.get(), 0, 0); }, "try_acquire", key));
  }

  bool release(std::string_view key, std::string_view token) override {
    if (!plausible_token(token)) return false;  // owns nothing; nor would it bind as text
    const std::string token_text(token);        // NUL-terminated for libpq
    Params params;
    params.add(key, true);
    params.add(token_text, false);
    ResultPtr r = run_or_raise("release", key, kRelease, params);
    return PQntuples(r.get()) == 1 && read_bool(r.get(), 0, 0);
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    if (!plausible_token(token)) return false;
    const std::string token_text(token);
    const std::string ttl_ms = std::to_string(ttl.count());
    Params params;
    params.add(key, true);
    params.add(token_text, false);
    params.add(ttl_ms, false);
    ResultPtr r = run_or_raise("extend", key, kExtend, params);
    return PQntuples(r.get()) == 1;
  }

  // One statement per round (per `kExtendChunk` renewals): one round trip and one commit.
  void extend_many(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out) override {
    const std::size_t n = std::min(requests.size(), out.size());
    for (std::size_t begin = 0; begin < n; begin += kExtendChunk) {
      const std::size_t end = std::min(n, begin + kExtendChunk);
      try {
        extend_chunk(requests, out, begin, end);
      } catch (const BackendError&) {
        if (begin == 0) throw;  // nothing done yet: the round failed as a whole
        // The store is failing: the rest would only wait out the same timeouts.
        std::fill(out.begin() + static_cast<std::ptrdiff_t>(begin),
                  out.begin() + static_cast<std::ptrdiff_t>(n), ExtendOutcome::kFailed);
        return;
      }
    }
  }

  std::optional<LockInfo> status(std::string_view key) override {
    Params params;
    params.add(key, true);
    ResultPtr r = run_or_raise("status", key, kStatus, params);
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return checked(
        [&] {
          return LockInfo{
              std::string(key), static_cast<std::uint64_t>(read_int8(r.get(), 0, 0)),
              std::chrono::milliseconds(std::max<std::int64_t>(1, read_int8(r.get(), 0, 1)))};
        },
        "status", key);
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    if (prefix.size() > kMaxKeyBytes) return {};  // no key is that long
    // Keys starting with `prefix` are [prefix, prefix with its last non-0xff byte incremented).
    std::string upper(prefix);
    while (!upper.empty() && static_cast<unsigned char>(upper.back()) == 0xff) upper.pop_back();
    if (!upper.empty())
      upper.back() = static_cast<char>(static_cast<unsigned char>(upper.back()) + 1);
    Params params;
    params.add(prefix, true);
    params.add(upper, true);
    if (upper.empty()) params.values[1] = nullptr;  // NULL: no upper bound
    ResultPtr r = run_or_raise("list", prefix, kList, params);
    std::vector<LockInfo> out;
    int n = PQntuples(r.get());
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      out.push_back(checked(
          [&] {
            return LockInfo{
                std::string(PQgetvalue(r.get(), i, 0),
                            static_cast<std::size_t>(PQgetlength(r.get(), i, 0))),
                static_cast<std::uint64_t>(read_int8(r.get(), i, 1)),
                std::chrono::milliseconds(std::max<std::int64_t>(1, read_int8(r.get(), i, 2)))};
          },
          "list", prefix));
    }
    return out;
  }

  detail::pg::NativeConfig native_config() const noexcept override {
    return {options_.connect_timeout, options_.command_timeout,
            std::min(options_.connections, kNativeConnections), session_.cancel_grace};
  }

  std::unique_ptr<detail::pg::NativeConnection> native_connect() override {
    std::unique_ptr<Connection> conn = connect();
    const Deadline deadline = Clock::now() + options_.command_timeout;
    if (!schema_ready_.load(std::memory_order_acquire)) ensure_schema(*conn, deadline);
    // Acquire, release and extend: the first three statements, numbered as NativeOp.
    conn->start_pipeline(std::span<const Statement>(statements_, 3), options_.prepare, deadline);
    return std::make_unique<PostgresNativeConnection>(std::move(conn), statements_,
                                                      options_.prepare);
  }

  BackendError native_error(NativeOp op, std::string_view key,
                            const StoreFailure& e) const override {
    if (e.server_code() == "42P01" || e.server_code() == "3F000") {
      schema_ready_.store(false, std::memory_order_release);  // the next connection makes it
    }
    if (op == NativeOp::kAcquire && e.maybe_applied()) {
      return BackendError("postgres", ErrorKind::kInDoubt,
                          "try_acquire \"" + detail::escape_key(key) +
                              "\": answer lost, the lease may have been granted (" + describe(e) +
                              ")");
    }
    const char* name = op == NativeOp::kAcquire   ? "try_acquire"
                       : op == NativeOp::kRelease ? "release"
                                                  : "extend";
    return BackendError("postgres", e.kind(),
                        std::string(name) + " \"" + detail::escape_key(key) + "\": " + describe(e));
  }

 private:
  static std::string validate(const PostgresOptions& o) {
    if (!detail::pg::valid_schema_name(o.schema)) {
      throw std::invalid_argument(
          "schema: must be 1..63 characters of [A-Za-z0-9_] not starting with a digit, got \"" +
          detail::escape_key(o.schema) + "\"");
    }
    auto check_timeout = [](std::string_view name, std::chrono::milliseconds t) {
      if (t < std::chrono::milliseconds(1) || t > kMaxTimeout) {
        throw std::invalid_argument(std::string(name) + ": must be 1ms..1h, got " +
                                    format_duration(t));
      }
    };
    check_timeout("connect_timeout", o.connect_timeout);
    check_timeout("command_timeout", o.command_timeout);
    if (!valid_synchronous_commit(o.synchronous_commit)) {
      throw std::invalid_argument(
          "synchronous_commit: must be on, remote_apply, remote_write, local or off, got \"" +
          detail::escape_key(o.synchronous_commit) + "\"");
    }
    if (o.connections < 1 || o.connections > 1024) {
      throw std::invalid_argument("connections: must be 1..1024, got " +
                                  std::to_string(o.connections));
    }
    return describe_target(parse_conninfo(o.conninfo).get());
  }

  std::unique_ptr<Connection> connect() {
    try {
      // The resolver shares the connect deadline: libpq's own lookup would ignore it.
      const Deadline deadline = Clock::now() + options_.connect_timeout;
      return Connection::open(detail::pg::with_resolved_hosts(params_, deadline), session_,
                              deadline);
    } catch (const StoreFailure& e) {
      std::string message = e.what();
      if (message.rfind("resolve ", 0) == 0) {
        message =
            "connect " + target_ + ": " + message +
            (e.kind() == ErrorKind::kTimeout ? " after " + format_duration(options_.connect_timeout)
                                             : "");
      } else if (e.kind() == ErrorKind::kTimeout) {
        message =
            "connect " + target_ + " timed out after " + format_duration(options_.connect_timeout);
      } else {
        message = "connect " + target_ + ": " + message;
      }
      throw StoreFailure(e.kind(), message, e.maybe_applied(), e.broken(), e.server_code());
    }
  }

  template <class F>
  auto checked(F f, std::string_view op, std::string_view key) -> decltype(f()) {
    try {
      return f();
    } catch (const StoreFailure& e) {
      raise(op, key, e);
    }
  }

  // Returns `e`'s message with where it happened and which budget ran out.
  std::string describe(const StoreFailure& e) const {
    const std::string message = e.what();
    bool own_context = message.rfind("connect ", 0) == 0;  // names target and timeout itself
    if (e.kind() == ErrorKind::kTimeout && message.rfind("all ", 0) == 0) {
      return message + " for " + format_duration(options_.command_timeout);
    }
    // Our own deadline (no SQLSTATE), not the server's statement_timeout or lock_timeout.
    if (e.kind() == ErrorKind::kTimeout && !own_context && e.server_code().empty()) {
      return message + " from " + target_ + " within " + format_duration(options_.command_timeout);
    }
    return own_context ? message : message + " (" + target_ + ")";
  }

  // Renews `requests[begin, end)` in one statement and sets their outcomes. Throws
  // `BackendError` if the statement failed.
  void extend_chunk(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out,
                    std::size_t begin, std::size_t end) {
    static constexpr char kHex[] = "0123456789abcdef";
    // Array literals in text form: keys as hex (no quoting needed), tokens quoted.
    std::string keys = "{", tokens = "{", ttls = "{";
    std::vector<std::size_t> sent;
    for (std::size_t i = begin; i < end; ++i) {
      const ExtendRequest& r = requests[i];
      out[i] = ExtendOutcome::kNotOurs;
      if (!plausible_token(r.token)) continue;  // owns nothing, as `extend` says
      if (!sent.empty()) {
        keys += ',';
        tokens += ',';
        ttls += ',';
      }
      for (unsigned char c : r.key) {
        keys += kHex[c >> 4];
        keys += kHex[c & 15];
      }
      tokens += '"';
      for (char c : r.token) {
        if (c == '"' || c == '\\') tokens += '\\';
        tokens += c;
      }
      tokens += '"';
      ttls += std::to_string(r.ttl.count());
      sent.push_back(i);
    }
    if (sent.empty()) return;
    keys += '}';
    tokens += '}';
    ttls += '}';
    Params params;
    params.add(keys, false);
    params.add(tokens, false);
    params.add(ttls, false);
    ResultPtr r;
    try {
      r = run(kExtendMany, params);
    } catch (const StoreFailure& e) {
      throw BackendError(
          "postgres", e.kind(),
          "extend " + std::to_string(sent.size()) + " leases in one statement: " + describe(e));
    }
    const int rows = PQntuples(r.get());
    for (int row = 0; row < rows; ++row) {
      const std::int64_t at =
          checked([&] { return read_int8(r.get(), row, 0); }, "extend", requests[sent[0]].key);
      if (at < 1 || static_cast<std::size_t>(at) > sent.size()) {
        throw BackendError("postgres", ErrorKind::kProtocol,
                           "extend " + std::to_string(sent.size()) +
                               " leases in one statement: position out of range");
      }
      out[sent[static_cast<std::size_t>(at - 1)]] = ExtendOutcome::kExtended;
    }
  }

  [[noreturn]] void raise(std::string_view op, std::string_view key, const StoreFailure& e) const {
    throw BackendError("postgres", e.kind(),
                       std::string(op) + " \"" + detail::escape_key(key) + "\": " + describe(e));
  }

  ResultPtr run_or_raise(std::string_view op, std::string_view key, int id, const Params& params) {
    try {
      return run(id, params);
    } catch (const StoreFailure& e) {
      raise(op, key, e);
    }
  }

  // Runs statement `id` on a pooled connection. A reused connection that turns out dead before
  // the statement could have run is dropped and the call retried once on another.
  ResultPtr run(int id, const Params& params) {
    const Deadline checkout_deadline = Clock::now() + options_.command_timeout;
    for (int attempt = 0;; ++attempt) {
      Pool::Checkout co = pool_.checkout(checkout_deadline);
      // The statements get their own budget, however long the wait for a connection (or the
      // connect) took: a statement that is sent always has `command_timeout` to be answered.
      const Deadline deadline = Clock::now() + options_.command_timeout;
      try {
        if (!schema_ready_.load(std::memory_order_acquire)) {
          try {
            ensure_schema(*co.conn, deadline);
          } catch (const StoreFailure& e) {
            // The operation's own statement was never sent: nothing of it can have applied.
            throw StoreFailure(e.kind(), e.what(), false, e.broken(), e.server_code());
          }
        }
        ResultPtr r = co.conn->exec(statements_[id], params, options_.prepare, deadline);
        pool_.give_back(std::move(co.conn));
        return r;
      } catch (const StoreFailure& e) {
        const std::string& code = e.server_code();
        bool gone = code == "42P01" || code == "3F000";  // table or schema dropped
        // A read-only server (a standby after a failover): reconnect next time, so that a
        // multi-host URL with target_session_attrs=read-write finds the new primary.
        bool broken = e.broken() || code == "25006";
        if (gone) schema_ready_.store(false, std::memory_order_release);
        // 26000: a pooler moved us to a server session without our prepared statements.
        bool stale = (!co.fresh && broken && !e.maybe_applied()) || code == "26000";
        if (broken || code == "26000") {
          pool_.discard(std::move(co.conn));
        } else {
          pool_.give_back(std::move(co.conn));
        }
        if (attempt == 0 && (stale || gone) && Clock::now() < checkout_deadline) continue;
        throw;
      } catch (...) {  // e.g. bad_alloc: the connection's state is unknown, free its slot
        pool_.discard(std::move(co.conn));
        throw;
      }
    }
  }

  // Creates the schema on first use, or checks the version of an existing one. Runs the DDL only
  // if something is missing, so a role with just DML rights on an existing table works.
  void ensure_schema(Connection& conn, Deadline deadline) {
    ResultPtr exists = conn.exec_simple(sql_.exists, deadline);
    bool present = PQntuples(exists.get()) == 1 && PQgetvalue(exists.get(), 0, 0)[0] == 't';
    ResultPtr v = conn.exec_simple(present ? sql_.version : sql_.create, deadline);
    if (PQntuples(v.get()) != 1) {
      throw StoreFailure(
          ErrorKind::kProtocol,
          "schema \"" + options_.schema + "\" has no schema_version row in its meta table");
    }
    std::string version = PQgetvalue(v.get(), 0, 0);
    if (version != std::to_string(detail::pg::kSchemaVersion)) {
      throw StoreFailure(ErrorKind::kProtocol, "schema \"" + options_.schema +
                                                   "\" has lease table version " + version +
                                                   ", this lockkit knows version " +
                                                   std::to_string(detail::pg::kSchemaVersion));
    }
    schema_ready_.store(true, std::memory_order_release);
  }

  const PostgresOptions options_;
  const std::string target_;
  const detail::pg::Sql sql_;
  const Statement statements_[6];
  const ConnParams params_;  // the conninfo's keywords
  const Session session_;
  Pool pool_;
  mutable std::atomic<bool> schema_ready_{false};
};

}  // namespace

std::shared_ptr<LeaseStore> make_postgres_store(PostgresOptions options) {
  return std::make_shared<PostgresStore>(std::move(options));
}

std::shared_ptr<LockApi> make_postgres_lock_api(PostgresOptions options) {
  return make_lock_api(make_postgres_store(std::move(options)));
}

}  // namespace lockkit
