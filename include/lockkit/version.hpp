// SPDX-License-Identifier: MIT
// The library's version. These three numbers are the only place it is written down: CMake reads
// them for project(VERSION), the soname, the CMake package version and the pkg-config files.
#ifndef LOCKKIT_VERSION_HPP_
#define LOCKKIT_VERSION_HPP_

#define LOCKKIT_VERSION_MAJOR 0
#define LOCKKIT_VERSION_MINOR 1
#define LOCKKIT_VERSION_PATCH 0

#define LOCKKIT_VERSION_STR_(x) #x
#define LOCKKIT_VERSION_XSTR_(x) LOCKKIT_VERSION_STR_(x)
// "MAJOR.MINOR.PATCH"
#define LOCKKIT_VERSION_STRING                 \
  LOCKKIT_VERSION_XSTR_(LOCKKIT_VERSION_MAJOR) \
  "." LOCKKIT_VERSION_XSTR_(LOCKKIT_VERSION_MINOR) "." LOCKKIT_VERSION_XSTR_(LOCKKIT_VERSION_PATCH)

namespace lockkit {
inline constexpr const char* kVersion = LOCKKIT_VERSION_STRING;
}  // namespace lockkit

#endif  // LOCKKIT_VERSION_HPP_
