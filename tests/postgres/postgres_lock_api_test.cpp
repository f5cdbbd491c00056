// SPDX-License-Identifier: MIT
// What only postgres:// has: URL and schema handling, WAL-free refusals, reclaiming, the pool,
// several processes, and faults (server down, restarted, frozen, lost answers, bad password).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <climits>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/observer.hpp"
#include "lockkit/open.hpp"
#include "lockkit/postgres.hpp"
#include "postgres/pg_sql.hpp"
#include "support/blackhole_dns.hpp"
#include "support/fault_proxy.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"
#include "support/sanitizers.hpp"
#include "support/secrets.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

PostgresServer& pg() {
  return PostgresServer::shared();
}

std::string unique(std::string_view base) {
  return std::string(base) + make_token().substr(0, 8);
}

// Runs `sql` on its own libpq connection; returns the first value of the first row ("" if none).
std::string query(const std::string& sql) {
  std::unique_ptr<PGconn, void (*)(PGconn*)> c(PQconnectdb(pg().url().c_str()), PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("test query: ") + PQerrorMessage(c.get()));
  }
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(c.get(), sql.c_str()), PQclear);
  auto st = PQresultStatus(r.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    throw std::runtime_error("test query `" + sql + "`: " + PQerrorMessage(c.get()));
  }
  if (PQntuples(r.get()) == 0) return "";
  return PQgetvalue(r.get(), 0, 0);
}

long long query_int(const std::string& sql) {
  return std::stoll(query(sql));
}

// Restarts or resumes the shared server when a test leaves scope, also when it fails midway.
class ServerGuard {
 public:
  ~ServerGuard() {
    try {
      if (paused_) pg().resume();
      if (stopped_) pg().start();
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }
  void stop() {
    pg().stop();
    stopped_ = true;
  }
  void start() {
    pg().start();
    stopped_ = false;
  }
  void crash() {
    pg().crash();
    stopped_ = true;
  }
  void pause() {
    pg().pause();
    paused_ = true;
  }
  void resume() {
    pg().resume();
    paused_ = false;
  }

 private:
  bool stopped_ = false;
  bool paused_ = false;
};

void expect_no_secret(const std::string& text) {
  EXPECT_EQ(text.find(pg().password()), std::string::npos) << "password leaked: " << text;
}

// Starts the worker with `args`, its environment ours plus `env` ("NAME=value" entries).
pid_t spawn_worker(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), LOCKKIT_PG_WORKER);
  return spawn_process(args, env);
}

// ---- URL and options ------------------------------------------------------------------------

TEST(PostgresUrl, BothSchemesOpen) {
  for (std::string scheme : {"postgres", "postgresql"}) {
    std::string url = pg().url("schema=urls");
    url.replace(0, url.find(':'), scheme);
    auto api = lockkit::open(url);
    EXPECT_EQ(api->backend(), "postgres");
    auto lock = api->try_acquire(unique("scheme/"), 10s);
    ASSERT_TRUE(lock) << scheme;
    EXPECT_TRUE(lock->release());
  }
}

TEST(PostgresUrl, UnknownOptionIsNamedAndPasswordRedacted) {
  try {
    (void)lockkit::open(pg().url("sslmode=disable&bogus_option=1"));
    FAIL() << "unknown option accepted";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("bogus_option"), std::string::npos) << what;
    EXPECT_NE(what.find("***"), std::string::npos) << what;
    expect_no_secret(what);
  }
}

TEST(PostgresUrl, OwnOptionsAreValidatedByName) {
  const std::map<std::string, std::string> bad = {
      {"schema=bad-name", "schema"},
      {"schema=x%22%3B%20DROP%20TABLE%20y", "schema"},
      {"schema=1abc", "schema"},
      {"connections=0", "connections"},
      {"connections=5000", "connections"},
      {"command_timeout=0ms", "command_timeout"},
      {"command_timeout=2", "command_timeout"},
      {"connect_timeout=soon", "connect_timeout"},
      {"prepare=maybe", "prepare"},
  };
  for (const auto& [query, name] : bad) {
    try {
      (void)lockkit::open(pg().url(query));
      ADD_FAILURE() << query << " accepted";
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(name), std::string::npos) << query << ": " << what;
      expect_no_secret(what);
    }
  }
  EXPECT_THROW((void)lockkit::open("postgres:nohost"), std::invalid_argument);
  EXPECT_THROW((void)lockkit::open("postgres://h/db/extra"), std::invalid_argument);
}

TEST(PostgresUrl, OptionsMapToLibpqAndOurs) {
  auto o = parse_postgres_url(
      "postgresql://u:p%40ss@db1:5433,db2/app?sslmode=require&connect_timeout=5&"
      "command_timeout=750ms&connections=3&schema=Locks&prepare=off&application_name=svc");
  EXPECT_EQ(o.schema, "Locks");
  EXPECT_EQ(o.connect_timeout, 5s);  // libpq's unitless seconds
  EXPECT_EQ(o.command_timeout, 750ms);
  EXPECT_EQ(o.connections, 3u);
  EXPECT_FALSE(o.prepare);
  for (std::string part : {"user='u'", "password='p@ss'", "host='db1,db2'", "port='5433,'",
                           "dbname='app'", "sslmode='require'", "application_name='svc'"}) {
    EXPECT_NE(o.conninfo.find(part), std::string::npos) << part << " in " << o.conninfo;
  }
  EXPECT_EQ(o.conninfo.find("schema"), std::string::npos);
}

TEST(PostgresUrl, LibpqKeywordsReachTheServer) {
  std::string app = unique("lk_app_");
  auto api = lockkit::open(pg().url("schema=urls&sslmode=disable&application_name=" + app));
  auto lock = api->try_acquire(unique("app/"), 10s);
  ASSERT_TRUE(lock);
  EXPECT_GE(
      query_int("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'"), 1);
}

TEST(PostgresUrl, SslmodeRequireIsHonoured) {
  // The test server has no TLS: libpq must refuse rather than fall back to plain text.
  auto api = lockkit::open(pg().url("schema=urls&sslmode=require"));
  try {
    (void)api->try_acquire("k", 10s);
    FAIL() << "sslmode=require was ignored";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnavailable) << e.what();
    EXPECT_NE(std::string(e.what()).find("SSL"), std::string::npos) << e.what();
  }
}

