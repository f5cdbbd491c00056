// SPDX-License-Identifier: MIT
// URL parsing, redaction, query options and passwords.
#include "core/url.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lockkit/open.hpp"
#include "support/secrets.hpp"

namespace lockkit::detail {
namespace {

using namespace std::chrono_literals;

std::string ErrorOf(std::string_view url) {
  try {
    parse_url(url);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(ParseUrl, SplitsEveryPart) {
  Url u = parse_url("redis://user:p%40ss@127.0.0.1:6390/2?prefix=app%3A&connections=4");
  EXPECT_EQ(u.scheme, "redis");
  EXPECT_TRUE(u.has_authority);
  EXPECT_EQ(u.user, "user");
  ASSERT_TRUE(u.password);
  EXPECT_EQ(*u.password, "p@ss");
  ASSERT_EQ(u.hosts.size(), 1u);
  EXPECT_EQ(u.hosts[0].host, "127.0.0.1");
  EXPECT_EQ(u.hosts[0].port, 6390);
  EXPECT_EQ(u.path, "/2");
  ASSERT_EQ(u.query.size(), 2u);
  EXPECT_EQ(u.query[0].second, "app:");
}

TEST(ParseUrl, ReadsHostListsAndIpv6) {
  Url u = parse_url("multi://h1:1,[::1]:2,h3");
  ASSERT_EQ(u.hosts.size(), 3u);
  EXPECT_EQ(u.hosts[1].host, "::1");
  EXPECT_EQ(u.hosts[1].port, 2);
  EXPECT_FALSE(u.hosts[2].port);
}

TEST(ParseUrl, ReadsPathOnlyAndOpaqueForms) {
  Url file = parse_url("sqlite:///var/lib/locks%20x.db");
  EXPECT_TRUE(file.hosts.empty());
  EXPECT_EQ(file.path, "/var/lib/locks x.db");
  Url noop = parse_url("noop:locked");
  EXPECT_FALSE(noop.has_authority);
  EXPECT_EQ(noop.path, "locked");
}

TEST(ParseUrl, RejectsMalformedUrlsWithReasons) {
  EXPECT_NE(ErrorOf("no-scheme").find("missing scheme"), std::string::npos);
  EXPECT_NE(ErrorOf("1x://h").find("bad scheme"), std::string::npos);
  EXPECT_NE(ErrorOf("redis://h:99999").find("bad port"), std::string::npos);
  EXPECT_NE(ErrorOf("redis://h:0").find("bad port"), std::string::npos);
  EXPECT_NE(ErrorOf("redis://h:").find("empty port"), std::string::npos);
  EXPECT_NE(ErrorOf("redis://h:12ab").find("bad port"), std::string::npos);
  EXPECT_NE(ErrorOf("redis://[::1").find("unclosed"), std::string::npos);
  EXPECT_NE(ErrorOf("sqlite:///a%zz").find("percent"), std::string::npos);
  EXPECT_NE(ErrorOf("redis://h#frag").find("fragment"), std::string::npos);
}

TEST(ParseUrl, ErrorsNeverShowThePassword) {
  std::string message = ErrorOf("redis://me:hunter2@h:99999");
  EXPECT_NE(message.find("***"), std::string::npos) << message;
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
}

TEST(RedactUrl, HidesUserinfoAndQueryPasswords) {
  EXPECT_EQ(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
  EXPECT_EQ(redact_url("redis://:secret@h:1"), "redis://:***@h:1");
  EXPECT_EQ(redact_url("redis://u@h:1"), "redis://u@h:1");
  EXPECT_EQ(redact_url("postgres://h/db?sslmode=off&password=x&a=b"),
            "postgres://h/db?sslmode=off&password=***&a=b");
  EXPECT_EQ(redact_url("memory:"), "memory:");
}

TEST(QueryOptions, TakesKnownOptionsAndRejectsTheRest) {
  std::string url = "x://h?timeout=250ms&n=3&extra=1";
  Url u = parse_url(url);
  QueryOptions options(url, u);
  EXPECT_EQ(options.take_duration("timeout"), 250ms);
  EXPECT_EQ(options.take_uint("n", 1, 10), 3u);
  EXPECT_FALSE(options.take("absent"));
  try {
    options.finish();
    FAIL() << "unknown option accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown option \"extra\""), std::string::npos);
  }
}

TEST(QueryOptions, NamesTheOptionInValueErrors) {
  std::string url = "x://h?n=11&timeout=soon";
  Url u = parse_url(url);
  QueryOptions options(url, u);
  EXPECT_THROW(options.take_uint("n", 1, 10), std::invalid_argument);
  try {
    options.take_duration("timeout");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos);
  }
}

TEST(RedactUrl, HostileUrlsNeverShowTheSecretEvenWhenUnparseable) {
  const std::vector<std::string> secrets = {
      "Zqa1/Zqb2",     "Zqa1#Zqb2",   "Zqa1?Zqb2",
      "Zqa1@Zqb2",     "Zqa1:Zqb2",   "Zqa1%Zqb2",
      "Zqa1 Zqb2",     "Zqa1%40Zqb2", "Zqa1/Zqb2?Zqc3#Zqd4@Zqe5",
      "Zqa1&Zqb2",     "Zqa1/6379",   "Zqa1@h:99/Zqb2",
      "Zqa1&Zqb2&Zqc3"};
  int checked = 0;
  for (const auto& secret : secrets) {
    for (std::string scheme : {"redis", "rediss", "redlock", "postgres", "postgresql", "sqlite"}) {
      for (std::string url : {
               scheme + "://u:" + secret + "@127.0.0.1:1/db",
               scheme + "://:" + secret + "@h",
               scheme + "://u:" + secret + "@h1:1,h2:2/0?connections=2",
               scheme + "://u:" + secret + "@/var/x.db",
               scheme + "://h:1/db?password=" + secret,
               scheme + "://h:1/db?sslmode=off&sslpassword=" + secret + "&a=b",
               scheme + "://h:1/db?pass%77ord=" + secret,
               scheme + "://h/db?auth_token=" + secret + "&x=1",
               scheme + "://u:" + secret + "@h/db?password=" + secret,
           }) {
        std::vector<std::string> texts = {redact_url(url), ErrorOf(url)};
        for (const auto& text : texts) {
          for (const auto& piece : testing::secret_pieces(secret)) {
            EXPECT_EQ(text.find(piece), std::string::npos)
                << "\"" << piece << "\" leaked: " << text << "\n  from " << url;
          }
        }
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 13 * 6 * 9);
}

TEST(ParseUrl, RejectsAnAtSignPastTheHostWithoutQuotingIt) {
  std::string message = ErrorOf("redis://me:Zqa1/Zqb2@h:6379");
  EXPECT_NE(message.find("percent-encode"), std::string::npos) << message;
  EXPECT_EQ(message.find("Zqb2"), std::string::npos) << message;
  EXPECT_EQ(message.find("Zqa1"), std::string::npos) << message;
  // '@' in a file path without an authority stays allowed.
  EXPECT_EQ(parse_url("sqlite:///var/lib/a@b.db").path, "/var/lib/a@b.db");
  // Encoded, every character is fine.
  Url u = parse_url("redis://me:Zqa1%2FZqb2%40%3F%23@h:6379");
  ASSERT_TRUE(u.password);
  EXPECT_EQ(*u.password, "Zqa1/Zqb2@?#");
}

TEST(RedactUrl, SecretOptionValueRunsOnThroughUnescapedAmpersands) {
  EXPECT_EQ(redact_url("postgres://h/db?password=a&b&sslmode=off"),
            "postgres://h/db?password=***&sslmode=off");
  EXPECT_EQ(redact_url("postgres://h/db?sslpassword=x&token=y&application_name=z"),
            "postgres://h/db?sslpassword=***&token=***&application_name=z");
  Url u = parse_url("postgres://h/db?password=a&b&sslmode=off");
  ASSERT_EQ(u.query.size(), 2u);
  EXPECT_EQ(u.query[0].second, "a&b");
  EXPECT_TRUE(secret_option("sslpassword"));
  EXPECT_TRUE(secret_option("PASSWORD"));
  EXPECT_FALSE(secret_option("sslmode"));
}

// A temporary file holding `text`, removed afterwards.
class TempFile {
 public:
  explicit TempFile(std::string_view text) {
    char name[] = "/tmp/lockkit-pw-XXXXXX";
    int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    path_ = name;
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::optional<std::string> PasswordOf(std::string_view url) {
  Url parsed = parse_url(url);
  QueryOptions options(url, parsed);
  auto password = take_password(options, parsed.password);
  options.finish();
  return password;
}

std::string PasswordErrorOf(std::string_view url) {
  try {
    PasswordOf(url);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(TakePassword, ComesFromTheUrlAFileOrAVariable) {
  EXPECT_EQ(PasswordOf("redis://u:pw@h"), "pw");
  EXPECT_EQ(PasswordOf("redis://h"), std::nullopt);
  TempFile file("s3cr%t\r\nsecond line\n");
  EXPECT_EQ(PasswordOf("redis://h?password_file=" + file.path()), "s3cr%t");
  TempFile no_newline("only");
  EXPECT_EQ(PasswordOf("redis://h?password_file=" + no_newline.path()), "only");
  ::setenv("LOCKKIT_TEST_PW", "from env", 1);
  EXPECT_EQ(PasswordOf("redis://h?password_env=LOCKKIT_TEST_PW"), "from env");
  ::unsetenv("LOCKKIT_TEST_PW");
}

TEST(TakePassword, BadSourcesNameTheOptionNeverTheSecret) {
  TempFile file("hunter2\n");
  std::string both = PasswordErrorOf("redis://u:other@h?password_file=" + file.path());
  EXPECT_NE(both.find("one place"), std::string::npos) << both;
  EXPECT_EQ(both.find("hunter2"), std::string::npos) << both;
  EXPECT_EQ(both.find("other"), std::string::npos) << both;
  std::string missing = PasswordErrorOf("redis://h?password_file=/nonexistent/pw");
  EXPECT_NE(missing.find("password_file \"/nonexistent/pw\": No such file"), std::string::npos)
      << missing;
  TempFile empty("\n");
  EXPECT_NE(PasswordErrorOf("redis://h?password_file=" + empty.path()).find("empty"),
            std::string::npos);
  ::unsetenv("LOCKKIT_TEST_UNSET");
  std::string unset = PasswordErrorOf("redis://h?password_env=LOCKKIT_TEST_UNSET");
  EXPECT_NE(unset.find("LOCKKIT_TEST_UNSET is not set"), std::string::npos) << unset;
  EXPECT_NE(PasswordErrorOf("redis://h?password_env=").find("password_env"), std::string::npos);
}

}  // namespace
}  // namespace lockkit::detail
