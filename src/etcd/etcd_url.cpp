// SPDX-License-Identifier: MIT
// etcd:// URLs: parsing into EtcdOptions, the factories, and the scheme's registration.
#include <functional>
#include <string>

#include "core/url.hpp"
#include "etcd/etcd_store.hpp"
#include "lockkit/etcd.hpp"
#include "lockkit/open.hpp"

namespace lockkit {

EtcdOptions parse_etcd_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  if (parsed.scheme != "etcd") detail::throw_bad_url(url, "scheme must be etcd://");
  if (!parsed.has_authority || parsed.hosts.empty()) {
    detail::throw_bad_url(url, "no endpoint (use etcd://host:2379[,host:2379...])");
  }
  if (!parsed.path.empty() && parsed.path != "/") {
    detail::throw_bad_url(url, "an etcd URL has no path; set a key prefix with ?prefix=");
  }
  EtcdOptions o;
  o.endpoints.clear();
  for (const auto& h : parsed.hosts) {
    if (h.host.empty()) detail::throw_bad_url(url, "an endpoint has an empty host");
    std::string host = h.host.find(':') != std::string::npos ? "[" + h.host + "]" : h.host;
    o.endpoints.push_back(host + ":" + std::to_string(h.port.value_or(2379)));
  }
  o.user = parsed.user;
  detail::QueryOptions options(url, parsed);
  if (auto password = detail::take_password(options, parsed.password)) o.password = *password;
  if (auto v = options.take_duration("connect_timeout")) o.connect_timeout = *v;
  if (auto v = options.take_duration("command_timeout")) o.command_timeout = *v;
  if (auto v = options.take("prefix")) o.prefix = *v;
  bool tls_off = false;
  if (auto v = options.take("tls")) {
    if (*v == "1" || *v == "true") {
      o.tls.enabled = true;
    } else if (*v == "0" || *v == "false") {
      tls_off = true;
    } else {
      detail::throw_bad_url(url, "tls: must be 1, true, 0 or false");
    }
  }
  for (auto [name, field] :
       {std::pair{"tls_ca_file", &o.tls.ca_file}, std::pair{"tls_cert", &o.tls.cert_file},
        std::pair{"tls_key", &o.tls.key_file}, std::pair{"tls_server_name", &o.tls.server_name}}) {
    if (auto v = options.take(name)) {
      if (tls_off) detail::throw_bad_url(url, std::string(name) + ": given with tls=0");
      *field = *v;
      o.tls.enabled = true;
    }
  }
  options.finish();
  try {
    detail::etcd::validate(o);
  } catch (const std::invalid_argument& e) {
    detail::throw_bad_url(url, e.what());
  }
  return o;
}

std::shared_ptr<LeaseStore> make_etcd_store(EtcdOptions options) {
  return std::make_shared<detail::etcd::EtcdStore>(options);
}

std::shared_ptr<LockApi> make_etcd_lock_api(EtcdOptions options) {
  return make_lock_api(make_etcd_store(std::move(options)));
}

}  // namespace lockkit

// Keeps this object (and so the registration below) in every program that links lockkit::etcd.
extern "C" void lockkit_backend_anchor_etcd() {}

namespace {
[[maybe_unused]] const bool kRegistered = [] {
  lockkit::register_backend("etcd",
                            std::function<std::shared_ptr<lockkit::LeaseStore>(std::string_view)>(
                                [](std::string_view url) {
                                  return lockkit::make_etcd_store(lockkit::parse_etcd_url(url));
                                }));
  return true;
}();
}  // namespace
