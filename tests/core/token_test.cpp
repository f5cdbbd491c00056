// SPDX-License-Identifier: MIT
// Owner tokens: format, uniqueness across threads and across fork.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/token.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {
namespace {

TEST(MakeToken, Is32LowercaseHexCharacters) {
  for (int i = 0; i < 1000; ++i) {
    std::string t = make_token();
    ASSERT_EQ(t.size(), 32u);
    ASSERT_EQ(t.find_first_not_of("0123456789abcdef"), std::string::npos) << t;
  }
}

TEST(Hex16, WritesEveryByteValueAsTwoLowercaseDigitsHighNibbleFirst) {
  unsigned char in[16];
  char out[32];
  for (int first = 0; first < 256; first += 16) {
    for (int i = 0; i < 16; ++i) in[i] = static_cast<unsigned char>(first + i);
    detail::hex16(in, out);
    std::string expected;
    for (int i = 0; i < 16; ++i) {
      char b[3];
      std::snprintf(b, sizeof b, "%02x", in[i]);
      expected += b;
    }
    EXPECT_EQ(std::string(out, 32), expected);
  }
}

// RFC 8439, appendix A.1, test vectors #1 and #2: the all-zero key, blocks 0 and 1.
TEST(ChaCha20, MatchesTheRfcTestVectors) {
  std::array<std::uint32_t, 8> key{};
  unsigned char out[256];
  detail::chacha20_four_blocks(key.data(), 0, out);
  auto block_prefix = [&](int block) {
    std::string hex;
    for (int word = 0; word < 4; ++word) {
      for (int byte = 0; byte < 4; ++byte) {
        char b[3];
        std::snprintf(b, sizeof b, "%02x", out[16 * word + 4 * block + byte]);
        hex += b;
      }
    }
    return hex;
  };
  EXPECT_EQ(block_prefix(0), "76b8e0ada0f13d90405d6ae55386bd28");
  EXPECT_EQ(block_prefix(1), "9f07e7be5551387a98ba977c732d080d");
}

// The AVX2 path computes the same blocks as the portable one, only laid out eight wide.
TEST(ChaCha20, EightBlocksMatchFourBlocksTwice) {
  if (!detail::have_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::array<std::uint32_t, 8> key{};
  for (std::uint32_t i = 0; i < 8; ++i) key[i] = 0x01020304u * (i + 1);
  const std::uint64_t counter = (std::uint64_t{7} << 32) + 16;  // high word used too
  unsigned char eight[512];
  unsigned char four[2][256];
  detail::chacha20_eight_blocks_avx2(key.data(), counter, eight);
  detail::chacha20_four_blocks(key.data(), counter, four[0]);
  detail::chacha20_four_blocks(key.data(), counter + 4, four[1]);
  for (int block = 0; block < 8; ++block) {
    for (int word = 0; word < 16; ++word) {
      EXPECT_EQ(0, std::memcmp(eight + 32 * word + 4 * block,
                               four[block / 4] + 16 * word + 4 * (block % 4), 4))
          << "block " << block << " word " << word;
    }
  }
}

// A broken generator (a lane left at zero, bytes used twice) skews the digits long before it
// repeats a whole token.
TEST(MakeToken, HexDigitsAreEvenlySpread) {
  std::array<long, 16> counts{};
  constexpr int kTokens = 20000;
  for (int i = 0; i < kTokens; ++i) {
    for (char c : make_token())
      ++counts[static_cast<std::size_t>(c <= '9' ? c - '0' : c - 'a' + 10)];
  }
  const double expected = kTokens * 32.0 / 16.0;  // 40,000 per digit; sd about 194
  for (long n : counts) EXPECT_NEAR(static_cast<double>(n), expected, expected * 0.03);
}

TEST(MakeToken, NeverRepeatsAcrossThreads) {
  std::mutex mu;
  std::set<std::string> all;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> mine;
      for (int i = 0; i < 5000; ++i) mine.push_back(make_token());
      std::lock_guard<std::mutex> guard(mu);
      all.insert(mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(all.size(), 8u * 5000u);
}

TEST(MakeToken, ForkedChildDrawsFreshTokens) {
  (void)make_token();  // fill this thread's batch so the child inherits it
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string t = make_token();
    (void)!write(fds[1], t.data(), t.size());
    _exit(0);
  }
  close(fds[1]);
  std::string parent = make_token();
  char buf[32];
  ASSERT_EQ(read(fds[0], buf, sizeof buf), 32);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_NE(std::string(buf, 32), parent) << "parent and child handed out the same token";
}

}  // namespace
}  // namespace lockkit