TEST(PostgresUrl, SeveralHostsAreTriedInTurn) {
  // Port 1 on loopback refuses at once; libpq goes on to the next host.
  std::string url = "postgres://lockkit:" + pg().password() +
                    "@127.0.0.1:1,127.0.0.1:" + std::to_string(pg().port()) +
                    "/lockkit?schema=urls";
  auto api = lockkit::open(url);
  auto lock = api->try_acquire(unique("multihost/"), 10s);
  EXPECT_TRUE(lock);
}

// ---- schema -----------------------------------------------------------------------------------

TEST(PostgresSchema, NameMustBeAnIdentifier) {
  for (std::string name : std::vector<std::string>{"", "a b", "x\"; DROP SCHEMA lockkit; --",
                                                   "9lives", std::string(64, 'a')}) {
    try {
      (void)make_postgres_store(PostgresOptions{.conninfo = "", .schema = name});
      ADD_FAILURE() << "schema \"" << name << "\" accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("schema"), std::string::npos) << e.what();
    }
  }
}

TEST(PostgresSchema, MixedCaseNameIsQuotedAndVersioned) {
  std::string schema = unique("Mixed_");
  auto api = lockkit::open(pg().url("schema=" + schema));
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(query_int("SELECT count(*) FROM \"" + schema + "\".leases"), 1);
  EXPECT_EQ(query_int("SELECT value FROM \"" + schema + "\".meta WHERE name = 'schema_version'"),
            detail::pg::kSchemaVersion);
}

TEST(PostgresSchema, SecondSchemaIsolatesLockSets) {
  auto a = lockkit::open(pg().url("schema=" + unique("set_a_")));
  auto b = lockkit::open(pg().url("schema=" + unique("set_b_")));
  auto in_a = a->try_acquire("shared/name", 10s);
  auto in_b = b->try_acquire("shared/name", 10s);
  EXPECT_TRUE(in_a);
  EXPECT_TRUE(in_b) << "a lock in one schema blocked the same key in another";
  EXPECT_FALSE(a->try_acquire("shared/name", 10s));
  EXPECT_EQ(a->list("shared/").size(), 1u);
}

TEST(PostgresSchema, DroppedSchemaIsCreatedAgain) {
  std::string schema = unique("dropped_");
  auto api = lockkit::open(pg().url("schema=" + schema));
  ASSERT_TRUE(api->try_acquire("before", 10s));
  query("DROP SCHEMA " + schema + " CASCADE");
  // The prepared statement now names a missing table: recreate the schema, retry once.
  auto lock = api->try_acquire("after", 10s);
  ASSERT_TRUE(lock);
  EXPECT_EQ(query_int("SELECT count(*) FROM " + schema + ".leases"), 1);
}

TEST(PostgresSchema, NewerVersionIsRefused) {
  std::string schema = unique("future_");
  auto api = lockkit::open(pg().url("schema=" + schema));
  ASSERT_TRUE(api->try_acquire("k", 10s));
  query("UPDATE " + schema + ".meta SET value = 99 WHERE name = 'schema_version'");
  auto fresh = lockkit::open(pg().url("schema=" + schema));
  try {
    (void)fresh->try_acquire("k2", 10s);
    FAIL() << "a table of an unknown version was used";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
    EXPECT_NE(std::string(e.what()).find("99"), std::string::npos) << e.what();
  }
}

TEST(PostgresSchema, RoleWithOnlyTableRightsUsesAnExistingSchema) {
  std::string schema = unique("granted_");
  auto owner = lockkit::open(pg().url("schema=" + schema));
  ASSERT_TRUE(owner->try_acquire("create", 10s));
  query("GRANT USAGE ON SCHEMA " + schema + " TO lockkit_min; GRANT SELECT ON " + schema +
        ".meta TO lockkit_min; GRANT SELECT, INSERT, UPDATE, DELETE ON " + schema +
        ".leases TO lockkit_min; GRANT USAGE ON SEQUENCE " + schema + ".fences TO lockkit_min");
  std::string base = "postgres://lockkit_min:" + pg().password() +
                     "@127.0.0.1:" + std::to_string(pg().port()) + "/lockkit?schema=";
  auto api = lockkit::open(base + schema);
  auto lock = api->try_acquire("k", 10s);
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->release());
  // Creating a schema needs rights this role lacks: kind auth, and nothing in doubt.
  auto denied = lockkit::open(base + unique("denied_"));
  try {
    (void)denied->try_acquire("k", 10s);
    FAIL() << "created a schema without the right to";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kAuth) << e.what();
    EXPECT_NE(std::string(e.what()).find("permission denied"), std::string::npos) << e.what();
  }
}

TEST(PostgresSchema, ConcurrentFirstUseFromProcessesCreatesItOnce) {
  std::string schema = unique("first_use_");
  std::string go = temp_path("lockkit-go-");
  std::vector<pid_t> workers;
  for (int i = 0; i < 6; ++i) {
    workers.push_back(spawn_worker({"first-use", pg().url("schema=" + schema), "k", go}));
  }
  std::ofstream(go).put('\n');  // all workers start their first call at once
  for (pid_t w : workers) EXPECT_EQ(wait_exit(w), 0) << "worker " << w;
  std::remove(go.c_str());
  EXPECT_EQ(query_int("SELECT count(*) FROM " + schema + ".meta"), 1);
  EXPECT_EQ(query_int("SELECT count(*) FROM pg_namespace WHERE nspname = '" + schema + "'"), 1);
}

// ---- statements -------------------------------------------------------------------------------

TEST(PostgresStatements, RefusedAcquireWritesNoWalAndDrawsNoFence) {
  std::string schema = unique("wal_");
  auto holder_api = lockkit::open(pg().url("schema=" + schema));
  auto api = lockkit::open(pg().url("schema=" + schema));
  auto holder = holder_api->try_acquire("held", 60s);
  ASSERT_TRUE(holder);
  // Expired rows wait to be reclaimed: a refusal that reclaimed them would write WAL too.
  query("INSERT INTO " + schema +
        ".leases SELECT ('old' || g)::bytea, 't', g, now() - interval '1 hour' "
        "FROM generate_series(1, 5) g");
  EXPECT_FALSE(api->try_acquire("held", 60s));  // prepares, and prunes the page if it wants to
  auto fences_before = query("SELECT last_value FROM " + schema + ".fences");
  long long least = LLONG_MAX;
  // Autovacuum or a checkpoint may write WAL in a window; a refusal that wrote any would make
  // every window show at least 200 records (each is 24+ bytes).
  for (int window = 0; window < 5 && least >= 200; ++window) {
    std::string lsn = query("SELECT pg_current_wal_lsn()");
    for (int i = 0; i < 200; ++i) ASSERT_FALSE(api->try_acquire("held", 60s));
    least = std::min(least, query_int("SELECT pg_current_wal_lsn() - '" + lsn + "'::pg_lsn"));
  }
  EXPECT_LT(least, 200) << "bytes of WAL for 200 refused acquires";
  EXPECT_EQ(query("SELECT last_value FROM " + schema + ".fences"), fences_before);
  EXPECT_EQ(query_int("SELECT count(*) FROM " + schema + ".leases WHERE expires_at < now()"), 5);
  // The measurement can see WAL: a granted cycle writes some.
  std::string lsn = query("SELECT pg_current_wal_lsn()");
  auto granted = api->try_acquire("free", 60s);
  ASSERT_TRUE(granted);
  EXPECT_TRUE(granted->release());
  EXPECT_GT(query_int("SELECT pg_current_wal_lsn() - '" + lsn + "'::pg_lsn"), 0);
}

