// SPDX-License-Identifier: MIT
// Test support: temporary directories and file names, for every test binary and fixture.
#ifndef LOCKKIT_TESTS_SUPPORT_TEMP_DIR_HPP_
#define LOCKKIT_TESTS_SUPPORT_TEMP_DIR_HPP_

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace lockkit::testing {

// A fresh directory under $TMPDIR (or /tmp), named `<prefix>XXXXXX`, removed with its contents
// when destroyed (by the process that made it only: a forked child leaves it alone).
//   TempDir dir("lockkit-sqlite-");
//   auto db = dir.file("locks.db");
// Thread safety: const members are safe to share.
class TempDir {
 public:
  // Makes the directory; throws `std::runtime_error` if it cannot.
  explicit TempDir(std::string_view prefix = "lockkit-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  // Returns the directory as a string.
  std::string string() const { return path_.string(); }
  // Returns `name` inside the directory, as a string.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
  pid_t owner_;
};

// Returns a path under $TMPDIR (or /tmp) that nothing uses yet: `prefix` plus random
// characters. Nothing is created.
std::string temp_path(std::string_view prefix);

// Makes a fresh temporary directory (`lockkit-<what>-XXXXXX`); `remove_tree` deletes it.
std::string make_temp_dir(std::string_view what = "test");
// Deletes `dir` and everything in it, quietly.
void remove_tree(const std::string& dir);

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_TEMP_DIR_HPP_
