// SPDX-License-Identifier: MIT
// lockkit::open and the scheme registry.
#include "lockkit/open.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "lockkit/memory.hpp"
#include "lockkit/noop.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

std::string OpenError(std::string_view url) {
  try {
    open(url);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Open, BuiltInSchemes) {
  EXPECT_EQ(open("memory:")->backend(), "memory");
  EXPECT_EQ(open("MEMORY:")->backend(), "memory");
  auto unlocked = open("noop:");
  EXPECT_TRUE(unlocked->try_acquire("k", 1s));
  auto locked = open("noop:locked");
  EXPECT_FALSE(locked->try_acquire("k", 1s));
  EXPECT_EQ(open("memory:?shards=8")->backend(), "memory");
  // The URL takes what MemoryOptions takes: up to 65536 shards.
  EXPECT_EQ(open("memory:?shards=65536")->backend(), "memory");
}

TEST(Open, EachMemoryUrlIsItsOwnTable) {
  auto a = open("memory:");
  auto b = open("memory:");
  auto held = a->try_acquire("k", 1s);
  EXPECT_TRUE(held);
  EXPECT_TRUE(b->try_acquire("k", 1s));
}

TEST(Open, UnknownSchemeListsTheKnownOnesAndHidesPasswords) {
  std::string message = OpenError("mongo://admin:topsecret@db:27017");
  EXPECT_NE(message.find("unknown scheme \"mongo\""), std::string::npos) << message;
  EXPECT_NE(message.find("memory:"), std::string::npos) << message;
  EXPECT_EQ(message.find("topsecret"), std::string::npos) << message;
}

TEST(Open, MalformedBuiltInUrlsAreRejected) {
  EXPECT_NE(OpenError("").find("missing scheme"), std::string::npos);
  EXPECT_NE(OpenError("memory://host").find("memory:"), std::string::npos);
  EXPECT_NE(OpenError("memory:?shards=0").find("shards"), std::string::npos);
  EXPECT_NE(OpenError("memory:?shards=65537").find("shards"), std::string::npos);
  EXPECT_NE(OpenError("memory:?colour=red").find("unknown option"), std::string::npos);
  EXPECT_NE(OpenError("noop:maybe").find("noop:locked"), std::string::npos);
}

TEST(Open, CustomBackendsRegisterBySchemeName) {
  register_backend("custom-test", [](std::string_view) { return make_noop_lock_api(true); });
  auto schemes = registered_schemes();
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "custom-test"), schemes.end());
  EXPECT_FALSE(open("custom-test:")->try_acquire("k", 1s));
}

}  // namespace
}  // namespace lockkit
