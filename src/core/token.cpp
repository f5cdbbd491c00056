// SPDX-License-Identifier: MIT
// Owner tokens: 128 bits from getrandom(2), drawn in per-thread batches.
#include <pthread.h>
#include <sys/random.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

// A fork copies every thread-local buffer into the child; both processes would then hand out
// the same tokens. The generation changes in the child, which makes every buffer refill.
std::atomic<std::uint64_t> g_generation{1};

void bump_generation() noexcept {
  g_generation.fetch_add(1, std::memory_order_relaxed);
}

const bool g_atfork_installed = [] {
  pthread_atfork(nullptr, nullptr, &bump_generation);
  return true;
}();

// One getrandom(2) call costs more than a whole memory: acquisition; 4 KiB at a time makes it
// one call per 256 tokens. The bytes are still the kernel CSPRNG's, each used once.
struct RandomBatch {
  std::array<unsigned char, 4096> bytes;
  std::size_t used = sizeof(bytes);
  std::uint64_t generation = 0;

  void refill() {
    std::size_t got = 0;
    while (got < bytes.size()) {
      ssize_t n = getrandom(bytes.data() + got, bytes.size() - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw std::system_error(errno, std::generic_category(), "getrandom");
      }
      got += static_cast<std::size_t>(n);
    }
    used = 0;
  }
};

thread_local RandomBatch t_batch;

}  // namespace

std::string make_token() {
  (void)g_atfork_installed;
  constexpr std::size_t kTokenBytes = 16;
  RandomBatch& batch = t_batch;
  std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  if (batch.generation != generation || batch.used + kTokenBytes > batch.bytes.size()) {
    batch.refill();
    batch.generation = generation;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token(kTokenBytes * 2, '\0');
  for (std::size_t i = 0; i < kTokenBytes; ++i) {
    unsigned char b = batch.bytes[batch.used + i];
    token[2 * i] = kHex[b >> 4];
    token[2 * i + 1] = kHex[b & 0xF];
  }
  // Wipe what was handed out, so a later memory disclosure does not reveal old tokens.
  std::memset(batch.bytes.data() + batch.used, 0, kTokenBytes);
  batch.used += kTokenBytes;
  return token;
}

}  // namespace lockkit
