// SPDX-License-Identifier: MIT
// Backend URL parsing, redaction, query options and passwords.
#include "core/url.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>

#include "lockkit/duration.hpp"
#include "lockkit/open.hpp"

namespace lockkit {
namespace {

bool is_scheme_char(char c, bool first) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (first) return alpha;
  return alpha || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Returns the end of the authority that starts at `from` ("//" already skipped).
std::size_t authority_end(std::string_view url, std::size_t from) {
  std::size_t end = url.find_first_of("/?#", from);
  return end == std::string_view::npos ? url.size() : end;
}

// Decodes %XX where well-formed and lower-cases the rest (for recognising names only).
std::string lenient_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
        hex_value(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
      i += 2;
    } else {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(text[i]))));
    }
  }
  return out;
}

// True for a name that looks like an option name: [A-Za-z0-9_.-]+.
bool plausible_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Splits a query string into items at '&', except that the value of a secret option runs on
// through every '&' not followed by `name=`: an unescaped '&' in a password stays in it.
std::vector<std::string_view> query_items(std::string_view query) {
  std::vector<std::string_view> items;
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    std::string_view item = query.substr(start, amp == std::string_view::npos ? amp : amp - start);
    std::size_t eq = item.find('=');
    if (eq != std::string_view::npos && detail::secret_option(lenient_decode(item.substr(0, eq)))) {
      while (amp != std::string_view::npos) {
        std::string_view next = query.substr(amp + 1);
        std::size_t next_eq = next.find('=');
        std::size_t next_amp = next.find('&');
        bool option = next_eq != std::string_view::npos &&
                      (next_amp == std::string_view::npos || next_eq < next_amp) &&
                      plausible_name(next.substr(0, next_eq));
        if (option) break;
        amp = query.find('&', amp + 1);
      }
      item = query.substr(start, amp == std::string_view::npos ? amp : amp - start);
    }
    items.push_back(item);
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return items;
}

}  // namespace

// Works on the raw text, before and without parsing, so a URL the parser would reject (a
// password with an unescaped '/', '?', '#' or '@') is redacted too: everything from the first
// ':' after "//" to the last '@' counts as the password. That over-redacts some odd URLs (an
// '@' in a path or option), never under-redacts.
std::string redact_url(std::string_view url) {
  // Ranges [begin, end) to replace with "***"; overlapping ones merge.
  std::vector<std::pair<std::size_t, std::size_t>> hidden;
  std::size_t colon = url.find(':');
  std::size_t start = 0;
  std::size_t after_userinfo = 0;
  if (colon != std::string_view::npos && url.substr(colon, 3) == "://") {
    start = colon + 3;
    after_userinfo = start;
    std::size_t at = url.rfind('@');
    if (at != std::string_view::npos && at >= start) {
      std::size_t pw = url.find(':', start);
      if (pw != std::string_view::npos && pw < at) hidden.emplace_back(pw + 1, at);
      after_userinfo = at + 1;
    }
  }
  // Secret options. Where the query starts is ambiguous when a password holds '?' or an option
  // value holds '@': look from both candidate starts.
  for (std::size_t from : {start, after_userinfo}) {
    std::size_t q = url.find('?', from);
    if (q == std::string_view::npos) continue;
    std::string_view query = url.substr(q + 1);
    for (std::string_view item : query_items(query)) {
      std::size_t eq = item.find('=');
      if (eq != std::string_view::npos &&
          detail::secret_option(lenient_decode(item.substr(0, eq)))) {
        std::size_t begin = q + 1 + static_cast<std::size_t>(item.data() - query.data()) + eq + 1;
        hidden.emplace_back(begin, begin + (item.size() - eq - 1));
      }
    }
  }
  std::sort(hidden.begin(), hidden.end());
  std::string out;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < hidden.size();) {
    std::size_t begin = hidden[i].first;
    std::size_t end = hidden[i].second;
    for (++i; i < hidden.size() && hidden[i].first <= end; ++i)
      end = std::max(end, hidden[i].second);
    if (begin < pos) begin = pos;
    out.append(url.substr(pos, begin - pos));
    out += "***";
    pos = std::max(pos, end);
  }
  out.append(url.substr(std::min(pos, url.size())));
  return out;
}

