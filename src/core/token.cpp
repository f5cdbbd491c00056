// SPDX-License-Identifier: MIT
// Owner tokens: a per-thread ChaCha20 generator keyed from getrandom(2), fork-safe.
//
// One getrandom(2) call per token costs more than a whole memory: acquisition, and even in 4 KiB
// batches the kernel's ChaCha20 is a tenth of it. Each thread therefore runs its own ChaCha20
// (RFC 8439's block function, eight blocks at a time in vector registers), keyed with 256 bits
// from getrandom(2) and re-keyed from the kernel every kReseedRefills refills. After each refill
// the first 32 output bytes become the next key and are wiped ("fast key erasure", as
// arc4random does), so a later memory disclosure cannot reveal tokens already handed out.
#include "core/token.hpp"

#include <pthread.h>
#include <sys/random.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

// A fork copies every thread-local generator into the child; both processes would then hand
// out the same tokens. The generation changes in the child, which makes every generator re-key
// from the kernel before its next token.
std::atomic<std::uint64_t> g_generation{1};

void bump_generation() noexcept {
  g_generation.fetch_add(1, std::memory_order_relaxed);
}

const bool g_atfork_installed = [] {
  pthread_atfork(nullptr, nullptr, &bump_generation);
  return true;
}();

void kernel_random(void* out, std::size_t size) {
  auto* p = static_cast<unsigned char*>(out);
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = getrandom(p + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "getrandom");
    }
    got += static_cast<std::size_t>(n);
  }
}

// The ChaCha20 block function over N blocks at once, one vector lane per block: a macro, so
// that the same text compiles for 4 lanes in SSE2 registers and for 8 in AVX2 ones (a helper
// function taking 32-byte vectors would change the calling convention without AVX).
// The 64-bit block counter spans words 12 and 13 (the nonce words stay 0); callers advance it by
// N from a multiple of N, so the low word never wraps inside one call.
#define LOCKKIT_CHACHA20_BLOCKS(V, N, key, counter, out)                         \
  do {                                                                           \
    V x[16];                                                                     \
    x[0] = V{} + 0x61707865u; /* "expand 32-byte k" */                           \
    x[1] = V{} + 0x3320646eu;                                                    \
    x[2] = V{} + 0x79622d32u;                                                    \
    x[3] = V{} + 0x6b206574u;                                                    \
    for (int i = 0; i < 8; ++i) x[4 + i] = V{} + (key)[i];                       \
    const auto lo = static_cast<std::uint32_t>(counter);                         \
    const auto hi = static_cast<std::uint32_t>((counter) >> 32);                 \
    for (int i = 0; i < (N); ++i) x[12][i] = lo + static_cast<std::uint32_t>(i); \
    x[13] = V{} + hi;                                                            \
    x[14] = V{};                                                                 \
    x[15] = V{};                                                                 \
    V in[16];                                                                    \
    std::memcpy(in, x, sizeof(x));                                               \
    for (int round = 0; round < 10; ++round) {                                   \
      LOCKKIT_QUARTER(x[0], x[4], x[8], x[12]);                                  \
      LOCKKIT_QUARTER(x[1], x[5], x[9], x[13]);                                  \
      LOCKKIT_QUARTER(x[2], x[6], x[10], x[14]);                                 \
      LOCKKIT_QUARTER(x[3], x[7], x[11], x[15]);                                 \
      LOCKKIT_QUARTER(x[0], x[5], x[10], x[15]);                                 \
      LOCKKIT_QUARTER(x[1], x[6], x[11], x[12]);                                 \
      LOCKKIT_QUARTER(x[2], x[7], x[8], x[13]);                                  \
      LOCKKIT_QUARTER(x[3], x[4], x[9], x[14]);                                  \
    }                                                                            \
    for (int i = 0; i < 16; ++i) x[i] += in[i];                                  \
    std::memcpy((out), x, sizeof(x));                                            \
  } while (0)
#define LOCKKIT_ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define LOCKKIT_QUARTER(a, b, c, d) \
  do {                              \
    a += b;                         \
    d = LOCKKIT_ROTL(d ^ a, 16);    \
    c += d;                         \
    b = LOCKKIT_ROTL(b ^ c, 12);    \
    a += b;                         \
    d = LOCKKIT_ROTL(d ^ a, 8);     \
    c += d;                         \
    b = LOCKKIT_ROTL(b ^ c, 7);     \
  } while (0)

