// SPDX-License-Identifier: MIT
// Internal: owner tokens written straight into a caller's buffer (no allocation).
#ifndef LOCKKIT_SRC_CORE_TOKEN_HPP_
#define LOCKKIT_SRC_CORE_TOKEN_HPP_

#include <cstddef>
#include <cstdint>

namespace lockkit::detail {

inline constexpr std::size_t kTokenChars = 32;

// Writes a fresh owner token, 32 lowercase hex characters (128 unpredictable bits), to `out`.
// Throws `std::system_error` if the kernel's CSPRNG cannot be read.
void fill_token(char* out);

// Writes the 16 bytes at `in` as 32 lowercase hex characters to `out`, high nibble first.
void hex16(const unsigned char* in, char* out) noexcept;

// Writes ChaCha20 blocks `counter` .. `counter + 3` under the 8-word `key` (nonce 0) to `out`,
// 256 bytes, interleaved: bytes 16*i .. 16*i+15 are word i of each of the four blocks.
void chacha20_four_blocks(const std::uint32_t* key, std::uint64_t counter, unsigned char* out);

// The same for blocks `counter` .. `counter + 7`, 512 bytes (bytes 32*i .. 32*i+31 are word i of
// each of the eight blocks), in AVX2 registers. Call only if `have_avx2()`.
void chacha20_eight_blocks_avx2(const std::uint32_t* key, std::uint64_t counter,
                                unsigned char* out);
bool have_avx2() noexcept;

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_TOKEN_HPP_
