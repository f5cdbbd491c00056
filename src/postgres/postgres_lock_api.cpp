// SPDX-License-Identifier: MIT
// The postgres:// backend: the lease store over a connection pool, its URL and its registration.
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>

#include "core/url.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/postgres.hpp"
#include "postgres/pg_connection.hpp"
#include "postgres/pg_pool.hpp"
#include "postgres/pg_resolve.hpp"
#include "postgres/pg_sql.hpp"

namespace lockkit {

using detail::pg::CallError;
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

enum StatementId { kAcquire, kRelease, kExtend, kStatus, kList };

constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(1);

std::int64_t read_int8(const PGresult* r, int row, int col) {
  if (PQgetlength(r, row, col) != 8)
    throw CallError{ErrorKind::kProtocol, "bad int8", false, false, {}};
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return static_cast<std::int64_t>(v);
}

bool read_bool(const PGresult* r, int row, int col) {
  return PQgetlength(r, row, col) == 1 && PQgetvalue(r, row, col)[0] != 0;
}

// Quotes a libpq keyword value: 'value' with \ and ' escaped.
std::string conninfo_value(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\\' || c == '\'') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
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

bool parse_bool(std::string_view url, std::string_view name, const std::string& v) {
  if (v == "true" || v == "on" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "off" || v == "0" || v == "no") return false;
  detail::throw_bad_url(url, std::string(name) + ": must be true or false, got \"" + v + "\"");
}

}  // namespace

class PostgresLockApi::Store final : public LeaseOps, public std::enable_shared_from_this<Store> {
 public:
  explicit Store(PostgresOptions options)
      : options_(std::move(options)),
        target_(validate(options_)),
        sql_(detail::pg::make_sql(options_.schema)),
        statements_{Statement{kAcquire, &sql_.acquire, 3, kAcquireTypes},
                    Statement{kRelease, &sql_.release, 2, kKeyTokenTypes},
                    Statement{kExtend, &sql_.extend, 3, kAcquireTypes},
                    Statement{kStatus, &sql_.status, 1, kKeyTypes},
                    Statement{kList, &sql_.list, 2, kKeyTypes}},
        params_(explicit_params(parse_conninfo(options_.conninfo).get())),
        session_{guard_sql(options_),
                 std::min(options_.command_timeout, std::chrono::milliseconds(1000))},
        pool_(options_.connections, [this] { return connect(); }) {}

