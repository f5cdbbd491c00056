// SPDX-License-Identifier: MIT
// Minimal JSON output for the `lockkit` tool: byte-exact keys, never a token unless asked.
#ifndef LOCKKIT_CLI_JSON_HPP_
#define LOCKKIT_CLI_JSON_HPP_

#include <cstdint>
#include <string>
#include <string_view>

namespace lockkit::cli {

// Returns true if `bytes` is valid UTF-8 (no overlong forms, no surrogates).
bool is_utf8(std::string_view bytes) noexcept;

// Returns `bytes` as a quoted JSON string. Valid UTF-8 round-trips exactly (control characters
// and NUL as \u00XX); each byte of an invalid sequence becomes U+FFFD, so callers that must
// round-trip arbitrary bytes also emit `hex(bytes)` (see `append_key_fields`).
std::string json_string(std::string_view bytes);

// Returns lower-case hex of `bytes`.
std::string hex(std::string_view bytes);

// Appends `"key":"..."` and, when the key is not valid UTF-8, `,"key_hex":"..."` to `out`.
void append_key_fields(std::string& out, std::string_view key);

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_JSON_HPP_
