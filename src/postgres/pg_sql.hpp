// SPDX-License-Identifier: MIT
// Internal: the SQL of the postgres:// backend, for one schema (also read by tests and benches).
#ifndef LOCKKIT_SRC_POSTGRES_PG_SQL_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_SQL_HPP_

#include <cstdint>
#include <string>
#include <string_view>

namespace lockkit::detail::pg {

// The lease table layout this code reads and writes; stored in `<schema>.meta`.
inline constexpr std::int64_t kSchemaVersion = 1;
// Expired rows a granted acquire deletes at most (besides its own key's row, which it reuses).
inline constexpr int kReclaimPerAcquire = 8;

// Returns true if `schema` is 1..63 characters of [A-Za-z0-9_] not starting with a digit.
bool valid_schema_name(std::string_view schema) noexcept;

// Every statement, with the schema quoted in. Parameters are bound ($1 key bytea, $2 token text,
// $3 ttl in milliseconds int8), never spliced in.
struct Sql {
  std::string acquire;  // ($1, $2, $3) -> fence, or no row if held by someone else
  std::string release;  // ($1, $2) -> one row (still unexpired?) if the token owned the row
  std::string extend;   // ($1, $2, $3) -> one row if extended
  // ($1 keys in hex text[], $2 tokens text[], $3 ttls in ms int8[]) -> the 1-based position of
  // each lease extended, like `extend` for each
  std::string extend_many;
  std::string status;   // ($1) -> fence, remaining ms
  std::string list;     // ($1 lowest key, $2 first key past the prefix or NULL) -> key, fence, ms
  std::string exists;   // simple query: true if every object of the schema exists
  std::string version;  // simple query: the stored schema version
  std::string create;   // simple query: creates what is missing (safe to run concurrently)
};

// Returns the statements for `schema`, which must be a valid schema name.
Sql make_sql(std::string_view schema);

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_SQL_HPP_
