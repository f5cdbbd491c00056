// SPDX-License-Identifier: MIT
// redis:// URLs: every part parsed, malformed ones rejected by name, passwords never shown.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_keys.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

TEST(RedisUrl, ParsesEveryPart) {
  RedisOptions o = parse_redis_url(
      "redis://alice:s%40cret@db.example:6390/3?connect_timeout=250ms&command_timeout=1.5s"
      "&connections=8&prefix=app%3A");
  EXPECT_EQ(o.host, "db.example");
  EXPECT_EQ(o.port, 6390);
  EXPECT_EQ(o.user, "alice");
  EXPECT_EQ(o.password, "s@cret");
  EXPECT_EQ(o.db, 3u);
  EXPECT_EQ(o.connect_timeout, 250ms);
  EXPECT_EQ(o.command_timeout, 1500ms);
  EXPECT_EQ(o.connections, 8u);
  EXPECT_EQ(o.prefix, "app:");
}

TEST(RedisUrl, DefaultsAreFinite) {
  RedisOptions o = parse_redis_url("redis://127.0.0.1");
  EXPECT_EQ(o.port, 6379);
  EXPECT_EQ(o.db, 0u);
  EXPECT_TRUE(o.user.empty());
  EXPECT_TRUE(o.password.empty());
  EXPECT_TRUE(o.prefix.empty());
  EXPECT_GT(o.connect_timeout, 0ms);
  EXPECT_LE(o.connect_timeout, 5s);
  EXPECT_GT(o.command_timeout, 0ms);
  EXPECT_LE(o.command_timeout, 5s);
  EXPECT_GE(o.connections, 1u);
  EXPECT_EQ(parse_redis_url("redis://[::1]:7000/").port, 7000);
}

void ExpectRejected(const std::string& url, const std::string& needle) {
  try {
    (void)lockkit::open(url);
    ADD_FAILURE() << url << " was accepted";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << url << " -> " << what;
    EXPECT_EQ(what.find("hunter2"), std::string::npos) << "password leaked: " << what;
  }
}

TEST(RedisUrl, RejectsMalformedUrlsByName) {
  ExpectRejected("redis://:hunter2@127.0.0.1:0", "port");
  ExpectRejected("redis://u:hunter2@127.0.0.1:65536", "port");
  ExpectRejected("redis://u:hunter2@127.0.0.1:abc", "port");
  ExpectRejected("redis://u:hunter2@:6379", "empty host");
  ExpectRejected("redis://", "empty host");
  ExpectRejected("redis:127.0.0.1", "empty host");
  ExpectRejected("redis://u:hunter2@127.0.0.1:6379?colour=blue", "unknown option \"colour\"");
  ExpectRejected("redis://127.0.0.1/x", "database");
  ExpectRejected("redis://127.0.0.1/70000", "database");
  ExpectRejected("redis://127.0.0.1?connections=0", "connections");
  ExpectRejected("redis://127.0.0.1?connections=many", "connections");
  ExpectRejected("redis://127.0.0.1?command_timeout=5", "command_timeout");
  ExpectRejected("redis://127.0.0.1?connect_timeout=0ms", "connect_timeout");
  ExpectRejected("redis://127.0.0.1?prefix=%7B%7Dx", "prefix");
  ExpectRejected("redis://h1:1,h2:2", "cluster=1");
}

TEST(RedisOptions, FactoryValidates) {
  EXPECT_THROW(make_redis_lock_api(RedisOptions{.host = ""}), std::invalid_argument);
  EXPECT_THROW(make_redis_store(RedisOptions{.connections = 0}), std::invalid_argument);
  EXPECT_THROW(make_redis_lock_api(RedisOptions{.command_timeout = 0ms}), std::invalid_argument);
  EXPECT_NO_THROW(make_redis_lock_api(RedisOptions{}));  // connects lazily: no server needed
}

TEST(RedisSlots, MatchKnownValues) {
  using detail::redis::key_slot;
  EXPECT_EQ(key_slot("123456789"), 12739);  // CRC16/XMODEM check value 0x31C3
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot("bar"));  // an empty tag hashes the whole key
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
}

}  // namespace
}  // namespace lockkit
