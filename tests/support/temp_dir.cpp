// SPDX-License-Identifier: MIT
// Temporary directories for tests: mkdtemp under $TMPDIR, removed by the process that made them.
#include "support/temp_dir.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "lockkit/lock_api.hpp"

namespace lockkit::testing {

std::string make_temp_dir(std::string_view what) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / ("lockkit-" + std::string(what) + "-XXXXXX"))
          .string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  }
  return tmpl;
}

void remove_tree(const std::string& dir) {
  std::error_code ec;
  // A test may have taken its own rights away (read-only directories): give them back first.
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(dir, ec);
}

TempDir::TempDir(std::string_view prefix) : owner_(::getpid()) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / (std::string(prefix) + "XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (::getpid() != owner_) return;  // a forked child leaves the parent's directory alone
  remove_tree(path_.string());
}

std::string temp_path(std::string_view prefix) {
  return (std::filesystem::temp_directory_path() /
          (std::string(prefix) + make_token().substr(0, 12)))
      .string();
}

}  // namespace lockkit::testing
