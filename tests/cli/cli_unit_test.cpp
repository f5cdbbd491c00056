// SPDX-License-Identifier: MIT
// Unit tests of the `lockkit` tool's pieces: exit statuses, JSON and key display, durations.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "common.hpp"
#include "json.hpp"
#include "lockkit/errors.hpp"

namespace lockkit::cli {
namespace {

using namespace std::string_literals;

TEST(ExitStatus, FollowsSysexitsAndPassesTheCommandsStatus) {
  EXPECT_EQ(exit_status({Outcome::kOk}), 0);
  EXPECT_EQ(exit_status({Outcome::kNotHeld}), 1);
  EXPECT_EQ(exit_status({Outcome::kUsage}), 64);
  EXPECT_EQ(exit_status({Outcome::kUnavailable}), 69);
  EXPECT_EQ(exit_status({Outcome::kLeaseLost}), 70);
  EXPECT_EQ(exit_status({Outcome::kBusy}), 75);
  EXPECT_EQ(exit_status({Outcome::kChild, 143}), 143);
  EXPECT_EQ(exit_status({Outcome::kChild, 0}), 0);
}

TEST(ExitStatus, ExceptionsMapToTheirOutcome) {
  auto outcome = [](auto error) { return fail(std::make_exception_ptr(error)).outcome; };
  EXPECT_EQ(outcome(UsageError("x")), Outcome::kUsage);
  EXPECT_EQ(outcome(std::invalid_argument("ttl: bad")), Outcome::kUsage);
  EXPECT_EQ(outcome(BackendError("sqlite", ErrorKind::kTimeout, "busy")), Outcome::kUnavailable);
  EXPECT_EQ(outcome(BackendError("redis", ErrorKind::kUnsupported, "no")), Outcome::kUnavailable);
  EXPECT_EQ(outcome(std::runtime_error("boom")), Outcome::kInternal);
}

TEST(Json, ValidUtf8RoundTripsAndControlCharactersAreEscaped) {
  EXPECT_EQ(json_string("jobs/42"), "\"jobs/42\"");
  EXPECT_EQ(json_string("caf\xc3\xa9 \xf0\x9f\x94\x92"), "\"caf\xc3\xa9 \xf0\x9f\x94\x92\"");
  EXPECT_EQ(json_string("a\"b\\c\n\t\x01\x7f"s), "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"");
  EXPECT_EQ(json_string("\0k"s), "\"\\u0000k\"");
}

TEST(Json, InvalidUtf8BecomesReplacementCharactersAndKeyHex) {
  EXPECT_FALSE(is_utf8("\xff"));
  EXPECT_FALSE(is_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_utf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(is_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_utf8("\xe2\x82"));          // truncated
  EXPECT_TRUE(is_utf8("\xe2\x82\xac"));
  EXPECT_EQ(json_string("a\xff"
                        "b"),
            "\"a\\ufffdb\"");
  std::string out;
  append_key_fields(out, "\x00\xff"s);
  EXPECT_EQ(out, "\"key\":\"\\u0000\\ufffd\",\"key_hex\":\"00ff\"");
  out.clear();
  append_key_fields(out, "plain");
  EXPECT_EQ(out, "\"key\":\"plain\"");
}

TEST(DisplayKey, EscapesWhatATerminalShouldNotSee) {
  EXPECT_EQ(display_key("jobs/42"), "jobs/42");
  EXPECT_EQ(display_key("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(display_key("a\nb\\"), "a\\x0ab\\\\");
  EXPECT_EQ(display_key("\x1b[2J\xff"), "\\x1b[2J\\xff");
}

TEST(KeyArg, HexAndTextAreExclusiveAndValidated) {
  EXPECT_EQ(resolve_key({"k", std::nullopt}, "key"), "k");
  EXPECT_EQ(resolve_key({std::nullopt, "00fF"}, "key"), "\x00\xff"s);
  EXPECT_THROW(resolve_key({"k", "6b"}, "key"), UsageError);
  EXPECT_THROW(resolve_key({}, "key"), UsageError);
  EXPECT_EQ(resolve_key({}, "prefix", false), "");
  EXPECT_THROW(resolve_key({std::nullopt, "0"}, "key"), std::invalid_argument);
  EXPECT_THROW(resolve_key({std::nullopt, "zz"}, "key"), std::invalid_argument);
  EXPECT_THROW(resolve_key({std::nullopt, ""}, "key"), std::invalid_argument);
  EXPECT_THROW(resolve_key({std::string(1025, 'k'), std::nullopt}, "key"), std::invalid_argument);
  EXPECT_EQ(resolve_key({std::string(1024, 'k'), std::nullopt}, "key").size(), 1024u);
}

TEST(Durations, TtlIsOneMillisecondToSevenDaysAndWaitMayBeZero) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_ttl("250ms", "ttl"), milliseconds(250));
  EXPECT_EQ(parse_ttl("1.5s", "ttl"), milliseconds(1500));
  EXPECT_EQ(parse_ttl("7d", "ttl"), std::chrono::hours(24 * 7));
  for (const char* bad : {"0", "0ms", "-5s", "10x", "8d", "10", "", "s", "1e3s"}) {
    EXPECT_THROW(parse_ttl(bad, "ttl"), std::invalid_argument) << bad;
  }
  EXPECT_EQ(parse_wait("0s"), milliseconds(0));
  EXPECT_THROW(parse_wait("-1s"), std::invalid_argument);
}

TEST(DefaultBackend, IsSqliteUnderTheStateDirectoryPercentEncoded) {
  ::setenv("XDG_STATE_HOME", "/var/state dir", 1);
  EXPECT_EQ(default_backend_url(), "sqlite:///var/state%20dir/lockkit/locks.db");
  ::setenv("XDG_STATE_HOME", "relative", 1);
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(default_backend_url(), "sqlite:///home/u/.local/state/lockkit/locks.db");
  ::unsetenv("XDG_STATE_HOME");
  EXPECT_EQ(default_backend_url(), "sqlite:///home/u/.local/state/lockkit/locks.db");
  ::setenv("LOCKKIT_BACKEND", "memory:", 1);
  EXPECT_EQ(backend_url({}), "memory:");
  EXPECT_EQ(backend_url({"noop:", false}), "noop:");
  ::unsetenv("LOCKKIT_BACKEND");
  EXPECT_EQ(backend_url({}), default_backend_url());
}

TEST(FormatRemaining, ReadsWell) {
  using std::chrono::milliseconds;
  EXPECT_EQ(format_remaining(milliseconds(850)), "850ms");
  EXPECT_EQ(format_remaining(milliseconds(12'345)), "12.3s");
  EXPECT_EQ(format_remaining(milliseconds(302'000)), "5m02s");
  EXPECT_EQ(format_remaining(milliseconds(-5)), "0ms");
}

}  // namespace
}  // namespace lockkit::cli
