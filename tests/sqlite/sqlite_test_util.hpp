// SPDX-License-Identifier: MIT
// Test helpers for the sqlite:// backend: a temporary directory removed with its contents.
#ifndef LOCKKIT_TESTS_SQLITE_SQLITE_TEST_UTIL_HPP_
#define LOCKKIT_TESTS_SQLITE_SQLITE_TEST_UTIL_HPP_

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace lockkit::testing {

// A fresh directory under $TMPDIR (or /tmp), removed recursively when destroyed.
class TempDir {
 public:
  TempDir() {
    std::string base = std::filesystem::temp_directory_path().string() + "/lockkit-sqlite-XXXXXX";
    if (!::mkdtemp(base.data())) throw std::runtime_error("mkdtemp failed for " + base);
    path_ = base;
    owner_ = ::getpid();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (::getpid() != owner_) return;  // a forked child leaves the parent's directory alone
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }

  const std::filesystem::path& path() const noexcept { return path_; }
  // Returns `name` inside the directory, as a string.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
  pid_t owner_;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SQLITE_SQLITE_TEST_UTIL_HPP_