TEST(PostgresStatements, ExpiredRowsAreReclaimed) {
  std::string schema = unique("reclaim_");
  auto api = lockkit::open(pg().url("schema=" + schema));
  ASSERT_TRUE(api->try_acquire("create", 10s));
  query("INSERT INTO " + schema +
        ".leases SELECT ('gone' || g)::bytea, 't', g, now() - interval '1 second' "
        "FROM generate_series(1, 20) g");
  for (int i = 0; i < 3; ++i) {
    auto lock = api->try_acquire("fresh" + std::to_string(i), 10s);
    ASSERT_TRUE(lock);
  }
  // Each granted acquire deleted up to 8 expired rows of other keys; each release its own row.
  EXPECT_EQ(query_int("SELECT count(*) FROM " + schema + ".leases WHERE expires_at < now()"), 0);
  EXPECT_EQ(query_int("SELECT count(*) FROM " + schema + ".leases"), 0);
}

TEST(PostgresStatements, ListHandlesPrefixesEndingInFF) {
  auto api = lockkit::open(pg().url("schema=" + unique("list_")));
  std::string p = unique("p") + "\xff";
  auto a = api->try_acquire(p + "\xff" + "a", 10s);
  auto b = api->try_acquire(p + "\x01", 10s);
  auto c = api->try_acquire(p.substr(0, p.size() - 1) + "\xfe", 10s);
  ASSERT_TRUE(a && b && c);
  auto listed = api->list(p);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].key, p + "\x01");
  EXPECT_EQ(listed[1].key, p + "\xff" + "a");
  EXPECT_EQ(listed[1].fence, a->fence());
}

TEST(PostgresStatements, ListWithoutPrefixAndOddTokens) {
  auto api = lockkit::open(pg().url("schema=" + unique("all_")));
  auto a = api->try_acquire("a", 10s);
  auto b = api->try_acquire(std::string("\0b", 2), 10s);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(api->list().size(), 2u);
  EXPECT_EQ(api->list("").size(), 2u);
  // A token is bound as text: one that is not NUL-terminated in memory, or not even text, must
  // neither read past its end nor fail; it simply owns nothing.
  std::string padded = std::string(a->token()) + "trailing";
  std::string_view exact(padded.data(), a->token().size());
  EXPECT_FALSE(api->extend("a", std::string_view(padded.data(), 31), 10s));
  EXPECT_FALSE(api->release("a", std::string("\xff\x00zz", 4)));
  EXPECT_TRUE(api->extend("a", exact, 10s));
  EXPECT_TRUE(api->release("a", exact));
}

TEST(PostgresStatements, UnpreparedModeWorks) {
  auto api = lockkit::open(pg().url("schema=urls&prepare=false"));
  auto key = unique("unprepared/");
  auto lock = api->try_acquire(key, 10s);
  ASSERT_TRUE(lock);
  EXPECT_FALSE(api->try_acquire(key, 10s));
  EXPECT_TRUE(lock->extend(10s));
  EXPECT_TRUE(lock->release());
}

// The pgbench scripts in bench/postgres must run exactly the library's statements.
TEST(PostgresStatements, BenchScriptsRunTheLibrarysStatements) {
  auto sql = detail::pg::make_sql("lockkit");
  auto as_pgbench = [](std::string s) {
    for (auto [from, to] : {std::pair{"$1", ":key"}, {"$2", ":token"}, {"$3", ":ttl"}}) {
      for (std::size_t at; (at = s.find(from)) != std::string::npos;) s.replace(at, 2, to);
    }
    return s + ";";
  };
  auto statements_in = [](const std::string& file) {
    std::ifstream in(std::string(LOCKKIT_SOURCE_DIR) + "/bench/postgres/" + file);
    EXPECT_TRUE(in) << file;
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] != '\\' && line.rfind("--", 0) != 0) out.push_back(line);
    }
    return out;
  };
  EXPECT_EQ(statements_in("acquire_release.sql"),
            (std::vector<std::string>{as_pgbench(sql.acquire), as_pgbench(sql.release)}));
  EXPECT_EQ(statements_in("refused_acquire.sql"),
            (std::vector<std::string>{as_pgbench(sql.acquire)}));
}

// ---- pool and processes ----------------------------------------------------------------------

