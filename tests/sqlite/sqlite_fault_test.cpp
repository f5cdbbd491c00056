// SPDX-License-Identifier: MIT
// sqlite:// when the disk fails under it: a VFS shim in front of SQLite's own (the real file
// system underneath) makes fsync of the WAL fail on demand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <string>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/sqlite.hpp"
#include "support/temp_dir.hpp"

namespace lockkit::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::atomic<bool> g_fail_wal_sync{false};
sqlite3_vfs* g_real = nullptr;

struct ShimFile {
  sqlite3_file base;
  bool wal;
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

ShimFile* shim(sqlite3_file* f) {
  return reinterpret_cast<ShimFile*>(f);
}
const sqlite3_io_methods* real_io(sqlite3_file* f) {
  return shim(f)->real()->pMethods;
}

int shim_close(sqlite3_file* f) {
  return real_io(f)->xClose(shim(f)->real());
}
int shim_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return real_io(f)->xRead(shim(f)->real(), buf, n, off);
}
int shim_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  return real_io(f)->xWrite(shim(f)->real(), buf, n, off);
}
int shim_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real_io(f)->xTruncate(shim(f)->real(), size);
}
int shim_sync(sqlite3_file* f, int flags) {
  if (shim(f)->wal && g_fail_wal_sync.load()) return SQLITE_IOERR_FSYNC;
  return real_io(f)->xSync(shim(f)->real(), flags);
}
int shim_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_io(f)->xFileSize(shim(f)->real(), size);
}
int shim_lock(sqlite3_file* f, int l) {
  return real_io(f)->xLock(shim(f)->real(), l);
}
int shim_unlock(sqlite3_file* f, int l) {
  return real_io(f)->xUnlock(shim(f)->real(), l);
}
int shim_check(sqlite3_file* f, int* out) {
  return real_io(f)->xCheckReservedLock(shim(f)->real(), out);
}
int shim_control(sqlite3_file* f, int op, void* arg) {
  return real_io(f)->xFileControl(shim(f)->real(), op, arg);
}
int shim_sector(sqlite3_file* f) {
  return real_io(f)->xSectorSize(shim(f)->real());
}
int shim_caps(sqlite3_file* f) {
  return real_io(f)->xDeviceCharacteristics(shim(f)->real());
}
int shim_shm_map(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  return real_io(f)->xShmMap(shim(f)->real(), page, size, extend, out);
}
int shim_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real_io(f)->xShmLock(shim(f)->real(), offset, n, flags);
}
void shim_shm_barrier(sqlite3_file* f) {
  real_io(f)->xShmBarrier(shim(f)->real());
}
int shim_shm_unmap(sqlite3_file* f, int del) {
  return real_io(f)->xShmUnmap(shim(f)->real(), del);
}

// Version 2: no memory-mapped I/O (xFetch), so SQLite reads through xRead.
const sqlite3_io_methods kShimIo = {
    2,         shim_close,   shim_read,     shim_write,       shim_truncate,  shim_sync,
    shim_size, shim_lock,    shim_unlock,   shim_check,       shim_control,   shim_sector,
    shim_caps, shim_shm_map, shim_shm_lock, shim_shm_barrier, shim_shm_unmap, nullptr,
    nullptr};

int shim_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  ShimFile* file = shim(f);
  std::memset(file, 0, sizeof(ShimFile));
  int rc = g_real->xOpen(g_real, name, file->real(), flags, out_flags);
  if (rc == SQLITE_OK && file->real()->pMethods) {
    file->wal = (flags & SQLITE_OPEN_WAL) != 0;
    file->base.pMethods = &kShimIo;
  }
  return rc;
}

// Installs the shim as the default VFS once, for the whole test program.
void install_shim() {
  static sqlite3_vfs vfs = [] {
    g_real = sqlite3_vfs_find(nullptr);
    sqlite3_vfs v = *g_real;
    v.zName = "lockkit-fault-shim";
    v.szOsFile = static_cast<int>(sizeof(ShimFile)) + g_real->szOsFile;
    v.xOpen = shim_open;
    v.pAppData = nullptr;
    return v;
  }();
  static bool registered = sqlite3_vfs_register(&vfs, 1) == SQLITE_OK;
  ASSERT_TRUE(registered);
}

TEST(SqliteFaults, FailedCommitIsReportedInDoubt) {
  install_shim();
  TempDir dir;
  const std::string path = dir.file("locks.db");
  // sync=full: every commit syncs the WAL, so the fault hits the commit itself.
  auto api = lockkit::open("sqlite://" + path + "?sync=full");
  ASSERT_TRUE(api->try_acquire("warm-up", 10s));  // the shim works when it does not fail
  g_fail_wal_sync = true;
  try {
    (void)api->try_acquire("k", 10s);
    ADD_FAILURE() << "a commit whose fsync failed was reported as a success";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInDoubt) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr("release was attempted"));
  }
  g_fail_wal_sync = false;
  // The store recovers: the key is either free or held by the in-doubt lease until its TTL.
  EXPECT_NO_THROW({
    auto info = api->status("k");
    if (!info) {
      EXPECT_TRUE(api->try_acquire("k", 10s));
    }
  });
}

TEST(SqliteFaults, DefaultSyncDoesNotWaitForTheDiskOnEveryCommit) {
  install_shim();
  TempDir dir;
  auto api = make_sqlite_lock_api({.path = dir.file("locks.db")});
  ASSERT_TRUE(api->try_acquire("warm-up", 10s));
  g_fail_wal_sync = true;  // would fail any commit that fsyncs the WAL
  bool acquired = false;
  EXPECT_NO_THROW(acquired = api->try_acquire("k", 10s).has_value());
  g_fail_wal_sync = false;
  EXPECT_TRUE(acquired);
}

}  // namespace
}  // namespace lockkit::testing
