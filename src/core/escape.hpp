// SPDX-License-Identifier: MIT
// Internal: keys (and other untrusted bytes) made safe to quote in error messages.
#ifndef LOCKKIT_SRC_CORE_ESCAPE_HPP_
#define LOCKKIT_SRC_CORE_ESCAPE_HPP_

#include <string>
#include <string_view>

namespace lockkit::detail {

// Escapes a key for messages: printable ASCII as is, other bytes (and '"', '\') as \xNN, cut
// after 64 bytes with "...".
std::string escape_key(std::string_view key);

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_ESCAPE_HPP_