TEST(PostgresPool, OpensAtMostItsConnections) {
  std::string app = unique("lk_pool_");
  // Generous timeouts: 8 threads queue for 2 connections on a busy machine.
  auto api = lockkit::open(
      pg().url("schema=pool&connections=2&command_timeout=20s&application_name=" + app));
  std::vector<std::thread> threads;
  std::atomic<int> granted{0};
  std::atomic<int> failed{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        try {
          auto lock = api->try_acquire(app + "/" + std::to_string(t), 10s);
          if (lock && lock->release()) granted.fetch_add(1);
        } catch (const std::exception&) {
          failed.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(granted.load(), 160);
  long long n =
      query_int("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'");
  EXPECT_GE(n, 1);
  EXPECT_LE(n, 2);
}

TEST(PostgresProcesses, ContendingProcessesNeverOverlap) {
  std::string log = temp_path("lockkit-contend-");
  std::string go = temp_path("lockkit-go-");
  std::string url = pg().url("schema=processes");
  std::string key = unique("contended/");
  constexpr int kWorkers = 4;
  constexpr int kRounds = 25;
  std::vector<pid_t> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.push_back(spawn_worker({"contend", url, key, std::to_string(kRounds), log, go}));
  }
  std::ofstream(go).put('\n');
  for (pid_t w : workers) EXPECT_EQ(wait_exit(w), 0) << "worker " << w;
  std::ifstream in(log);
  std::string kind, pid, fence, open_pid;
  unsigned long long last_fence = 0;
  int sections = 0;
  while (in >> kind >> pid >> fence) {
    if (kind == "B") {
      EXPECT_TRUE(open_pid.empty()) << pid << " entered while " << open_pid << " was inside";
      EXPECT_GT(std::stoull(fence), last_fence) << "fences must grow with every holder";
      last_fence = std::stoull(fence);
      open_pid = pid;
    } else {
      EXPECT_EQ(open_pid, pid);
      open_pid.clear();
      ++sections;
    }
  }
  EXPECT_EQ(sections, kWorkers * kRounds);
  std::remove(log.c_str());
  std::remove(go.c_str());
}

// ---- faults -----------------------------------------------------------------------------------

TEST(PostgresFaults, WrongPasswordIsAuthAndNeverPrinted) {
  std::string wrong = "wrong-" + make_token();
  auto api = lockkit::open(pg().url_with_password(wrong));
  try {
    (void)api->try_acquire("k", 10s);
    FAIL() << "a wrong password was accepted";
  } catch (const BackendError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kAuth) << what;
    EXPECT_FALSE(e.retryable());
    EXPECT_NE(what.find("password authentication failed"), std::string::npos) << what;
    EXPECT_EQ(what.find(wrong), std::string::npos) << what;
    expect_no_secret(what);
  }
}

TEST(PostgresFaults, ServerDownThrowsWithinTimeoutsThenRecoversAlone) {
  ServerGuard guard;
  auto api = lockkit::open(pg().url("schema=faults&connect_timeout=1s&command_timeout=1s"));
  ASSERT_TRUE(api->try_acquire(unique("warm/"), 10s));  // leaves a pooled connection behind
  guard.stop();
  for (int i = 0; i < 2; ++i) {  // the dead pooled connection, then a refused connect
    auto start = Clock::now();
    try {
      (void)api->try_acquire(unique("down/"), 10s);
      FAIL() << "acquired from a stopped server";
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnavailable) << e.what();
      EXPECT_TRUE(e.retryable());
      EXPECT_STREQ(e.backend(), "postgres");
      expect_no_secret(e.what());
    }
    EXPECT_LT(Clock::now() - start, 2s + 1s);
  }
  guard.start();
  auto lock = api->try_acquire(unique("back/"), 10s);
  EXPECT_TRUE(lock) << "the first call after the restart failed";
}

TEST(PostgresFaults, LeaseSurvivesServerRestart) {
  ServerGuard guard;
  auto a = lockkit::open(pg().url("schema=faults"));
  auto b = lockkit::open(pg().url("schema=faults"));
  auto key = unique("restart/");
  auto lock = a->try_acquire(key, 60s);
  ASSERT_TRUE(lock);
  guard.stop();
  guard.start();
  EXPECT_FALSE(b->try_acquire(key, 60s)) << "a committed lease was lost by a restart";
  EXPECT_TRUE(lock->extend(60s));
  auto fence = lock->fence();
  EXPECT_TRUE(lock->release());
  auto next = b->try_acquire(key, 60s);
  ASSERT_TRUE(next);
  EXPECT_GT(next->fence(), fence);
}