  std::string_view backend() const noexcept override { return "postgres"; }

  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return ttl / 100 + std::chrono::milliseconds(2);
  }

  std::optional<Lock> try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
    std::string token = make_token();
    std::string ttl_ms = std::to_string(ttl.count());
    Params params;
    params.add(key, true);
    params.add(token, false);
    params.add(ttl_ms, false);
    Clock::time_point start;
    ResultPtr r;
    try {
      r = run(kAcquire, params, &start);
    } catch (const CallError& e) {
      if (!e.maybe_applied) raise("try_acquire", key, e);
      in_doubt(key, token, ttl, e);
    }
    if (PQntuples(r.get()) == 0) return std::nullopt;
    std::uint64_t fence = static_cast<std::uint64_t>(
        checked([&] { return read_int8(r.get(), 0, 0); }, "try_acquire", key));
    return Lock(shared_from_this(), std::string(key), std::move(token), fence,
                start + ttl - drift(ttl));
  }

  bool release(std::string_view key, std::string_view token) override {
    validate_key(key);
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
    validate_key(key);
    validate_ttl(ttl);
    if (!plausible_token(token)) return false;
    const std::string token_text(token);
    std::string ttl_ms = std::to_string(ttl.count());
    Params params;
    params.add(key, true);
    params.add(token_text, false);
    params.add(ttl_ms, false);
    ResultPtr r = run_or_raise("extend", key, kExtend, params);
    return PQntuples(r.get()) == 1;
  }

  std::optional<LockInfo> status(std::string_view key) {
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

  std::vector<LockInfo> list(std::string_view prefix) {
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
                                    detail::format_duration(t));
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
    } catch (CallError& e) {
      if (e.message.rfind("resolve ", 0) == 0) {
        e.message = "connect " + target_ + ": " + e.message +
                    (e.kind == ErrorKind::kTimeout
                         ? " after " + detail::format_duration(options_.connect_timeout)
                         : "");
      } else if (e.kind == ErrorKind::kTimeout) {
        e.message = "connect " + target_ + " timed out after " +
                    detail::format_duration(options_.connect_timeout);
      } else {
        e.message = "connect " + target_ + ": " + e.message;
      }
      throw;
    }
  }

  template <class F>
  auto checked(F f, std::string_view op, std::string_view key) -> decltype(f()) {
    try {
      return f();
    } catch (const CallError& e) {
      raise(op, key, e);
    }
  }

  // Returns `e`'s message with where it happened and which budget ran out.
  std::string describe(const CallError& e) const {
    bool own_context = e.message.rfind("connect ", 0) == 0;  // names target and timeout itself
    if (e.kind == ErrorKind::kTimeout && e.message.rfind("all ", 0) == 0) {
      return e.message + " for " + detail::format_duration(options_.command_timeout);
    }
    // Our own deadline (no SQLSTATE), not the server's statement_timeout or lock_timeout.
    if (e.kind == ErrorKind::kTimeout && !own_context && e.sqlstate.empty()) {
      return e.message + " from " + target_ + " within " +
             detail::format_duration(options_.command_timeout);
    }
    return own_context ? e.message : e.message + " (" + target_ + ")";
  }

  [[noreturn]] void raise(std::string_view op, std::string_view key, const CallError& e) const {
    throw BackendError("postgres", e.kind,
                       std::string(op) + " \"" + detail::escape_key(key) + "\": " + describe(e));
  }

  // The acquire may have been applied: release our token so nobody waits for a lease we never
  // learned about, then say so.
  [[noreturn]] void in_doubt(std::string_view key, const std::string& token,
                             std::chrono::milliseconds ttl, const CallError& e) {
    std::string outcome;
    try {
      release(key, token);
      outcome = "released our token, so the key is free if it was granted";
    } catch (const BackendError& re) {
      std::string why = re.what();
      std::size_t colon = why.find("\": ");  // drop the repeated `postgres: release "key"`
      if (colon != std::string::npos) why = why.substr(colon + 3);
      outcome = "could not release our token (" + why + "), so the key may stay taken for up to " +
                detail::format_duration(ttl);
    } catch (const std::exception& re) {
      outcome = std::string("could not release our token (") + re.what() +
                "), so the key may stay taken for up to " + detail::format_duration(ttl);
    }
    throw BackendError("postgres", ErrorKind::kInDoubt,
                       "try_acquire \"" + detail::escape_key(key) +
                           "\": answer lost, the lease may have been granted (" + describe(e) +
                           "); " + outcome);
  }

  ResultPtr run_or_raise(std::string_view op, std::string_view key, int id, const Params& params) {
    try {
      return run(id, params, nullptr);
    } catch (const CallError& e) {
      raise(op, key, e);
    }
  }

  // Runs statement `id` on a pooled connection. A reused connection that turns out dead before
  // the statement could have run is dropped and the call retried once on another. Sets
  // `*sent_at` to the local time just before the statement went out.
  ResultPtr run(int id, const Params& params, Clock::time_point* sent_at) {
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
          } catch (CallError& e) {
            e.maybe_applied = false;  // the operation's own statement was never sent
            throw;
          }
        }
        if (sent_at) *sent_at = Clock::now();
        ResultPtr r = co.conn->exec(statements_[id], params, options_.prepare, deadline);
        pool_.give_back(std::move(co.conn));
        return r;
      } catch (CallError& e) {
        bool gone = e.sqlstate == "42P01" || e.sqlstate == "3F000";  // table or schema dropped
        // A read-only server (a standby after a failover): reconnect next time, so that a
        // multi-host URL with target_session_attrs=read-write finds the new primary.
        if (e.sqlstate == "25006") e.broken = true;
        if (gone) schema_ready_.store(false, std::memory_order_release);
        // 26000: a pooler moved us to a server session without our prepared statements.
        bool stale = (!co.fresh && e.broken && !e.maybe_applied) || e.sqlstate == "26000";
        if (e.broken || e.sqlstate == "26000") {
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
      throw CallError{
          ErrorKind::kProtocol,
          "schema \"" + options_.schema + "\" has no schema_version row in its meta table",
          false,
          false,
          {}};
    }
    std::string version = PQgetvalue(v.get(), 0, 0);
    if (version != std::to_string(detail::pg::kSchemaVersion)) {
      throw CallError{ErrorKind::kProtocol,
                      "schema \"" + options_.schema + "\" has lease table version " + version +
                          ", this lockkit knows version " +
                          std::to_string(detail::pg::kSchemaVersion),
                      false,
                      false,
                      {}};
    }
    schema_ready_.store(true, std::memory_order_release);
  }

  const PostgresOptions options_;
  const std::string target_;
  const detail::pg::Sql sql_;
  const Statement statements_[5];
  const ConnParams params_;  // the conninfo's keywords
  const Session session_;
  Pool pool_;
  std::atomic<bool> schema_ready_{false};
};

PostgresLockApi::PostgresLockApi(PostgresOptions options)
    : store_(std::make_shared<Store>(std::move(options))) {}

PostgresLockApi::~PostgresLockApi() = default;

std::optional<Lock> PostgresLockApi::try_acquire(std::string_view key,
                                                 std::chrono::milliseconds ttl) {
  validate_key(key);
  validate_ttl(ttl);
  return store_->try_acquire(key, ttl);
}

bool PostgresLockApi::release(std::string_view key, std::string_view token) {
  return store_->release(key, token);
}

bool PostgresLockApi::extend(std::string_view key, std::string_view token,
                             std::chrono::milliseconds ttl) {
  return store_->extend(key, token, ttl);
}

std::optional<LockInfo> PostgresLockApi::status(std::string_view key) {
  validate_key(key);
  return store_->status(key);
}

