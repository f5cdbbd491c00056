// SPDX-License-Identifier: MIT
// Exit statuses, diagnostics, key and duration arguments, and the choice of backend.
#include "common.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "core/url.hpp"
#include "json.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"

namespace lockkit::cli {

int exit_status(const Result& result) noexcept {
  switch (result.outcome) {
    case Outcome::kOk:
      return 0;
    case Outcome::kUsage:
      return 64;  // EX_USAGE
    case Outcome::kUnavailable:
      return 69;  // EX_UNAVAILABLE
    case Outcome::kLeaseLost:
      return 70;  // EX_SOFTWARE
    case Outcome::kBusy:
      return 75;  // EX_TEMPFAIL
    case Outcome::kNotHeld:
      return 1;
    case Outcome::kChild:
      return result.child_status;
    case Outcome::kInternal:
      return 70;  // EX_SOFTWARE
  }
  return 70;
}

void diagnose(std::string_view message) noexcept {
  try {
    std::string line = "lockkit: ";
    for (char c : message) line.push_back(c == '\n' || c == '\r' ? ' ' : c);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    line.push_back('\n');
    // One write(2), so that concurrent lockkit processes never interleave within a line.
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
  } catch (...) {
  }
}

Result fail(const std::exception_ptr& error, std::string_view context) noexcept {
  auto diagnose = [context](std::string_view what) {
    if (context.empty()) return cli::diagnose(what);
    try {
      cli::diagnose(std::string(context) + ": " + std::string(what));
    } catch (...) {
    }
  };
  try {
    std::rethrow_exception(error);
  } catch (const UsageError& e) {
    diagnose(e.what());
    return {Outcome::kUsage};
  } catch (const std::invalid_argument& e) {
    diagnose(e.what());
    return {Outcome::kUsage};
  } catch (const BackendError& e) {
    diagnose(e.what());
    return {Outcome::kUnavailable};
  } catch (const std::exception& e) {
    diagnose(std::string("internal error: ") + e.what());
    return {Outcome::kInternal};
  } catch (...) {
    diagnose("internal error");
    return {Outcome::kInternal};
  }
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_encode_path(std::string_view path) {
  std::string out;
  for (char c : path) {
    auto b = static_cast<unsigned char>(c);
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
        std::string_view("/-._~").find(c) != std::string_view::npos) {
      out.push_back(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", b);
      out += buf;
    }
  }
  return out;
}

std::string home_directory() {
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') return home;
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr) {
    return pw->pw_dir;
  }
  throw UsageError(
      "cannot find the default database: neither XDG_STATE_HOME nor HOME is set; use --backend");
}

}  // namespace

std::string resolve_key(const KeyArg& arg, std::string_view name, bool required) {
  std::string n(name);
  if (arg.text && arg.hex) throw UsageError("give --" + n + " or --" + n + "-hex, not both");
  if (!arg.text && !arg.hex) {
    if (required) throw UsageError("missing --" + n + " (or --" + n + "-hex)");
    return {};
  }
  std::string bytes;
  if (arg.text) {
    bytes = *arg.text;
  } else {
    const std::string& h = *arg.hex;
    if (h.size() % 2 != 0) throw std::invalid_argument(n + "-hex: odd number of hex digits");
    for (std::size_t i = 0; i < h.size(); i += 2) {
      int hi = hex_digit(h[i]), lo = hex_digit(h[i + 1]);
      if (hi < 0 || lo < 0) {
        throw std::invalid_argument(n + "-hex: \"" + detail::escape_key(h) + "\" is not hex");
      }
      bytes.push_back(static_cast<char>(hi * 16 + lo));
    }
  }
  if (name == "key")
    validate_key(bytes);
  else if (bytes.size() > kMaxKeyBytes)
    throw std::invalid_argument(n + ": longer than 1024 bytes");
  return bytes;
}

std::chrono::milliseconds parse_ttl(std::string_view text, std::string_view what) {
  auto d = detail::parse_duration(text, what);
  if (d < kMinTtl || d > kMaxTtl) {
    throw std::invalid_argument(std::string(what) + ": must be 1ms..7d, got \"" +
                                std::string(text) + "\"");
  }
  return d;
}

std::chrono::milliseconds parse_wait(std::string_view text) {
  auto d = detail::parse_duration(text, "wait");
  if (d > kMaxTtl) {
    throw std::invalid_argument("wait: must be 0ms..7d, got \"" + std::string(text) + "\"");
  }
  return d;
}

std::string default_backend_url() {
  // XDG: a relative XDG_STATE_HOME is invalid and must be ignored.
  const char* state = std::getenv("XDG_STATE_HOME");
  std::string dir = (state != nullptr && state[0] == '/') ? std::string(state)
                                                          : home_directory() + "/.local/state";
  return "sqlite://" + percent_encode_path(dir + "/lockkit/locks.db");
}

std::string backend_url(const Common& common) {
  if (!common.backend.empty()) return common.backend;
  if (const char* env = std::getenv("LOCKKIT_BACKEND"); env != nullptr && env[0] != '\0') {
    return env;
  }
  return default_backend_url();
}

std::shared_ptr<LockApi> open_backend(const Common& common) {
  return lockkit::open(backend_url(common));
}

std::int64_t to_epoch_ms(std::chrono::steady_clock::time_point t) {
  auto left = t - std::chrono::steady_clock::now();
  auto at = std::chrono::system_clock::now() + left;
  return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

std::string display_key(std::string_view key) {
  std::string out;
  for (char c : key) {
    auto b = static_cast<unsigned char>(c);
    if ((b >= 0x20 && b < 0x7f && c != '\\') || (b >= 0x80 && is_utf8(key))) {
      out.push_back(c);
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", b);
      out += buf;
    }
  }
  return out;
}

std::string format_remaining(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms < 0) ms = 0;
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%lld.%llds", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000 / 100));
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms % 60'000 / 1000));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms % 3'600'000 / 60'000));
  }
  return buf;
}

}  // namespace lockkit::cli