TEST(PostgresFaults, ServerStoppedMidStream) {
  ServerGuard guard;
  auto api = lockkit::open(pg().url("schema=faults&connect_timeout=1s&command_timeout=1s"));
  std::atomic<bool> done{false};
  std::atomic<int> ok{0}, errors{0}, other{0};
  std::atomic<long long> slowest_ms{0};
  std::thread client([&] {
    for (int i = 0; !done; ++i) {
      auto start = Clock::now();
      try {
        auto lock = api->try_acquire("stream/" + std::to_string(i % 16), 10s);
        if (lock && lock->release()) ok.fetch_add(1);
      } catch (const BackendError&) {
        errors.fetch_add(1);
      } catch (...) {
        other.fetch_add(1);
      }
      long long ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      if (ms > slowest_ms) slowest_ms = ms;
    }
  });
  auto wait_until = [](auto pred) {
    auto deadline = Clock::now() + 30s;
    while (!pred() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
    return pred();
  };
  EXPECT_TRUE(wait_until([&] { return ok >= 20; }));
  guard.stop();
  int errors_before = errors;
  EXPECT_TRUE(wait_until([&] { return errors >= errors_before + 3; }));
  guard.start();
  int ok_before = ok;
  EXPECT_TRUE(wait_until([&] { return ok >= ok_before + 20; })) << "no recovery after restart";
  done = true;
  client.join();
  EXPECT_EQ(other.load(), 0) << "something other than BackendError escaped";
  // Pool wait + connect + statement, and an in-doubt acquire's release as much again.
  EXPECT_LT(slowest_ms.load(), 2 * 3000 + 1000);
}

TEST(PostgresFaults, FrozenServerTimesOutAndInFlightAcquireIsInDoubt) {
  ServerGuard guard;
  const std::string opts = "schema=faults&connect_timeout=500ms&command_timeout=500ms";
  auto api = lockkit::open(pg().url(opts + "&connections=1"));
  ASSERT_TRUE(api->try_acquire(unique("warm/"), 10s));
  guard.pause();  // SIGSTOP: TCP still accepts, nothing answers
  auto start = Clock::now();
  try {
    (void)api->try_acquire(unique("frozen/"), 10s);
    FAIL() << "acquired from a frozen server";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInDoubt) << e.what();
    EXPECT_NE(std::string(e.what()).find("may have been granted"), std::string::npos) << e.what();
    expect_no_secret(e.what());
  }
  // The statement's 500ms, then the core's token release: its connect (500ms) fails.
  EXPECT_LT(Clock::now() - start, 1500ms + 1s);

  auto fresh = lockkit::open(pg().url(opts));
  start = Clock::now();
  try {
    (void)fresh->status("k");
    FAIL() << "connected to a frozen server";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
    EXPECT_NE(std::string(e.what()).find("timed out after 500ms"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - start, 500ms + 1s);

  // Waiting for the pool's only connection is bounded too.
  std::thread busy([&] {
    try {
      (void)api->status("k");
    } catch (const BackendError&) {
    }
  });
  std::this_thread::sleep_for(50ms);  // lets `busy` take the connection first (either order passes)
  start = Clock::now();
  EXPECT_THROW((void)api->status("k"), BackendError);
  EXPECT_LT(Clock::now() - start, 1000ms + 1s);
  busy.join();

  guard.resume();
  auto lock = api->try_acquire(unique("thawed/"), 10s);
  EXPECT_TRUE(lock) << "no recovery after the server thawed";
}

TEST(PostgresFaults, LostAnswerReleasesOwnTokenThenInDoubt) {
  std::string schema = unique("lost_");
  auto direct = lockkit::open(pg().url("schema=" + schema));
  ASSERT_TRUE(direct->try_acquire("create", 10s));  // schema and statements ready
  FaultProxy proxy(pg().port());
  std::string via_proxy = "postgres://lockkit:" + pg().password() +
                          "@127.0.0.1:" + std::to_string(proxy.port()) +
                          "/lockkit?schema=" + schema + "&command_timeout=500ms&connections=2";
  auto api = lockkit::open(via_proxy);
  ASSERT_TRUE(api->try_acquire("warm", 10s));
  auto fences_before = query_int("SELECT last_value FROM " + schema + ".fences");
  proxy.drop_replies_on_existing();
  try {
    (void)api->try_acquire("lost", 60s);
    FAIL() << "an answer arrived through a proxy that swallows them";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInDoubt) << e.what();
    EXPECT_NE(std::string(e.what()).find("may have been granted"), std::string::npos) << e.what();
    expect_no_secret(e.what());
  }
  // The acquire did run (it drew a fence), and its lease was released again with its token.
  EXPECT_EQ(query_int("SELECT last_value FROM " + schema + ".fences"), fences_before + 1);
  EXPECT_FALSE(direct->status("lost"));
  EXPECT_TRUE(direct->try_acquire("lost", 10s));
}

// ---- fork ------------------------------------------------------------------------------------

// Waits until `pred()` holds or `limit` passes; returns `pred()`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto deadline = Clock::now() + limit;
  while (!pred() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  return pred();
}

std::string backends_of(const std::string& app) {
  return query(
      "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM "
      "pg_stat_activity WHERE application_name = '" +
      app + "'");
}

// Parent and child both call one LockApi right after fork(), while a third party holds some
// keys. Sharing a pooled connection would cross their replies (a grant meant for the other
// process, protocol errors); each must use connections of its own.
TEST(PostgresFork, ParentAndChildKeepWorkingOnOneApi) {
  const std::string schema = unique("fork_");
  auto third = lockkit::open(pg().url("schema=" + schema));
  std::vector<Lock> held;
  for (int i = 0; i < 4; ++i) {
    auto lock = third->try_acquire("held/" + std::to_string(i), 120s);
    ASSERT_TRUE(lock);
    held.push_back(std::move(*lock));
  }
  auto api = lockkit::open(pg().url("schema=" + schema + "&connections=2"));
  auto work = [&](const std::string& who) -> std::string {
    try {
      for (int i = 0; i < 12; ++i) {
        std::string busy = "held/" + std::to_string(i % 4);
        if (api->try_acquire(busy, 60s)) return "granted " + busy + ", which the third party holds";
        std::string key = who + "/" + std::to_string(i);
        auto lock = api->try_acquire(key, 60s);
        if (!lock) return "refused the free key " + key;
        auto info = api->status(key);
        if (!info || info->fence != lock->fence()) return "status of " + key + " disagrees";
        if (!lock->release()) return "release of " + key + " found it gone";
      }
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  };
  for (int trial = 0; trial < 30; ++trial) {
    // Pooled connections exist at fork() time: both processes would inherit them.
    auto warm_a = api->try_acquire(unique("warm/"), 10s);
    auto warm_b = api->try_acquire(unique("warm/"), 10s);
    ASSERT_TRUE(warm_a && warm_b);
    ASSERT_TRUE(warm_a->release() && warm_b->release());
    std::fflush(nullptr);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      std::string error = work("child" + std::to_string(trial) + "-" + unique(""));
      if (!error.empty()) std::fprintf(stderr, "child of trial %d: %s\n", trial, error.c_str());
      std::fflush(nullptr);
      ::_exit(error.empty() ? 0 : 1);
    }
    EXPECT_EQ(work("parent" + std::to_string(trial) + "-" + unique("")), "") << "trial " << trial;
    EXPECT_EQ(wait_exit(child), 0) << "child of trial " << trial << " (see its stderr)";
    if (HasFailure()) break;
  }
}

// fork() while other threads are inside calls (holding pooled connections, waiting for one):
// the child must neither inherit a locked pool nor wait on a condition variable those
// threads were parked on, and must work on connections of its own.
TEST(PostgresFork, ForkWhileOtherThreadsUseTheApi) {
  if (!kForkWithBusyThreads) {
    GTEST_SKIP() << "this sanitizer runtime cannot fork a multithreaded process safely (see "
                    "support/sanitizers.hpp); the release build runs this test";
  }
  auto api = lockkit::open(pg().url("schema=fork&connections=2&command_timeout=20s"));
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !done; ++i) {
        try {
          auto lock = api->try_acquire(unique("busy/" + std::to_string(t) + "/"), 10s);
          if (!lock || !lock->release()) errors.fetch_add(1);
        } catch (const std::exception&) {
          errors.fetch_add(1);
        }
      }
    });
  }
  for (int trial = 0; trial < 10; ++trial) {
    std::fflush(nullptr);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int rc = 0;
      try {
        for (int i = 0; i < 5 && rc == 0; ++i) {
          auto lock = api->try_acquire("forked/" + std::to_string(::getpid()), 10s);
          rc = lock && lock->release() ? 0 : 1;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        rc = 2;
      }
      std::fflush(nullptr);
      ::_exit(rc);
    }
    EXPECT_EQ(wait_exit(child), 0) << "trial " << trial;
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
}

// A child that drops its copy of the LockApi (or just exits) must not end the parent's
// sessions: no Terminate message, no TLS close_notify on a socket it shares.
TEST(PostgresFork, ChildLeavesTheParentsSessionAlone) {
  const std::string app = unique("lk_fork_");
  std::shared_ptr<LockApi> api =
      lockkit::open(pg().url("schema=fork&connections=1&application_name=" + app));
  ASSERT_TRUE(api->try_acquire(unique("warm/"), 10s));
  const std::string before = backends_of(app);
  ASSERT_FALSE(before.empty());
  std::fflush(nullptr);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int rc = 0;
    try {
      auto lock = api->try_acquire(unique("child/"), 10s);
      rc = lock && lock->release() ? 0 : 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      rc = 2;
    }
    api.reset();  // the pool's destructor closes what the child holds
    std::fflush(nullptr);
    ::_exit(rc);
  }
  EXPECT_EQ(wait_exit(child), 0);
  // The child's own session is gone once it has exited; the parent's is the same as before.
  EXPECT_TRUE(eventually([&] { return backends_of(app) == before; }))
      << "before " << before << ", now " << backends_of(app);
  auto lock = api->try_acquire(unique("parent/"), 10s);
  EXPECT_TRUE(lock);
  EXPECT_EQ(backends_of(app), before) << "the parent had to reconnect: its session was ended";
}

