// SPDX-License-Identifier: MIT
// SqliteStore::extend_many: one transaction (one commit) per round of renewals, counted in the
// WAL file's commit frames.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/sqlite.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

// Returns the commits in the WAL file `path` since it was last restarted: frames of the current
// generation (their salts match the header's) that end a transaction (non-zero "database size
// after commit"); see https://www.sqlite.org/fileformat.html#the_write_ahead_log.
int wal_commits(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> wal((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
  if (wal.size() < 32) return 0;
  const std::uint32_t page = be32(&wal[8]);
  const std::uint32_t salt1 = be32(&wal[16]), salt2 = be32(&wal[20]);
  int commits = 0;
  for (std::size_t at = 32; at + 24 + page <= wal.size(); at += 24 + page) {
    if (be32(&wal[at + 8]) != salt1 || be32(&wal[at + 12]) != salt2) break;  // an old frame
    commits += be32(&wal[at + 4]) != 0;
  }
  return commits;
}

// 50 renewals are one commit, not 50; each gets its own answer.
TEST(SqliteExtendMany, FiftyRenewalsAreOneCommit) {
  TempDir dir("lockkit-sqlite-");
  const std::string path = dir.file("locks.db");
  auto store = make_sqlite_store(SqliteOptions{.path = path});
  std::vector<std::string> keys, tokens;
  for (int i = 0; i < 50; ++i) {
    keys.push_back("batch/" + std::to_string(i));
    tokens.push_back(make_token());
    ASSERT_TRUE(store->acquire(keys.back(), tokens.back(), 5s));
  }
  const std::string stranger = make_token();
  std::vector<ExtendRequest> requests;
  for (int i = 0; i < 50; ++i)
    requests.push_back({keys[i], i % 10 == 9 ? stranger : tokens[i], 30s});
  std::vector<ExtendOutcome> out(requests.size(), ExtendOutcome::kFailed);
  const int before = wal_commits(path + "-wal");
  ASSERT_GT(before, 0) << "no WAL to count commits in";
  store->extend_many(requests, out);
  const int commits = wal_commits(path + "-wal") - before;
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(static_cast<int>(out[i]),
              static_cast<int>(i % 10 == 9 ? ExtendOutcome::kNotOurs : ExtendOutcome::kExtended))
        << i;
  }
  EXPECT_EQ(commits, 1) << "the renewals were not one transaction";
  auto info = store->status(keys.front());
  ASSERT_TRUE(info);
  EXPECT_GT(info->remaining, 10s);
  info = store->status(keys[9]);
  ASSERT_TRUE(info);
  EXPECT_LE(info->remaining, 5s) << "someone else's lease was extended";
}

}  // namespace
}  // namespace lockkit::testing
