// SPDX-License-Identifier: MIT
// The sqlite:// backend's LeaseStore: the SQL of acquire, release, extend, status and list on
// the lease table, run through the connection pool; and the factories.
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/sqlite.hpp"
#include "sqlite/sqlite_connection.hpp"
#include "sqlite/sqlite_schema.hpp"

namespace lockkit {
namespace detail::sqlite {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// Every this many acquisitions (by fence), the acquiring transaction deletes all expired rows.
constexpr std::int64_t kSweepEvery = 64;
// Renewals per transaction in `extend_many`: the file's write lock is held for a few
// milliseconds at most, so other processes' calls are not held up for long.
constexpr std::size_t kExtendChunk = 1000;

// Whether a row's lease is over, seen by this process. ?10 our boot id, ?11 the host's
// CLOCK_MONOTONIC, ?12 the furthest monotonic expiry a live lease can have, ?13 CLOCK_REALTIME.
// A row written under our boot id compares on the monotonic clock; any other row (another boot,
// or another view of this one: a container or bind-mounted boot id) only by its wall-clock bound,
// which a live holder's lease never passes.
#define LOCKKIT_SQLITE_DEAD                                                      \
  "(CASE WHEN lockkit_leases.boot = ?10 AND lockkit_leases.expires_mono <= ?12 " \
  "THEN lockkit_leases.expires_mono <= ?11 ELSE lockkit_leases.expires_wall <= ?13 END)"
// Time left, by the same rule.
#define LOCKKIT_SQLITE_LEFT                                                      \
  "(CASE WHEN lockkit_leases.boot = ?10 AND lockkit_leases.expires_mono <= ?12 " \
  "THEN lockkit_leases.expires_mono - ?11 ELSE lockkit_leases.expires_wall - ?13 END)"

const std::array<const char*, kStmtCount> kSql = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    // Takes a free or dead key; returns no row if it is held. The new fence is the counter + 1;
    // the caller stores it back in the same transaction. ?3 monotonic, ?4 wall-clock expiry.
    "INSERT INTO lockkit_leases (key, token, fence, expires_mono, boot, expires_wall) "
    "VALUES (?1, ?2, (SELECT value + 1 FROM lockkit_meta WHERE name = 'fence'), ?3, ?10, ?4) "
    "ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, "
    "expires_mono = excluded.expires_mono, boot = excluded.boot, "
    "expires_wall = excluded.expires_wall WHERE " LOCKKIT_SQLITE_DEAD " RETURNING fence",
    "UPDATE lockkit_meta SET value = ?1 WHERE name = 'fence'",
    "DELETE FROM lockkit_leases WHERE " LOCKKIT_SQLITE_DEAD,
    // Deletes our lease, or a dead one (reclaimed either way); says whether it was ours.
    "DELETE FROM lockkit_leases WHERE key = ?1 AND (token = ?2 OR " LOCKKIT_SQLITE_DEAD
    ") RETURNING token = ?2 AND NOT " LOCKKIT_SQLITE_DEAD,
    "UPDATE lockkit_leases SET expires_mono = ?3, boot = ?10, expires_wall = ?4 "
    "WHERE key = ?1 AND token = ?2 AND NOT " LOCKKIT_SQLITE_DEAD,
    "SELECT fence, " LOCKKIT_SQLITE_LEFT
    " FROM lockkit_leases WHERE key = ?1 AND NOT " LOCKKIT_SQLITE_DEAD,
    // Keys sort as memcmp, like std::string: the caller stops at the first key past the prefix.
    "SELECT key, fence, " LOCKKIT_SQLITE_LEFT
    " FROM lockkit_leases WHERE key >= ?1 AND NOT " LOCKKIT_SQLITE_DEAD " ORDER BY key",
};

#undef LOCKKIT_SQLITE_DEAD
#undef LOCKKIT_SQLITE_LEFT

milliseconds remaining(std::int64_t left_ns) {
  return std::chrono::ceil<milliseconds>(nanoseconds(left_ns));
}

}  // namespace

