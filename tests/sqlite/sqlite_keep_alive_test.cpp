// SPDX-License-Identifier: MIT
// Lock::keep_alive on a real SQLite file: long holds, a DELETE behind the holder's back from
// another connection, max_hold, many kept-alive locks.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <stdexcept>
#include <string>

#include "lockkit/open.hpp"
#include "support/keep_alive_cases.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using namespace keep_alive;

class SqliteKeepAlive : public ::testing::Test {
 protected:
  std::string url() const { return "sqlite://" + dir_.file("locks.db"); }

  // Deletes `key`'s lease row with the sqlite3 library directly, as another program would.
  void delete_row(const std::string& key) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(dir_.file("locks.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
              SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    std::string sql = "DELETE FROM lockkit_leases WHERE key = CAST('" + key + "' AS BLOB)";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close_v2(db);
  }

  TempDir dir_{"lockkit-sqlite-"};
};

TEST_F(SqliteKeepAlive, KeptAliveForFiveTtlsNobodyElseTakesIt) {
  auto api = lockkit::open(url());
  auto other = lockkit::open(url());
  KeptAliveForFiveTtls(*api, *other, "five", 300ms);
}

TEST_F(SqliteKeepAlive, DeleteBehindTheHoldersBackIsNoticedWithinARenewalPeriod) {
  auto api = lockkit::open(url());
  DeletedBehindTheBackIsNoticed(*api, "deleted", 600ms, [&] { delete_row("deleted"); });
}

TEST_F(SqliteKeepAlive, MaxHoldStopsRenewalAndAnotherClientGetsTheKey) {
  auto api = lockkit::open(url());
  auto other = lockkit::open(url());
  MaxHoldRunsOut(*api, *other, "max-hold", 600ms);
}

TEST_F(SqliteKeepAlive, ThousandLocksInOneProcess) {
  auto api = lockkit::open(url());
  ManyLocksFewThreads(*api, "many/", 1000, 1500ms, 2s);
}

}  // namespace
}  // namespace lockkit::testing
