// SPDX-License-Identifier: MIT
// The contract suite on sqlite://: every `make` opens the same file anew, like another process;
// and the kit's store-level and fault cases on the bare store of `make_sqlite_store`.
#include <thread>

#include "conformance/lock_api_conformance.hpp"
#include "lockkit/sqlite.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

ConformanceCase FileCase() {
  static TempDir dir;  // lives until exit; every case opens the same file
  std::string path = dir.file("locks.db");
  return ConformanceCase{
      .name = "File",
      .make = [path]() -> std::shared_ptr<LockApi> { return make_sqlite_lock_api({.path = path}); },
      .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
      .expiry_ttl = std::chrono::milliseconds(400),  // generous: CI boxes are loaded
      .slack = std::chrono::milliseconds(5),
      .now = nullptr,
  };
}

StoreCase FileStoreCase() {
  static TempDir dir;
  std::string path = dir.file("locks.db");
  return StoreCase{
      .name = "File",
      .make_store = [path] { return make_sqlite_store({.path = path}); },
      // Made, then its directory removed before the first call opens the database.
      .make_unreachable =
          [] {
            TempDir gone;
            return make_sqlite_store({.path = gone.file("locks.db")});
          },
      .exclusive = true,
  };
}

INSTANTIATE_TEST_SUITE_P(Sqlite, LockApiConformance, ::testing::Values(FileCase()), CaseName);
INSTANTIATE_TEST_SUITE_P(Sqlite, LeaseStoreFaults, ::testing::Values(FileStoreCase()),
                         StoreCaseName);

}  // namespace
}  // namespace lockkit::testing