namespace detail {

namespace {

std::string lower(std::string_view text) {
  std::string n;
  for (char c : text) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return n;
}

struct ExtraSecrets {
  std::mutex mu;
  std::set<std::string, std::less<>> names;
};

ExtraSecrets& extra_secrets() {
  static ExtraSecrets* s = new ExtraSecrets;  // never destroyed: used from static initialisers
  return *s;
}

}  // namespace

void register_secret_option(std::string_view name) {
  ExtraSecrets& s = extra_secrets();
  std::lock_guard<std::mutex> guard(s.mu);
  s.names.insert(lower(name));
}

bool secret_option(std::string_view name) {
  const std::string n = lower(name);
  {
    ExtraSecrets& s = extra_secrets();
    std::lock_guard<std::mutex> guard(s.mu);
    if (s.names.count(n)) return true;
  }
  for (std::string_view exact : {"pass", "pwd", "auth", "key", "sslpassword"}) {
    if (n == exact) return true;
  }
  for (std::string_view part : {"password", "passwd", "secret", "token", "credential"}) {
    if (n.find(part) != std::string::npos) return true;
  }
  return false;
}

void throw_bad_url(std::string_view url, std::string_view reason) {
  throw std::invalid_argument("url \"" + redact_url(url) + "\": " + std::string(reason));
}

namespace {

std::string percent_decode(std::string_view url, std::string_view part) {
  std::string out;
  out.reserve(part.size());
  for (std::size_t i = 0; i < part.size(); ++i) {
    if (part[i] == '%') {
      if (i + 2 >= part.size()) throw_bad_url(url, "bad percent-escape");
      int hi = hex_value(part[i + 1]);
      int lo = hex_value(part[i + 2]);
      if (hi < 0 || lo < 0) throw_bad_url(url, "bad percent-escape");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(part[i]);
    }
  }
  return out;
}

HostPort parse_host(std::string_view url, std::string_view text) {
  HostPort hp;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) throw_bad_url(url, "unclosed '[' in host");
    hp.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw_bad_url(url, "junk after ']' in host");
      port = rest.substr(1);
      if (port.empty()) throw_bad_url(url, "empty port");
    }
  } else {
    std::size_t colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      port = text.substr(colon + 1);
      if (port.empty()) throw_bad_url(url, "empty port");
      text = text.substr(0, colon);
    }
    hp.host = std::string(text);
  }
  if (!port.empty()) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      // Not quoted: a password with an unescaped '/', '?' or '#' ends up here.
      throw_bad_url(url, "bad port (must be a number in 1..65535)");
    }
    hp.port = static_cast<std::uint16_t>(value);
  }
  return hp;
}

}  // namespace

Url parse_url(std::string_view url) {
  Url out;
  std::size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) throw_bad_url(url, "missing scheme");
  for (std::size_t i = 0; i < colon; ++i) {
    if (!is_scheme_char(url[i], i == 0)) throw_bad_url(url, "bad scheme");
    out.scheme.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(url[i]))));
  }
  std::size_t pos = colon + 1;
  if (url.substr(pos, 2) == "//") {
    out.has_authority = true;
    pos += 2;
    std::size_t end = authority_end(url, pos);
    std::string_view authority = url.substr(pos, end - pos);
    // An '@' past the authority most likely ends a password holding an unescaped '/', '?' or
    // '#' (or '@'): parsing on would take the password's tail for host, path or options.
    if (!authority.empty() && url.find('@', end) != std::string_view::npos) {
      throw_bad_url(url,
                    "'@' after the host: percent-encode '/', '?', '#' and '@' in user and "
                    "password (%2F, %3F, %23, %40), and '@' in paths and options");
    }
    std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      std::string_view userinfo = authority.substr(0, at);
      std::size_t pw = userinfo.find(':');
      out.user = percent_decode(url, userinfo.substr(0, pw));
      if (pw != std::string_view::npos) out.password = percent_decode(url, userinfo.substr(pw + 1));
      authority = authority.substr(at + 1);
    }
    if (!authority.empty()) {
      std::size_t start = 0;
      while (true) {
        std::size_t comma = authority.find(',', start);
        out.hosts.push_back(parse_host(url, authority.substr(start, comma - start)));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
    }
    pos = end;
  }
  std::size_t q = url.find('?', pos);
  std::size_t hash = url.find('#', pos);
  if (hash != std::string_view::npos && (q == std::string_view::npos || hash < q)) {
    throw_bad_url(url, "fragments ('#') are not allowed");
  }
  out.path = percent_decode(url, url.substr(pos, q == std::string_view::npos ? q : q - pos));
  if (q != std::string_view::npos) {
    for (std::string_view item : query_items(url.substr(q + 1))) {
      if (!item.empty()) {
        std::size_t eq = item.find('=');
        std::string key = percent_decode(url, item.substr(0, eq));
        std::string value =
            eq == std::string_view::npos ? std::string() : percent_decode(url, item.substr(eq + 1));
        if (key.empty()) throw_bad_url(url, "empty option name");
        out.query.emplace_back(std::move(key), std::move(value));
      }
    }
  }
  return out;
}

