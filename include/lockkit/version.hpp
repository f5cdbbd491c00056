// SPDX-License-Identifier: MIT
// The library's version.
#ifndef LOCKKIT_VERSION_HPP_
#define LOCKKIT_VERSION_HPP_

#define LOCKKIT_VERSION_MAJOR 0
#define LOCKKIT_VERSION_MINOR 1
#define LOCKKIT_VERSION_PATCH 0

namespace lockkit {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace lockkit

#endif  // LOCKKIT_VERSION_HPP_