std::vector<LockInfo> PostgresLockApi::list(std::string_view prefix) {
  if (prefix.size() > kMaxKeyBytes) return {};
  return store_->list(prefix);
}

std::unique_ptr<LockApi> make_postgres_lock_api(PostgresOptions options) {
  return std::make_unique<PostgresLockApi>(std::move(options));
}

PostgresOptions parse_postgres_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  if (parsed.scheme != "postgres" && parsed.scheme != "postgresql") {
    detail::throw_bad_url(url, "not a postgres:// URL");
  }
  if (!parsed.has_authority) {
    detail::throw_bad_url(url, "use postgres://[user[:password]@]host[:port]/dbname[?options]");
  }
  PostgresOptions options;
  std::string conninfo;
  auto add = [&](std::string_view keyword, std::string_view value) {
    if (!conninfo.empty()) conninfo += ' ';
    conninfo += std::string(keyword) + "=" + conninfo_value(value);
  };
  if (!parsed.user.empty()) add("user", parsed.user);
  if (parsed.password) add("password", *parsed.password);
  std::string hosts, ports;
  bool any_port = false;
  for (std::size_t i = 0; i < parsed.hosts.size(); ++i) {
    if (i > 0) {
      hosts += ',';
      ports += ',';
    }
    hosts += parsed.hosts[i].host;
    if (parsed.hosts[i].port) {
      ports += std::to_string(*parsed.hosts[i].port);
      any_port = true;
    }
  }
  if (!hosts.empty() && hosts.find_first_not_of(',') != std::string::npos) add("host", hosts);
  if (any_port) add("port", ports);  // an empty item means libpq's default port
  if (parsed.path.size() > 1) add("dbname", parsed.path.substr(1));
  if (parsed.path.find('/', 1) != std::string::npos) {
    detail::throw_bad_url(url, "the path must be just the database name");
  }

  detail::QueryOptions ours(url, parsed);
  if (auto schema = ours.take("schema")) options.schema = *schema;
  if (auto t = ours.take("connect_timeout")) {
    // libpq's own connect_timeout is whole seconds without a unit; accept that spelling too.
    bool digits = !t->empty() && t->find_first_not_of("0123456789") == std::string::npos;
    try {
      options.connect_timeout = digits && t->size() < 7
                                    ? std::chrono::milliseconds(std::stoll(*t) * 1000)
                                    : detail::parse_duration(*t, "connect_timeout");
    } catch (const std::invalid_argument& e) {
      detail::throw_bad_url(url, e.what());
    }
  }
  if (auto t = ours.take_duration("command_timeout")) options.command_timeout = *t;
  if (auto n = ours.take_uint("connections", 1, 1024)) options.connections = *n;
  if (auto p = ours.take("prepare")) options.prepare = parse_bool(url, "prepare", *p);
  if (auto v = ours.take("synchronous_commit")) options.synchronous_commit = *v;

  static const std::set<std::string, std::less<>> kOurs = {"schema",          "connect_timeout",
                                                           "command_timeout", "connections",
                                                           "prepare",         "synchronous_commit"};
  std::set<std::string, std::less<>> known;
  {
    ConninfoPtr defaults(PQconndefaults());
    if (defaults) {
      for (const auto* o = defaults.get(); o->keyword; ++o) known.insert(o->keyword);
    }
  }
  for (const auto& [name, value] : parsed.query) {
    if (kOurs.count(name)) continue;
    if (name == "ssl" && (value == "true" || value == "1")) {  // libpq URI spelling
      add("sslmode", "require");
      continue;
    }
    if (!known.count(name)) {
      detail::throw_bad_url(url, detail::unknown_option(name, parsed.query) +
                                     " (neither a lockkit option nor a libpq keyword)");
    }
    add(name, value);
  }
  options.conninfo = std::move(conninfo);
  try {
    PostgresLockApi check(options);  // validates schema, timeouts and what libpq will parse
  } catch (const std::invalid_argument& e) {
    detail::throw_bad_url(url, e.what());
  }
  return options;
}

}  // namespace lockkit

// Kept by the linker through --undefined (see lockkit_add_backend), with the registration below.
extern "C" void lockkit_backend_anchor_postgres() {}

namespace {
[[maybe_unused]] const bool kRegistered = [] {
  auto factory = [](std::string_view url) -> std::shared_ptr<lockkit::LockApi> {
    return std::make_shared<lockkit::PostgresLockApi>(lockkit::parse_postgres_url(url));
  };
  // Whatever libpq marks secret (dispchar "*": password, sslpassword, ...) is redacted from
  // every message, in URLs of any scheme.
  if (PQconninfoOption* defaults = PQconndefaults()) {
    for (const auto* o = defaults; o->keyword; ++o) {
      if (o->dispchar && std::strchr(o->dispchar, '*')) {
        lockkit::detail::register_secret_option(o->keyword);
      }
    }
    PQconninfoFree(defaults);
  }
  lockkit::register_backend("postgres", factory);
  lockkit::register_backend("postgresql", factory);
  return true;
}();
}  // namespace
