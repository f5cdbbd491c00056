// SPDX-License-Identifier: MIT
// Internal: backend URL parsing, query options, passwords and redaction shared by every backend.
#ifndef LOCKKIT_SRC_CORE_URL_HPP_
#define LOCKKIT_SRC_CORE_URL_HPP_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lockkit::detail {

struct HostPort {
  std::string host;  // without IPv6 brackets
  std::optional<std::uint16_t> port;
};

// A parsed `scheme:[//[user[:password]@]host[:port][,host[:port]...]][/path][?k=v&...]`.
// User, password, path and query parts are percent-decoded.
struct Url {
  std::string scheme;          // lower case, without ':'
  bool has_authority = false;  // "//" followed the scheme
  std::string user;
  std::optional<std::string> password;
  std::vector<HostPort> hosts;  // empty when there is no host (e.g. sqlite:///path)
  std::string path;  // with its leading '/', or the opaque part ("locked" in noop:locked)
  std::vector<std::pair<std::string, std::string>> query;
};

// Returns true if query option `name` carries a secret (password, sslpassword, token, ...):
// redacted from messages.
bool secret_option(std::string_view name);

// Makes `secret_option` true for `name` (case-insensitive) too: backends add their client
// library's secret keywords (libpq's with dispchar "*").
void register_secret_option(std::string_view name);

// Returns the message for unknown option `name` of a URL whose options are `query`: the name,
// unless it follows a secret option (then it may be part of the secret).
std::string unknown_option(std::string_view name,
                           const std::vector<std::pair<std::string, std::string>>& query);

// Parses `url`. Throws `std::invalid_argument` quoting the redacted URL and naming the problem.
Url parse_url(std::string_view url);

// Throws `std::invalid_argument`: `url "<redacted url>": <reason>`.
[[noreturn]] void throw_bad_url(std::string_view url, std::string_view reason);

// Reads a URL's query options one by one; `finish` rejects any that nobody asked for.
class QueryOptions {
 public:
  QueryOptions(std::string_view url, const Url& parsed)
      : url_(url), items_(parsed.query), query_(parsed.query) {}
  // Returns and consumes the value of option `name`, if given (the last one wins).
  std::optional<std::string> take(std::string_view name);
  // Like `take`, parsed with `parse_duration`; errors name the option.
  std::optional<std::chrono::milliseconds> take_duration(std::string_view name);
  // Like `take`, parsed as an unsigned integer in [min, max]; errors name the option.
  std::optional<std::uint64_t> take_uint(std::string_view name, std::uint64_t min,
                                         std::uint64_t max);
  // Throws `std::invalid_argument` naming the first unknown option.
  void finish() const;

 private:
  std::string url_;
  std::vector<std::pair<std::string, std::string>> items_;
  std::vector<std::pair<std::string, std::string>> query_;  // all of them, in order
};

// Returns the password of a URL from at most one source: the URL itself (`url_password`),
// option `password_file=PATH` (the file's first line, without its line ending) or option
// `password_env=NAME` (that environment variable), so that a URL in a config file or on a
// command line need carry none. Consumes both options. Throws `std::invalid_argument` naming the
// option, never the secret, for two sources, an unreadable or empty file, or an unset variable.
std::optional<std::string> take_password(QueryOptions& options,
                                         const std::optional<std::string>& url_password);

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_CORE_URL_HPP_