const char* statement_sql(StmtId id) noexcept {
  return kSql[id];
}

// The lease table of one SQLite file, over a pool of connections to it; what
// `make_sqlite_store` returns and `make_sqlite_lock_api` wraps. Stores on the same file share
// its leases through SQLite's locking, as processes do.
// Thread safety: safe to share; calls may run concurrently.
class SqliteStore final : public LeaseStore {
 public:
  explicit SqliteStore(SqliteOptions options) : pool_(std::move(options)) {}

  std::string_view backend() const noexcept override { return "sqlite"; }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       milliseconds ttl) override;
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, milliseconds ttl) override;
  void extend_many(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix) override;

 private:
  SqlitePool pool_;
};

std::optional<std::uint64_t> SqliteStore::acquire(std::string_view key, std::string_view token,
                                                  milliseconds ttl) {
  SqliteSession s(pool_, "try_acquire", key);
  s.exec(kBegin);
  // Read after the write lock is ours: every earlier commit happened before this instant.
  const Now now = pool_.file().clocks();
  std::optional<std::uint64_t> fence;
  {
    sqlite3_stmt* acquire = s.stmt(kAcquire);
    ResetGuard reset(acquire);
    bind_blob(acquire, 1, key);
    bind_blob(acquire, 2, token);
    sqlite3_bind_int64(acquire, 3, now.mono + to_ns(ttl));
    sqlite3_bind_int64(acquire, 4, now.wall + to_ns(ttl) + to_ns(kWallMargin));
    pool_.file().bind_clocks(acquire, now);
    if (s.step(acquire)) {
      fence = static_cast<std::uint64_t>(sqlite3_column_int64(acquire, 0));
      if (s.step(acquire)) s.unexpected_row();  // runs the statement to completion
    }
  }
  if (fence) {
    sqlite3_stmt* set_fence = s.stmt(kSetFence);
    {
      ResetGuard reset(set_fence);
      sqlite3_bind_int64(set_fence, 1, static_cast<std::int64_t>(*fence));
      if (s.step(set_fence)) s.unexpected_row();
    }
    if (*fence % kSweepEvery == 0) {
      sqlite3_stmt* sweep = s.stmt(kSweep);
      ResetGuard reset(sweep);
      pool_.file().bind_clocks(sweep, now);
      if (s.step(sweep)) s.unexpected_row();
    }
  }
  sqlite3_stmt* commit = s.stmt(kCommit);
  ResetGuard reset(commit);
  int rc = sqlite3_step(commit);
  if (rc != SQLITE_DONE) {
    // BUSY leaves the transaction open (rolled back by the session): nothing was written.
    // Any other failure may come after the WAL frames reached the file, where a later
    // recovery would find them: our lease is in doubt, and the core deletes it with our token
    // (on a new connection: this one is dropped) before passing the error on.
    s.fail(rc, fence && (rc & 0xff) != SQLITE_BUSY);
  }
  return fence;
}

bool SqliteStore::release(std::string_view key, std::string_view token) {
  SqliteSession s(pool_, "release", key);
  sqlite3_stmt* stmt = s.stmt(kRelease);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, key);
  bind_blob(stmt, 2, token);
  pool_.file().bind_clocks(stmt, pool_.file().clocks());
  bool ours = false;
  while (s.step(stmt)) ours = sqlite3_column_int(stmt, 0) != 0;
  return ours;
}

bool SqliteStore::extend(std::string_view key, std::string_view token, milliseconds ttl) {
  SqliteSession s(pool_, "extend", key);
  sqlite3_stmt* stmt = s.stmt(kExtend);
  ResetGuard reset(stmt);
  const Now now = pool_.file().clocks();
  bind_blob(stmt, 1, key);
  bind_blob(stmt, 2, token);
  sqlite3_bind_int64(stmt, 3, now.mono + to_ns(ttl));
  sqlite3_bind_int64(stmt, 4, now.wall + to_ns(ttl) + to_ns(kWallMargin));
  pool_.file().bind_clocks(stmt, now);
  if (s.step(stmt)) s.unexpected_row();
  return sqlite3_changes(s.db()) > 0;
}

