// SPDX-License-Identifier: MIT
// The postgres:// and postgresql:// URLs: parsed into `PostgresOptions`, registered with open().
#include <libpq-fe.h>

#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>

#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/postgres.hpp"

namespace lockkit {
namespace {

// Quotes a libpq keyword value: 'value' with \ and ' escaped.
std::string conninfo_value(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\\' || c == '\'') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

struct ConninfoDeleter {
  void operator()(PQconninfoOption* o) const noexcept { PQconninfoFree(o); }
};

bool parse_bool(std::string_view url, std::string_view name, const std::string& v) {
  if (v == "true" || v == "on" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "off" || v == "0" || v == "no") return false;
  detail::throw_bad_url(url, std::string(name) + ": must be true or false, got \"" + v + "\"");
}

}  // namespace

PostgresOptions parse_postgres_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  if (parsed.scheme != "postgres" && parsed.scheme != "postgresql") {
    detail::throw_bad_url(url, "not a postgres:// URL");
  }
  if (!parsed.has_authority) {
    detail::throw_bad_url(url, "use postgres://[user[:password]@]host[:port]/dbname[?options]");
  }
  detail::QueryOptions ours(url, parsed);
  // One password from one place: the user info or libpq's `password` option (both "the URL"),
  // `password_file=` or `password_env=`. None: libpq's own PGPASSWORD, `passfile=` and
  // ~/.pgpass apply, as libpq documents.
  std::optional<std::string> password = parsed.password;
  try {
    if (auto option = ours.take("password")) {
      if (password) {
        throw std::invalid_argument(
            "password: give it in one place only (the URL, password_file= or password_env=)");
      }
      password = std::move(option);
    }
    password = detail::take_password(ours, password);
  } catch (const std::invalid_argument& e) {
    detail::throw_bad_url(url, e.what());  // names the option, never the secret
  }
  PostgresOptions options;
  std::string conninfo;
  auto add = [&](std::string_view keyword, std::string_view value) {
    if (!conninfo.empty()) conninfo += ' ';
    conninfo += std::string(keyword) + "=" + conninfo_value(value);
  };
  if (!parsed.user.empty()) add("user", parsed.user);
  // Quoted into the conninfo, which is never printed; libpq sends it only to the server.
  if (password) add("password", *password);
  std::string hosts, ports;
  bool any_port = false;
  for (std::size_t i = 0; i < parsed.hosts.size(); ++i) {
    if (i > 0) {
      hosts += ',';
      ports += ',';
    }
    hosts += parsed.hosts[i].host;
    if (parsed.hosts[i].port) {
      ports += std::to_string(*parsed.hosts[i].port);
      any_port = true;
    }
  }
  if (!hosts.empty() && hosts.find_first_not_of(',') != std::string::npos) add("host", hosts);
  if (any_port) add("port", ports);  // an empty item means libpq's default port
  if (parsed.path.size() > 1) add("dbname", parsed.path.substr(1));
  if (parsed.path.find('/', 1) != std::string::npos) {
    detail::throw_bad_url(url, "the path must be just the database name");
  }

  if (auto schema = ours.take("schema")) options.schema = *schema;
  if (auto t = ours.take("connect_timeout")) {
    // libpq's own connect_timeout is whole seconds without a unit; accept that spelling too.
    bool digits = !t->empty() && t->find_first_not_of("0123456789") == std::string::npos;
    try {
      options.connect_timeout = digits && t->size() < 7
                                    ? std::chrono::milliseconds(std::stoll(*t) * 1000)
                                    : parse_duration(*t, "connect_timeout");
    } catch (const std::invalid_argument& e) {
      detail::throw_bad_url(url, e.what());
    }
  }
  if (auto t = ours.take_duration("command_timeout")) options.command_timeout = *t;
  if (auto n = ours.take_uint("connections", 1, 1024)) options.connections = *n;
  if (auto p = ours.take("prepare")) options.prepare = parse_bool(url, "prepare", *p);
  if (auto v = ours.take("synchronous_commit")) options.synchronous_commit = *v;

  static const std::set<std::string, std::less<>> kOurs = {
      "schema",      "connect_timeout", "command_timeout",
      "connections", "prepare",         "synchronous_commit",
      "password",    "password_file",   "password_env"};
  std::set<std::string, std::less<>> known;
  {
    std::unique_ptr<PQconninfoOption, ConninfoDeleter> defaults(PQconndefaults());
    if (defaults) {
      for (const auto* o = defaults.get(); o->keyword; ++o) known.insert(o->keyword);
    }
  }
  for (const auto& [name, value] : parsed.query) {
    if (kOurs.count(name)) continue;
    if (name == "ssl" && (value == "true" || value == "1")) {  // libpq URI spelling
      add("sslmode", "require");
      continue;
    }
    if (!known.count(name)) {
      detail::throw_bad_url(url, detail::unknown_option(name, parsed.query) +
                                     " (neither a lockkit option nor a libpq keyword)");
    }
    add(name, value);
  }
  options.conninfo = std::move(conninfo);
  try {
    (void)make_postgres_store(options);  // validates schema, timeouts and what libpq will parse
  } catch (const std::invalid_argument& e) {
    detail::throw_bad_url(url, e.what());
  }
  return options;
}

}  // namespace lockkit

// Kept by the linker through --undefined (see lockkit_add_backend), with the registration below.
extern "C" void lockkit_backend_anchor_postgres() {}

namespace {
[[maybe_unused]] const bool kRegistered = [] {
  auto factory = [](std::string_view url) -> std::shared_ptr<lockkit::LeaseStore> {
    return lockkit::make_postgres_store(lockkit::parse_postgres_url(url));
  };
  // Whatever libpq marks secret (dispchar "*": password, sslpassword, ...) is redacted from
  // every message, in URLs of any scheme.
  if (PQconninfoOption* defaults = PQconndefaults()) {
    for (const auto* o = defaults; o->keyword; ++o) {
      if (o->dispchar && std::strchr(o->dispchar, '*')) {
        lockkit::detail::register_secret_option(o->keyword);
      }
    }
    PQconninfoFree(defaults);
  }
  lockkit::register_backend("postgres", factory);
  lockkit::register_backend("postgresql", factory);
  return true;
}();
}  // namespace