// ---- durability and server-side bounds -----------------------------------------------------

// Sets a default on the test role for new sessions; undoes it when the test leaves.
class RoleDefault {
 public:
  explicit RoleDefault(const std::string& setting) : name_(setting.substr(0, setting.find('='))) {
    query("ALTER ROLE lockkit SET " + setting);
  }
  ~RoleDefault() {
    try {
      query("ALTER ROLE lockkit RESET " + name_);
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }

 private:
  std::string name_;
};

// Records, for every row lockkit writes, the settings its transaction ran under.
void observe_settings(const std::string& schema) {
  query("CREATE TABLE " + schema +
        ".seen (op text, sync text, statement_timeout text, lock_timeout text); "
        "CREATE FUNCTION " +
        schema + ".note() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO " + schema +
        ".seen VALUES (TG_OP, current_setting('synchronous_commit'), "
        "current_setting('statement_timeout'), current_setting('lock_timeout')); "
        "RETURN NULL; END$$; "
        "CREATE TRIGGER note AFTER INSERT OR UPDATE OR DELETE ON " +
        schema + ".leases FOR EACH ROW EXECUTE FUNCTION " + schema + ".note()");
}

TEST(PostgresDurability, CommitsWaitForTheFlushWhateverTheRoleDefault) {
  const std::string schema = unique("durable_");
  ASSERT_TRUE(lockkit::open(pg().url("schema=" + schema))->try_acquire("create", 10s));
  observe_settings(schema);
  RoleDefault off("synchronous_commit=off");
  RoleDefault no_bounds("statement_timeout=0");
  ASSERT_EQ(query("SHOW synchronous_commit"), "off") << "the role default did not apply";

  auto api = lockkit::open(pg().url("schema=" + schema + "&command_timeout=1500ms"));
  auto lock = api->try_acquire("k", 60s);  // INSERT
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->extend(60s));  // UPDATE
  EXPECT_TRUE(lock->release());    // DELETE
  auto again = api->try_acquire("k", 60s);
  ASSERT_TRUE(again);
  EXPECT_EQ(query("SELECT count(*) FROM " + schema + ".seen"), "4");
  EXPECT_EQ(query("SELECT string_agg(DISTINCT sync, ',') FROM " + schema + ".seen"), "on");
  EXPECT_EQ(query("SELECT string_agg(DISTINCT statement_timeout || '/' || lock_timeout, ',') "
                  "FROM " +
                  schema + ".seen"),
            "1500ms/1500ms");

  // The documented opt-out.
  query("TRUNCATE " + schema + ".seen");
  auto fast = lockkit::open(pg().url("schema=" + schema + "&synchronous_commit=off"));
  ASSERT_TRUE(fast->try_acquire("fast", 60s));
  EXPECT_EQ(query("SELECT string_agg(DISTINCT sync, ',') FROM " + schema + ".seen"), "off");
  EXPECT_THROW((void)lockkit::open(pg().url("synchronous_commit=sometimes")),
               std::invalid_argument);
}

// The crash itself: grants reported just before an immediate shutdown must be there after
// crash recovery, though the role's default says commits need not wait for the flush.
TEST(PostgresDurability, GrantsSurviveAnImmediateShutdownWithRoleDefaultOff) {
  ServerGuard guard;
  const std::string schema = unique("crash_");
  RoleDefault off("synchronous_commit=off");
  auto api = lockkit::open(pg().url("schema=" + schema));
  ASSERT_TRUE(api->try_acquire("create", 10s));
  std::vector<Lock> granted;
  for (int i = 0; i < 40; ++i) {
    auto lock = api->try_acquire("granted/" + std::to_string(i), 120s);
    ASSERT_TRUE(lock);
    granted.push_back(std::move(*lock));
  }
  guard.crash();  // right after the last grant was reported
  guard.start();
  auto other = lockkit::open(pg().url("schema=" + schema));
  int lost = 0;
  for (const auto& lock : granted) {
    auto info = other->status(lock.key());
    if (!info || info->fence != lock.fence()) ++lost;
  }
  EXPECT_EQ(lost, 0) << "grants reported before the crash were gone after it";
  EXPECT_FALSE(other->try_acquire(granted.back().key(), 10s)) << "a second holder";
}

// Holds a lock in another session until destroyed (then commits).
class Blocker {
 public:
  explicit Blocker(const std::string& sql) : conn_(PQconnectdb(pg().url().c_str()), PQfinish) {
    if (PQstatus(conn_.get()) != CONNECTION_OK) throw std::runtime_error("blocker: no connection");
    run("BEGIN");
    run(sql);
  }
  ~Blocker() {
    try {
      run("COMMIT");
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }

 private:
  void run(const std::string& sql) {
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(conn_.get(), sql.c_str()), PQclear);
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      throw std::runtime_error("blocker `" + sql + "`: " + PQerrorMessage(conn_.get()));
    }
  }
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_;
};