std::optional<std::string> QueryOptions::take(std::string_view name) {
  std::optional<std::string> value;
  for (auto it = items_.begin(); it != items_.end();) {
    if (it->first == name) {
      value = std::move(it->second);
      it = items_.erase(it);
    } else {
      ++it;
    }
  }
  return value;
}

std::optional<std::chrono::milliseconds> QueryOptions::take_duration(std::string_view name) {
  auto value = take(name);
  if (!value) return std::nullopt;
  try {
    return parse_duration(*value, name);
  } catch (const std::invalid_argument& e) {
    throw_bad_url(url_, e.what());
  }
}

std::optional<std::uint64_t> QueryOptions::take_uint(std::string_view name, std::uint64_t min,
                                                     std::uint64_t max) {
  auto value = take(name);
  if (!value) return std::nullopt;
  std::uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (value->empty() || ec != std::errc() || ptr != value->data() + value->size() || n < min ||
      n > max) {
    throw_bad_url(url_, std::string(name) + ": must be an integer in " + std::to_string(min) +
                            ".." + std::to_string(max) + ", got \"" + *value + "\"");
  }
  return n;
}

void QueryOptions::finish() const {
  if (!items_.empty()) throw_bad_url(url_, unknown_option(items_.front().first, query_));
}

std::string unknown_option(std::string_view name,
                           const std::vector<std::pair<std::string, std::string>>& query) {
  // An option right after a secret may be the secret's tail (an unescaped "&x=" in a password):
  // then say where, not what.
  for (std::size_t i = 1; i < query.size(); ++i) {
    if (query[i].first == name && secret_option(query[i - 1].first)) {
      return "unknown option after \"" + query[i - 1].first +
             "\" (percent-encode '&' and '=' in its value)";
    }
  }
  return "unknown option \"" + std::string(name) + "\"";
}

std::optional<std::string> take_password(QueryOptions& options,
                                         const std::optional<std::string>& url_password) {
  auto file = options.take("password_file");
  auto env = options.take("password_env");
  int sources = (url_password ? 1 : 0) + (file ? 1 : 0) + (env ? 1 : 0);
  if (sources > 1) {
    throw std::invalid_argument(
        "password: give it in one place only (the URL, password_file= or password_env=)");
  }
  if (file) {
    if (file->empty()) throw std::invalid_argument("password_file: must name a file");
    std::FILE* f = std::fopen(file->c_str(), "re");
    if (!f) {
      throw std::invalid_argument("password_file \"" + *file + "\": " + std::strerror(errno));
    }
    std::string line;
    char buf[256];
    bool eol = false;
    while (!eol && std::fgets(buf, sizeof buf, f)) {
      std::string_view part(buf);
      if (!part.empty() && part.back() == '\n') {
        part.remove_suffix(1);
        eol = true;
      }
      line.append(part);
    }
    bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) throw std::invalid_argument("password_file \"" + *file + "\": read error");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      throw std::invalid_argument("password_file \"" + *file + "\": first line is empty");
    }
    return line;
  }
  if (env) {
    if (env->empty()) throw std::invalid_argument("password_env: must name a variable");
    const char* value = std::getenv(env->c_str());
    if (!value) {
      throw std::invalid_argument("password_env: environment variable " + *env + " is not set");
    }
    return std::string(value);
  }
  return url_password;
}

}  // namespace detail
}  // namespace lockkit