// One transaction (one commit: one WAL append and, in the durable modes, one sync) per
// `kExtendChunk` renewals, each the same statement as `extend`, against one clock reading
// taken once the write lock is ours.
void SqliteStore::extend_many(std::span<const ExtendRequest> requests,
                              std::span<ExtendOutcome> out) {
  const std::size_t n = std::min(requests.size(), out.size());
  for (std::size_t begin = 0; begin < n; begin += kExtendChunk) {
    const std::size_t end = std::min(n, begin + kExtendChunk);
    try {
      SqliteSession s(pool_, "extend", end - begin == 1 ? requests[begin].key : "(a batch)");
      s.exec(kBegin);
      const Now now = pool_.file().clocks();
      sqlite3_stmt* stmt = s.stmt(kExtend);
      for (std::size_t i = begin; i < end; ++i) {
        ResetGuard reset(stmt);
        bind_blob(stmt, 1, requests[i].key);
        bind_blob(stmt, 2, requests[i].token);
        sqlite3_bind_int64(stmt, 3, now.mono + to_ns(requests[i].ttl));
        sqlite3_bind_int64(stmt, 4, now.wall + to_ns(requests[i].ttl) + to_ns(kWallMargin));
        pool_.file().bind_clocks(stmt, now);
        if (s.step(stmt)) s.unexpected_row();
        out[i] = sqlite3_changes(s.db()) > 0 ? ExtendOutcome::kExtended : ExtendOutcome::kNotOurs;
      }
      sqlite3_stmt* commit = s.stmt(kCommit);
      ResetGuard reset(commit);
      int rc = sqlite3_step(commit);
      if (rc != SQLITE_DONE) s.fail(rc);
    } catch (const BackendError&) {
      std::fill(out.begin() + static_cast<std::ptrdiff_t>(begin),
                out.begin() + static_cast<std::ptrdiff_t>(n), ExtendOutcome::kFailed);
      if (begin == 0) throw;  // nothing done: the round failed as a whole
      return;                 // the file is failing: the rest would wait out the same timeout
    }
  }
}

std::optional<LockInfo> SqliteStore::status(std::string_view key) {
  SqliteSession s(pool_, "status", key);
  sqlite3_stmt* stmt = s.stmt(kStatus);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, key);
  pool_.file().bind_clocks(stmt, pool_.file().clocks());
  if (!s.step(stmt)) return std::nullopt;
  return LockInfo{std::string(key), static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 0)),
                  remaining(sqlite3_column_int64(stmt, 1))};
}

std::vector<LockInfo> SqliteStore::list(std::string_view prefix) {
  SqliteSession s(pool_, "list");
  sqlite3_stmt* stmt = s.stmt(kList);
  ResetGuard reset(stmt);
  bind_blob(stmt, 1, prefix);
  pool_.file().bind_clocks(stmt, pool_.file().clocks());
  std::vector<LockInfo> out;
  while (s.step(stmt)) {
    std::string_view key = column_blob(stmt, 0);
    if (key.substr(0, prefix.size()) != prefix) break;  // sorted: past the prefix's range
    out.push_back(LockInfo{std::string(key),
                           static_cast<std::uint64_t>(sqlite3_column_int64(stmt, 1)),
                           remaining(sqlite3_column_int64(stmt, 2))});
  }
  return out;
}

}  // namespace detail::sqlite

std::shared_ptr<LeaseStore> make_sqlite_store(SqliteOptions options) {
  return std::make_shared<detail::sqlite::SqliteStore>(std::move(options));
}

std::shared_ptr<LockApi> make_sqlite_lock_api(SqliteOptions options) {
  return make_lock_api(make_sqlite_store(std::move(options)));
}

}  // namespace lockkit
