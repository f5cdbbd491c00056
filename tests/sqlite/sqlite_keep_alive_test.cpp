// SPDX-License-Identifier: MIT
// Lock::keep_alive on a real SQLite file: the kit's keep-alive cases (a DELETE behind the
// holder's back from another connection), and many kept-alive locks.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <stdexcept>
#include <string>

#include "lockkit/open.hpp"
#include "lockkit/testing/conformance.hpp"
#include "support/keep_alive_cases.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using namespace keep_alive;

// Deletes `key`'s lease row in the file at `path` with the sqlite3 library directly, as another
// program would.
void delete_row(const std::string& path, const std::string& key) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  std::string sql = "DELETE FROM lockkit_leases WHERE key = CAST('" + key + "' AS BLOB)";
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close_v2(db);
}

class SqliteKeepAlive : public ::testing::Test {
 protected:
  std::string url() const { return "sqlite://" + dir_.file("locks.db"); }

  TempDir dir_{"lockkit-sqlite-"};
};

// The kit's keep-alive cases, with the row deleted by the sqlite3 library behind the holder's
// back.
KeepAliveCase SqliteKeepAliveCase() {
  static TempDir dir{"lockkit-sqlite-"};
  const std::string path = dir.file("kit.db");
  return KeepAliveCase{
      .name = "File",
      .make = [path] { return lockkit::open("sqlite://" + path); },
      .ttl = 300ms,
      .slack = 0ms,
      .remove = [path](const std::string& key) { delete_row(path, key); },
      .pause = nullptr,
      .resume = nullptr,
      .make_impatient = nullptr,
      .call_limit = 0ms,
  };
}

INSTANTIATE_TEST_SUITE_P(Sqlite, KeepAliveConformance, ::testing::Values(SqliteKeepAliveCase()),
                         KeepAliveCaseName);

TEST_F(SqliteKeepAlive, ThousandLocksInOneProcess) {
  auto api = lockkit::open(url());
  ManyLocksFewThreads(*api, "many/", 1000, 1500ms, 2s);
}

}  // namespace
}  // namespace lockkit::testing
