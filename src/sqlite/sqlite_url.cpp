// SPDX-License-Identifier: MIT
// sqlite:// URLs: parsing into SqliteOptions, and the scheme's registration with lockkit::open.
#include <string>

#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/open.hpp"
#include "lockkit/sqlite.hpp"

namespace lockkit {

SqliteOptions parse_sqlite_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  constexpr std::string_view kForms =
      "use sqlite:///absolute/path.db (three slashes) or sqlite:relative/path.db";
  if (parsed.scheme != "sqlite") detail::throw_bad_url(url, "not a sqlite: URL");
  if (parsed.has_authority) {
    if (!parsed.user.empty() || parsed.password) {
      detail::throw_bad_url(url, "a file URL takes no user or password");
    }
    // `sqlite://var/locks.db` would silently mean "/locks.db on host var": refuse, like file:.
    if (!parsed.hosts.empty() && !(parsed.hosts.size() == 1 &&
                                   parsed.hosts[0].host == "localhost" && !parsed.hosts[0].port)) {
      detail::throw_bad_url(
          url, "\"" + parsed.hosts[0].host + "\" is in the host position; " + std::string(kForms));
    }
  }
  if (parsed.path.empty() || parsed.path == "/") {
    detail::throw_bad_url(url, "missing file path; " + std::string(kForms));
  }
  if (parsed.path.back() == '/') detail::throw_bad_url(url, "the path names a directory");
  if (parsed.path == ":memory:") {
    detail::throw_bad_url(url, "in-memory databases cannot share locks; name a file");
  }
  SqliteOptions options;
  options.path = parsed.path;
  detail::QueryOptions query(url, parsed);
  if (auto timeout = query.take_duration("busy_timeout")) {
    if (*timeout < std::chrono::milliseconds(1) || *timeout > std::chrono::minutes(10)) {
      detail::throw_bad_url(url,
                            "busy_timeout: must be 1ms..10m, got " + format_duration(*timeout));
    }
    options.busy_timeout = *timeout;
  }
  if (auto sync = query.take("sync")) {
    if (*sync != "normal" && *sync != "full") {
      detail::throw_bad_url(url, "sync: must be \"normal\" or \"full\", got \"" + *sync + "\"");
    }
    options.full_sync = *sync == "full";
  }
  if (auto share = query.take("share")) {
    if (*share != "user" && *share != "group") {
      detail::throw_bad_url(url, "share: must be \"user\" or \"group\", got \"" + *share + "\"");
    }
    options.share_with_group = *share == "group";
  }
  if (auto idle = query.take_uint("max_idle", 1, 1024)) options.max_idle_connections = *idle;
  query.finish();
  return options;
}

}  // namespace lockkit

// Keeps this object (and so the registration below) in every program that links lockkit::sqlite.
extern "C" void lockkit_backend_anchor_sqlite() {}

namespace {
[[maybe_unused]] const bool kRegistered = [] {
  lockkit::register_backend("sqlite",
                            [](std::string_view url) -> std::shared_ptr<lockkit::LeaseStore> {
                              return lockkit::make_sqlite_store(lockkit::parse_sqlite_url(url));
                            });
  return true;
}();
}  // namespace
