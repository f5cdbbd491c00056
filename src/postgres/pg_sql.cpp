// SPDX-License-Identifier: MIT
// The lease table's DDL and the one statement per operation.
#include "postgres/pg_sql.hpp"

#include <string>

namespace lockkit::detail::pg {
namespace {

// Replaces every `@` with the quoted schema; `@` occurs nowhere else in these texts.
std::string with_schema(std::string_view text, const std::string& quoted) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '@') {
      out += quoted;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

bool valid_schema_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > 63) return false;
  if (s.front() >= '0' && s.front() <= '9') return false;
  for (char c : s) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

Sql make_sql(std::string_view schema) {
  // Safe to quote this simply: a valid name holds no quote characters.
  const std::string q = "\"" + std::string(schema) + "\"";
  Sql sql;
  // A refusal must not lock or rewrite the row: `live` looks with a plain read first, and only
  // when no unexpired holder is seen does the INSERT run (the ON CONFLICT branch re-checks
  // expiry on the locked, latest row, so a race between two acquirers still has one winner).
  // A refused acquire thus takes no row lock, draws no fence and writes no WAL.
  // The fence is drawn under a transaction-scoped advisory lock on the key's hash, held until
  // COMMIT: without it, an acquirer could draw a fence, wait out another's insert, and insert
  // after that one had held and released the key, with a smaller fence than its predecessor.
  // A granted acquire also deletes up to 8 rows that expired before this transaction started
  // (`now()`, stable, so the expires_at index bounds the scan), skipping rows others locked;
  // FOR UPDATE re-checks expiry on the latest row version, and the lock keeps it expired.
  sql.acquire = with_schema(
      "WITH live AS ("
      "SELECT 1 FROM @.leases WHERE key = $1::bytea AND expires_at > clock_timestamp()), "
      "ins AS ("
      "INSERT INTO @.leases AS l (key, token, fence, expires_at) "
      "SELECT $1::bytea, $2::text, (SELECT nextval('@.fences') FROM (SELECT "
      "pg_advisory_xact_lock(1819239276, hashtext(md5($1::bytea)))) AS k), "
      "clock_timestamp() + $3::bigint * interval '1 millisecond' "
      "WHERE NOT EXISTS (SELECT 1 FROM live) "
      "ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, "
      "expires_at = excluded.expires_at WHERE l.expires_at <= clock_timestamp() "
      "RETURNING l.fence), "
      "reclaim AS ("
      "DELETE FROM @.leases d WHERE EXISTS (SELECT 1 FROM ins) AND d.key = ANY (ARRAY("
      "SELECT e.key FROM @.leases e WHERE EXISTS (SELECT 1 FROM ins) AND e.expires_at < now() "
      "AND e.key <> $1::bytea ORDER BY e.expires_at LIMIT " +
          std::to_string(kReclaimPerAcquire) +
          " FOR UPDATE SKIP LOCKED))) "
          "SELECT fence FROM ins",
      q);
  sql.release = with_schema(
      "DELETE FROM @.leases WHERE key = $1::bytea AND token = $2::text "
      "RETURNING expires_at > clock_timestamp()",
      q);
  sql.extend = with_schema(
      "UPDATE @.leases SET expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond' "
      "WHERE key = $1::bytea AND token = $2::text AND expires_at > clock_timestamp() "
      "RETURNING fence",
      q);
  // The same check and write as `extend`, for a whole batch in one statement (one transaction):
  // one round trip and one commit for many renewals.
  sql.extend_many = with_schema(
      "UPDATE @.leases AS l "
      "SET expires_at = clock_timestamp() + r.ttl * interval '1 millisecond' "
      "FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS r(key, token, ttl, i) "
      "WHERE l.key = decode(r.key, 'hex') AND l.token = r.token "
      "AND l.expires_at > clock_timestamp() RETURNING r.i",
      q);
  const std::string remaining =
      "ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint";
  sql.status = with_schema("SELECT fence, " + remaining +
                               " FROM @.leases WHERE key = $1::bytea AND "
                               "expires_at > clock_timestamp()",
                           q);
  sql.list = with_schema("SELECT key, fence, " + remaining +
                             " FROM @.leases WHERE key >= $1::bytea AND "
                             "($2::bytea IS NULL OR key < $2::bytea) AND "
                             "expires_at > clock_timestamp() ORDER BY key",
                         q);
  const std::string lit = "'" + q + "";  // '"schema"  (closed by the caller's text)
  sql.exists = "SELECT to_regclass(" + lit + ".leases') IS NOT NULL AND to_regclass(" + lit +
               ".fences') IS NOT NULL AND to_regclass(" + lit + ".meta') IS NOT NULL";
  sql.version = with_schema("SELECT value FROM @.meta WHERE name = 'schema_version'", q);
  // Serialised by a transaction-scoped advisory lock (released at COMMIT: no session state), so
  // processes creating the schema at once do not trip over each other's CREATE ... IF NOT EXISTS.
  sql.create = with_schema(
      "BEGIN; "
      "SELECT pg_advisory_xact_lock(1819239275, hashtext('lockkit schema " +
          std::string(schema) +
          "')); "
          "CREATE SCHEMA IF NOT EXISTS @; "
          "CREATE SEQUENCE IF NOT EXISTS @.fences AS bigint MINVALUE 1 NO CYCLE; "
          "CREATE TABLE IF NOT EXISTS @.leases ("
          "key bytea PRIMARY KEY, token text NOT NULL, fence bigint NOT NULL, "
          "expires_at timestamptz NOT NULL); "
          "CREATE INDEX IF NOT EXISTS leases_expires_at ON @.leases (expires_at); "
          "CREATE TABLE IF NOT EXISTS @.meta (name text PRIMARY KEY, value bigint NOT NULL); "
          "INSERT INTO @.meta VALUES ('schema_version', " +
          std::to_string(kSchemaVersion) +
          ") ON CONFLICT (name) DO NOTHING; "
          "COMMIT; "
          "SELECT value FROM @.meta WHERE name = 'schema_version'",
      q);
  return sql;
}

}  // namespace lockkit::detail::pg