// Four or eight 32-bit lanes: word i of that many consecutive ChaCha20 blocks.
using Lanes4 = std::uint32_t __attribute__((vector_size(16)));
using Lanes8 = std::uint32_t __attribute__((vector_size(32)));

}  // namespace

namespace detail {

void chacha20_four_blocks(const std::uint32_t* key, std::uint64_t counter, unsigned char* out) {
  LOCKKIT_CHACHA20_BLOCKS(Lanes4, 4, key, counter, out);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) void chacha20_eight_blocks_avx2(const std::uint32_t* key,
                                                                std::uint64_t counter,
                                                                unsigned char* out) {
  LOCKKIT_CHACHA20_BLOCKS(Lanes8, 8, key, counter, out);
}

bool have_avx2() noexcept {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}
#else
void chacha20_eight_blocks_avx2(const std::uint32_t*, std::uint64_t, unsigned char*) {}
bool have_avx2() noexcept {
  return false;
}
#endif

}  // namespace detail

namespace {

class Generator {
 public:
  // Returns 16 fresh bytes; each output byte is used once.
  const unsigned char* next16() {
    std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
    if (generation != generation_) {
      rekey_from_kernel();
      generation_ = generation;
    }
    if (used_ + 16 > out_.size()) refill();
    const unsigned char* p = out_.data() + used_;
    used_ += 16;
    return p;
  }

  // Wipes the bytes `next16` returned last.
  void wipe_last() noexcept { std::memset(out_.data() + used_ - 16, 0, 16); }

 private:
  static constexpr unsigned kReseedRefills = 2048;  // about 61,000 tokens

  void rekey_from_kernel() {
    kernel_random(key_.data(), sizeof(key_));
    counter_ = 0;
    refills_ = 0;
    used_ = out_.size();
  }

  // Eight blocks per refill: in one AVX2 call where the CPU has it, else in two SSE2 ones.
  void refill() {
    if (++refills_ >= kReseedRefills) rekey_from_kernel();
    if (detail::have_avx2()) {
      detail::chacha20_eight_blocks_avx2(key_.data(), counter_, out_.data());
    } else {
      detail::chacha20_four_blocks(key_.data(), counter_, out_.data());
      detail::chacha20_four_blocks(key_.data(), counter_ + 4, out_.data() + 256);
    }
    counter_ += 8;
    // Fast key erasure: the first 32 bytes key the next refill and are never handed out.
    std::memcpy(key_.data(), out_.data(), sizeof(key_));
    std::memset(out_.data(), 0, sizeof(key_));
    used_ = sizeof(key_);
  }

  std::array<std::uint32_t, 8> key_{};
  std::uint64_t counter_ = 0;
  std::uint64_t generation_ = 0;  // 0: not keyed yet
  unsigned refills_ = 0;
  alignas(32) std::array<unsigned char, 512> out_{};
  std::size_t used_ = 512;
};

thread_local Generator t_generator;

}  // namespace

namespace detail {

// One byte per vector lane, so the same code on either byte order: two shuffles interleave the
// high and low nibbles, a compare picks the letters: 31 instructions for all 32 characters, no
// loop (four 64-bit word tricks of about 20 instructions each before).
void hex16(const unsigned char* in, char* out) noexcept {
  using Bytes = unsigned char __attribute__((vector_size(16)));
  Bytes bytes;
  std::memcpy(&bytes, in, 16);
  const Bytes high = bytes >> 4;
  const Bytes low = bytes & 0xF;
#if defined(__clang__)
  const Bytes first =
      __builtin_shufflevector(high, low, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const Bytes second = __builtin_shufflevector(high, low, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13,
                                               29, 14, 30, 15, 31);
#else
  const Bytes first =
      __builtin_shuffle(high, low, Bytes{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23});
  const Bytes second = __builtin_shuffle(
      high, low, Bytes{8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31});
#endif
  auto digits = [](Bytes nibbles) {
    const Bytes letters = reinterpret_cast<Bytes>(nibbles > 9) & ('a' - '0' - 10);
    return nibbles + '0' + letters;
  };
  const Bytes a = digits(first);
  const Bytes b = digits(second);
  std::memcpy(out, &a, 16);
  std::memcpy(out + 16, &b, 16);
}

void fill_token(char* out) {
  (void)g_atfork_installed;
  Generator& gen = t_generator;
  hex16(gen.next16(), out);
  gen.wipe_last();
}

}  // namespace detail

std::string make_token() {
  std::string token(detail::kTokenChars, '\0');
  detail::fill_token(token.data());
  return token;
}

}  // namespace lockkit
