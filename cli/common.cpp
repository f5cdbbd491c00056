// SPDX-License-Identifier: MIT
// Exit statuses, diagnostics, key and duration arguments, and the choice of backend.
#include "common.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "json.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "modules.hpp"

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
      return 70;  // lockkit's documented "lease lost" status since its first release
    case Outcome::kInternal:
      return 71;  // EX_OSERR: fork, pipe, signalfd, poll... failed (or a bug)
    case Outcome::kIoError:
      return 74;  // EX_IOERR
    case Outcome::kBusy:
      return result.busy_status;  // EX_TEMPFAIL unless --conflict-exit-code
    case Outcome::kNoPermission:
      return 77;  // EX_NOPERM
    case Outcome::kNotHeld:
      return 1;
    case Outcome::kChild:
      return result.child_status;
    case Outcome::kInterrupted:
      return 128 + result.child_status;  // as a shell reports a death by that signal
  }
  return 71;
}

std::string format_diagnostic(std::string_view message) {
  std::string line = "lockkit: ";
  for (char c : message) line.push_back(c == '\n' || c == '\r' ? ' ' : c);
  while (!line.empty() && line.back() == ' ') line.pop_back();
  line.push_back('\n');
  return line;
}

void diagnose(std::string_view message) noexcept {
  try {
    std::string line = format_diagnostic(message);
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
    return {e.kind() == ErrorKind::kAuth ? Outcome::kNoPermission : Outcome::kUnavailable};
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
        throw std::invalid_argument(n + "-hex: \"" + display_key(h) + "\" is not hex");
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
  auto d = parse_duration(text, what);
  if (d < kMinTtl || d > kMaxTtl) {
    throw std::invalid_argument(std::string(what) + ": must be 1ms..7d, got \"" +
                                std::string(text) + "\"");
  }
  return d;
}

std::chrono::milliseconds parse_wait(std::string_view text) {
  if (text == "forever") return kWaitForever;
  auto d = parse_duration(text, "wait");
  if (d > kMaxTtl) {
    throw std::invalid_argument("wait: must be 0ms..7d or forever, got \"" + std::string(text) +
                                "\"");
  }
  return d;
}

int parse_conflict_exit_code(const std::optional<std::string>& text) {
  if (!text) return kDefaultConflictExitCode;
  const std::string& t = *text;
  if (t.empty() || t.size() > 3 || t.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(t) > 255) {
    throw UsageError("conflict-exit-code: must be a number 0..255, got \"" + t + "\"");
  }
  return std::stoi(t);
}

namespace {

// Returns the contents of `path` ("-": stdin) for an option that names a secret: the error
// messages name the option and the file, never its contents.
std::string read_secret(const std::string& path, std::string_view option) {
  std::string opt(option);
  int fd = path == "-" ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw UsageError(opt + ": cannot open \"" + path + "\": " + std::strerror(errno));
  }
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (fd != STDIN_FILENO) ::close(fd);
      throw UsageError(opt + ": cannot read \"" + path + "\": " + std::strerror(err));
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > 65536) {
      if (fd != STDIN_FILENO) ::close(fd);
      throw UsageError(opt + ": \"" + path + "\" is larger than 64 KiB");
    }
  }
  if (fd != STDIN_FILENO) ::close(fd);
  // The first line, without its line end and trailing blanks (as `echo` and editors leave them).
  data = data.substr(0, data.find('\n'));
  while (!data.empty() && (data.back() == '\r' || data.back() == ' ' || data.back() == '\t')) {
    data.pop_back();
  }
  if (data.empty()) throw UsageError(opt + ": \"" + path + "\" is empty");
  return data;
}

std::atomic<bool> g_detached_thread{false};

}  // namespace

std::string resolve_token(const TokenSource& source) {
  if (source.token && source.file) throw UsageError("give --token or --token-file, not both");
  if (source.token) {
    if (source.token->empty()) throw UsageError("token: must not be empty");
    return *source.token;
  }
  if (source.file) return read_secret(*source.file, "token-file");
  if (const char* env = std::getenv("LOCKKIT_TOKEN"); env != nullptr && env[0] != '\0') {
    return env;
  }
  throw UsageError("missing --token (or --token-file, or LOCKKIT_TOKEN in the environment)");
}

std::chrono::milliseconds drift_for(std::string_view backend, std::chrono::milliseconds ttl) {
  // These stores measure expiry on this host's steady clock (or have no expiry at all).
  if (backend == "sqlite" || backend == "memory" || backend == "noop") {
    return std::chrono::milliseconds(0);
  }
  return ttl / 100 + std::chrono::milliseconds(2);
}

void note_detached_thread() noexcept {
  g_detached_thread.store(true);
}

bool has_detached_thread() noexcept {
  return g_detached_thread.load();
}

bool write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
      errno = EIO;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string default_backend_url() {
  // XDG: a relative XDG_STATE_HOME is invalid and must be ignored.
  const char* state = std::getenv("XDG_STATE_HOME");
  std::string dir = (state != nullptr && state[0] == '/') ? std::string(state)
                                                          : home_directory() + "/.local/state";
  return "sqlite://" + percent_encode_path(dir + "/lockkit/locks.db");
}

std::string backend_url(const Common& common) {
  if (common.backend && common.backend_file) {
    throw UsageError("give --backend or --backend-file, not both");
  }
  if (common.backend) {
    // An explicitly empty URL is a mistake (an unset variable in a script), not "the default".
    if (common.backend->empty()) throw UsageError("backend: empty URL");
    return *common.backend;
  }
  if (common.backend_file) return read_secret(*common.backend_file, "backend-file");
  if (const char* env = std::getenv("LOCKKIT_BACKEND"); env != nullptr && env[0] != '\0') {
    return env;
  }
  return default_backend_url();
}

std::shared_ptr<LockApi> open_backend(const Common& common) {
  std::string url = backend_url(common);
  load_module_for(url);
  return lockkit::open(url);
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