// A call that times out while its statement waits for a lock: the statement must be cancelled
// on the server, not left to commit a lease nobody owns once the lock is free, and no server
// process may be left working for it.
TEST(PostgresTimeouts, BlockedStatementIsCancelledAndNeverCommitsLater) {
  const std::string schema = unique("blocked_");
  const std::string app = unique("lk_blocked_");
  auto api = lockkit::open(pg().url(
      "schema=" + schema + "&command_timeout=300ms&connections=2&application_name=" + app));
  ASSERT_TRUE(api->try_acquire("warm", 10s));  // schema made, statements prepared
  auto active = [&] {
    return query_int("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app +
                     "' AND state <> 'idle'");
  };
  {
    Blocker blocker("LOCK TABLE " + schema + ".leases IN ACCESS EXCLUSIVE MODE");
    for (int i = 0; i < 4; ++i) {
      auto start = Clock::now();
      try {
        (void)api->try_acquire("blocked/" + std::to_string(i), std::chrono::hours(24 * 7));
        ADD_FAILURE() << "acquired through an exclusive table lock";
      } catch (const BackendError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
      }
      // The statement's 300ms, then at most the cancel's grace (300ms).
      EXPECT_LT(Clock::now() - start, 600ms + 1s);
    }
    // Nothing of ours still runs or waits on the server, and nothing piled up past the pool.
    EXPECT_TRUE(eventually([&] { return active() == 0; }, 1s))
        << active() << " lockkit statements still running after their calls returned: "
        << query(
               "SELECT string_agg(state || ' ' || wait_event_type || ' ' || query, ' | ') FROM "
               "pg_stat_activity WHERE application_name = '" +
               app + "' AND state <> 'idle'");
    EXPECT_LE(
        query_int("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'"),
        2);
  }  // the lock is free: a statement left behind would commit now
  EXPECT_FALSE(eventually(
      [&] {
        return query_int("SELECT count(*) FROM " + schema +
                         ".leases WHERE key::text LIKE '%blocked%'") > 0;
      },
      1s))
      << "a timed-out acquire committed a lease after its call returned";
  EXPECT_EQ(active(), 0);
  auto lock = api->try_acquire("blocked/0", 10s);
  EXPECT_TRUE(lock) << "the key stayed taken";
}

// ---- name resolution --------------------------------------------------------------------------

TEST(PostgresDns, HungResolverIsBoundedByTheConnectTimeout) {
  int rc = run_with_blackhole_dns([] {
    auto api = lockkit::open(
        "postgres://lockkit:x@lockkit-blackhole.example.com:5432/lockkit?"
        "connect_timeout=200ms&command_timeout=200ms");
    auto start = Clock::now();
    try {
      (void)api->try_acquire("k", 10s);
      std::fprintf(stderr, "acquired without a resolver\n");
      return 10;
    } catch (const BackendError& e) {
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      // Pool wait + connect (resolution included) + statement, with generous slack.
      if (took > 600ms + 1500ms) {
        std::fprintf(stderr, "took %lld ms: %s\n", static_cast<long long>(took.count()), e.what());
        return 11;
      }
      if (e.kind() != ErrorKind::kTimeout ||
          std::string(e.what()).find("resolve") == std::string::npos) {
        std::fprintf(stderr, "unexpected error: %s\n", e.what());
        return 12;
      }
      return 0;
    }
  });
  EXPECT_EQ(rc, 0) << "see the child's stderr above";
}

TEST(PostgresDns, NamesAreResolvedAndHostKeptForMessages) {
  auto api = lockkit::open("postgres://lockkit:" + pg().password() +
                           "@localhost:" + std::to_string(pg().port()) + "/lockkit?schema=urls");
  auto lock = api->try_acquire(unique("localhost/"), 10s);
  EXPECT_TRUE(lock);
}

// ---- secrets off the URL ----------------------------------------------------------------

// Returns postgres://lockkit@127.0.0.1:<port>/lockkit?<query>: no password of its own.
std::string url_without_password(const std::string& query) {
  return "postgres://lockkit@127.0.0.1:" + std::to_string(pg().port()) + "/lockkit?" + query;
}

// Writes `content` to a new private file (libpq ignores a passfile others can read).
std::string private_file(std::string_view name, const std::string& content) {
  std::string path = temp_path(name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 ||
      ::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    throw std::runtime_error("cannot write " + path);
  }
  ::close(fd);
  return path;
}

// Runs the worker's first use of a fresh key on `url` with `env` added; returns its exit code.
int connect_in_worker(const std::string& url, std::vector<std::string> env) {
  std::string go = private_file("lockkit-go-", "\n");  // there already: the worker starts at once
  int rc = wait_exit(spawn_worker({"first-use", url, unique("secret/"), go}, std::move(env)));
  std::remove(go.c_str());
  return rc;
}

TEST(PostgresSecrets, PasswordFromAFileConnects) {
  std::string file = private_file("lockkit-pw-", pg().password() + "\n");
  auto api = lockkit::open(url_without_password("schema=secrets&password_file=" + file));
  auto lock = api->try_acquire(unique("file/"), 10s);
  EXPECT_TRUE(lock);
  std::remove(file.c_str());
}

TEST(PostgresSecrets, PasswordFromAnEnvironmentVariableConnects) {
  EXPECT_EQ(connect_in_worker(url_without_password("schema=secrets&password_env=LOCKKIT_PG_PW"),
                              {"LOCKKIT_PG_PW=" + pg().password()}),
            0)
      << "see the worker's stderr above";
}

TEST(PostgresSecrets, WrongPasswordFromAFileIsAuthAndNeverPrinted) {
  std::string wrong = "wrong-" + make_token();
  std::string file = private_file("lockkit-pw-", wrong + "\r\n");
  auto api = lockkit::open(url_without_password("schema=secrets&password_file=" + file));
  try {
    (void)api->try_acquire("k", 10s);
    FAIL() << "a wrong password was accepted";
  } catch (const BackendError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kAuth) << what;
    EXPECT_NE(what.find("password authentication failed"), std::string::npos) << what;
    for (const auto& piece : secret_pieces(wrong)) {
      EXPECT_EQ(what.find(piece), std::string::npos) << "\"" << piece << "\" leaked: " << what;
    }
  }
  std::remove(file.c_str());
}

TEST(PostgresSecrets, PasswordInTwoPlacesOrAMissingSourceIsAClearError) {
  const std::string secret = "Zqx7Secret" + make_token().substr(0, 8);
  std::string file = private_file("lockkit-pw-", secret + "\n");
  const std::string base =
      "postgres://lockkit:" + secret + "@127.0.0.1:" + std::to_string(pg().port()) + "/lockkit?";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {base + "password_file=" + file, "one place"},
      {base + "password_env=LOCKKIT_PG_UNSET_" + make_token().substr(0, 6), "one place"},
      {base + "password=" + secret, "one place"},
      {url_without_password("password=" + secret + "&password_file=" + file), "one place"},
      {url_without_password("password_file=" + file + "&password_env=HOME"), "one place"},
      {url_without_password("password_file=" + file + ".missing"), "password_file"},
      {url_without_password("password_env=LOCKKIT_PG_UNSET_" + make_token().substr(0, 6)),
       "password_env"},
  };
  for (const auto& [url, says] : cases) {
    try {
      (void)lockkit::open(url);
      ADD_FAILURE() << "accepted: " << url;
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(says), std::string::npos) << what;
      for (const auto& piece : secret_pieces(secret)) {
        EXPECT_EQ(what.find(piece), std::string::npos) << "\"" << piece << "\" leaked: " << what;
      }
    }
  }
  std::remove(file.c_str());
}

