// SPDX-License-Identifier: MIT
// Unit tests of the `lockkit` tool's pieces: exit statuses, JSON and key display, durations.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

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
  EXPECT_EQ(exit_status({Outcome::kInternal}), 71);
  EXPECT_EQ(exit_status({Outcome::kIoError}), 74);
  EXPECT_EQ(exit_status({Outcome::kBusy}), 75);
  EXPECT_EQ(exit_status({Outcome::kBusy, 0, 3}), 3);  // --conflict-exit-code 3
  EXPECT_EQ(exit_status({Outcome::kNoPermission}), 77);
  EXPECT_EQ(exit_status({Outcome::kChild, 143}), 143);
  EXPECT_EQ(exit_status({Outcome::kChild, 0}), 0);
  EXPECT_EQ(exit_status({Outcome::kInterrupted, 2}), 130);
}

TEST(ExitStatus, ExceptionsMapToTheirOutcome) {
  auto outcome = [](auto error) { return fail(std::make_exception_ptr(error)).outcome; };
  EXPECT_EQ(outcome(UsageError("x")), Outcome::kUsage);
  EXPECT_EQ(outcome(std::invalid_argument("ttl: bad")), Outcome::kUsage);
  EXPECT_EQ(outcome(BackendError("sqlite", ErrorKind::kTimeout, "busy")), Outcome::kUnavailable);
  EXPECT_EQ(outcome(BackendError("redis", ErrorKind::kUnsupported, "no")), Outcome::kUnavailable);
  EXPECT_EQ(outcome(BackendError("redis", ErrorKind::kAuth, "WRONGPASS")), Outcome::kNoPermission);
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
  EXPECT_EQ(parse_wait("forever"), kWaitForever);
  EXPECT_THROW(parse_wait("-1s"), std::invalid_argument);
  EXPECT_THROW(parse_wait("Forever"), std::invalid_argument);
}

TEST(ConflictExitCode, IsANumberFrom0To255) {
  EXPECT_EQ(parse_conflict_exit_code(std::nullopt), 75);
  EXPECT_EQ(parse_conflict_exit_code("0"), 0);
  EXPECT_EQ(parse_conflict_exit_code("1"), 1);
  EXPECT_EQ(parse_conflict_exit_code("255"), 255);
  for (const char* bad : {"", "256", "-1", "1x", "0x10", "1000", " 1"}) {
    EXPECT_THROW(parse_conflict_exit_code(std::string(bad)), UsageError) << bad;
  }
}

TEST(Drift, MatchesWhatTheBackendsSubtract) {
  using std::chrono::milliseconds;
  EXPECT_EQ(drift_for("sqlite", milliseconds(30'000)), milliseconds(0));
  EXPECT_EQ(drift_for("memory", milliseconds(30'000)), milliseconds(0));
  EXPECT_EQ(drift_for("redis", milliseconds(30'000)), milliseconds(302));
  EXPECT_EQ(drift_for("postgres", milliseconds(1'000)), milliseconds(12));
}

TEST(Token, ComesFromTheOptionTheFileOrTheEnvironment) {
  ::unsetenv("LOCKKIT_TOKEN");
  EXPECT_THROW(resolve_token({}), UsageError);
  EXPECT_EQ(resolve_token({"abc", std::nullopt}), "abc");
  EXPECT_THROW(resolve_token({"", std::nullopt}), UsageError);
  char path[] = "/tmp/lockkit-token-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string content = "0123abcd\n";
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ::close(fd);
  EXPECT_EQ(resolve_token({std::nullopt, std::string(path)}), "0123abcd");
  EXPECT_THROW(resolve_token({"abc", std::string(path)}), UsageError);
  EXPECT_THROW(resolve_token({std::nullopt, std::string(path) + ".missing"}), UsageError);
  ::setenv("LOCKKIT_TOKEN", "fromenv", 1);
  EXPECT_EQ(resolve_token({}), "fromenv");
  EXPECT_EQ(resolve_token({"abc", std::nullopt}), "abc");  // the option wins
  ::unsetenv("LOCKKIT_TOKEN");
  // The secret never appears in a message, however the file is wrong.
  fd = ::open(path, O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ::close(fd);
  try {
    resolve_token({std::nullopt, std::string(path)});
    ADD_FAILURE() << "an empty token file must be refused";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
  }
  ::unlink(path);
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
  EXPECT_EQ(backend_url({"noop:", std::nullopt, false}), "noop:");
  // An explicitly empty --backend is a mistake, not "the default".
  EXPECT_THROW(backend_url({"", std::nullopt, false}), UsageError);
  EXPECT_THROW(backend_url({"noop:", "/dev/null", false}), UsageError);
  ::setenv("LOCKKIT_BACKEND", "", 1);  // empty variable: the default
  EXPECT_EQ(backend_url({}), default_backend_url());
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