// Without a password in the URL, libpq's own sources apply as libpq documents them; one given
// through password_file= outranks them (it is libpq's `password` keyword).
TEST(PostgresSecrets, LibpqPassfileAndPgpasswordStillWork) {
  std::string passfile =
      private_file("lockkit-pgpass-", "127.0.0.1:" + std::to_string(pg().port()) +
                                          ":lockkit:lockkit:" + pg().password() + "\n");
  auto api = lockkit::open(url_without_password("schema=secrets&passfile=" + passfile));
  EXPECT_TRUE(api->try_acquire(unique("passfile/"), 10s));
  std::remove(passfile.c_str());

  EXPECT_EQ(
      connect_in_worker(url_without_password("schema=secrets"), {"PGPASSWORD=" + pg().password()}),
      0)
      << "PGPASSWORD was not used; see the worker's stderr above";
  std::string file = private_file("lockkit-pw-", pg().password());  // no line ending
  EXPECT_EQ(connect_in_worker(url_without_password("schema=secrets&password_file=" + file),
                              {"PGPASSWORD=wrong-" + make_token()}),
            0)
      << "password_file= did not outrank PGPASSWORD; see the worker's stderr above";
  std::remove(file.c_str());
}

// ---- observer --------------------------------------------------------------------------------

// Records every event it sees (the string views live only during the call, so they are copied).
class Recorder final : public LockObserver {
 public:
  struct Seen {
    LockOperation operation;
    LockOutcome outcome;
    std::string backend;
    std::string key;
    std::chrono::nanoseconds latency;
    std::optional<ErrorKind> error;
    std::uint64_t fence;
  };
  void on_event(const LockEvent& e) override {
    std::lock_guard<std::mutex> guard(mu_);
    seen_.push_back(Seen{e.operation, e.outcome, std::string(e.backend), std::string(e.key),
                         e.latency, e.error, e.fence});
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> guard(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::vector<Seen> seen_;
};

TEST(PostgresObserver, SeesAcquireReleaseExtendAndErrorsWithTheBackendName) {
  auto api = lockkit::open(pg().url("schema=" + unique("observed_")));
  auto recorder = std::make_shared<Recorder>();
  api->set_observer(recorder);
  const std::string key = unique("observed/");
  auto lock = api->try_acquire(key, 10s);
  ASSERT_TRUE(lock);
  EXPECT_FALSE(api->try_acquire(key, 10s));
  EXPECT_TRUE(lock->extend(10s));
  const std::uint64_t fence = lock->fence();
  EXPECT_TRUE(lock->release());
  EXPECT_FALSE(api->release(key, make_token()));

  auto dead = lockkit::open(
      "postgres://lockkit:x@127.0.0.1:1/lockkit?connect_timeout=1s&command_timeout=1s");
  dead->set_observer(recorder);
  EXPECT_THROW((void)dead->try_acquire(key, 10s), BackendError);

  auto seen = recorder->seen();
  ASSERT_EQ(seen.size(), 6u);
  const std::vector<std::pair<LockOperation, LockOutcome>> expected = {
      {LockOperation::kTryAcquire, LockOutcome::kOk},
      {LockOperation::kTryAcquire, LockOutcome::kBusy},
      {LockOperation::kExtend, LockOutcome::kOk},
      {LockOperation::kRelease, LockOutcome::kOk},
      {LockOperation::kRelease, LockOutcome::kNotOurs},
      {LockOperation::kTryAcquire, LockOutcome::kError}};
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].operation, expected[i].first) << "event " << i;
    EXPECT_EQ(seen[i].outcome, expected[i].second) << "event " << i;
    EXPECT_EQ(seen[i].backend, "postgres") << "event " << i;
    EXPECT_EQ(seen[i].key, key) << "event " << i;
    EXPECT_GT(seen[i].latency.count(), 0) << "event " << i;  // a round trip to the server
  }
  EXPECT_EQ(seen[0].fence, fence);
  EXPECT_EQ(seen[5].error, ErrorKind::kUnavailable);
}

// ---- secrets in messages -------------------------------------------------------------------

TEST(PostgresUrl, HostileUrlsNeverShowTheirSecrets) {
  // Secrets whose every alphanumeric run is distinctive, so that a leaked fragment shows too.
  const std::vector<std::string> secrets = {
      "Zqa1/Zqb2",     "Zqa1#Zqb2",   "Zqa1?Zqb2",
      "Zqa1@Zqb2",     "Zqa1:Zqb2",   "Zqa1%Zqb2",
      "Zqa1 Zqb2",     "Zqa1%40Zqb2", "Zqa1/Zqb2?Zqc3#Zqd4@Zqe5",
      "Zqa1&Zqb2",     "Zqa1=Zqb2",   "Zqa1/2345",
      "Zqa1@h:99/Zqb2"};
  std::vector<std::string> urls;
  for (const auto& s : secrets) {
    for (std::string scheme : {"postgres", "postgresql", "redis", "sqlite"}) {
      urls.push_back(scheme + "://u:" + s + "@127.0.0.1:1/db");
      urls.push_back(scheme + "://:" + s + "@127.0.0.1:1");
      urls.push_back(scheme + "://u:" + s + "@127.0.0.1:1/db?connect_timeout=1s");
      urls.push_back(scheme + "://u:" + s + "@/tmp/x.db");
      urls.push_back(scheme + "://127.0.0.1:1/db?password=" + s);
      urls.push_back(scheme + "://127.0.0.1:1/db?sslmode=disable&sslpassword=" + s + "&x=1");
      urls.push_back(scheme + "://127.0.0.1:1/db?PassWord=" + s + "&bogus=1");
    }
  }
  for (std::size_t i = 0; i < urls.size(); ++i) {
    const std::string& url = urls[i];
    const std::string& secret = secrets[i / 28];
    std::vector<std::string> texts = {redact_url(url)};
    try {
      auto api = lockkit::open(url);
      (void)api->try_acquire("k", 10s);  // 127.0.0.1:1 refuses: a connect error
    } catch (const std::exception& e) {
      texts.push_back(e.what());
    }
    for (const auto& text : texts) {
      for (const auto& piece : secret_pieces(secret)) {
        EXPECT_EQ(text.find(piece), std::string::npos)
            << "\"" << piece << "\" of the secret in: " << text << "\n  from " << url;
      }
    }
  }
}

}  // namespace
}  // namespace lockkit::testing
