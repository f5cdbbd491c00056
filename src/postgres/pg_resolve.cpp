// SPDX-License-Identifier: MIT
// Name resolution with a deadline: libpq's own getaddrinfo call ignores every timeout.
#include "postgres/pg_resolve.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace lockkit::detail::pg {
namespace {

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = list.find(',', start);
    out.push_back(list.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

bool numeric_host(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::vector<std::string> resolve_host(const std::string& host, Deadline deadline) {
  struct Lookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int status = 0;
    std::vector<std::string> addresses;
  };
  auto lookup = std::make_shared<Lookup>();
  std::thread([host, lookup] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    int status = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
    std::vector<std::string> addresses;
    for (addrinfo* a = list; status == 0 && a; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* raw = a->ai_family == AF_INET
                            ? static_cast<const void*>(
                                  &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr)
                            : static_cast<const void*>(
                                  &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr);
      if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
          ::inet_ntop(a->ai_family, raw, text, sizeof text)) {
        std::string addr = text;
        bool seen = false;
        for (const auto& s : addresses) seen = seen || s == addr;
        if (!seen) addresses.push_back(addr);
      }
    }
    if (list) ::freeaddrinfo(list);
    std::lock_guard<std::mutex> guard(lookup->mu);
    lookup->done = true;
    lookup->status = status;
    lookup->addresses = std::move(addresses);
    lookup->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(lookup->mu);
  if (!lookup->cv.wait_until(lock, deadline, [&] { return lookup->done; })) {
    throw StoreFailure{ErrorKind::kTimeout, "resolve \"" + host + "\" timed out", false, true, {}};
  }
  if (lookup->status != 0 || lookup->addresses.empty()) {
    std::string why = lookup->status != 0 ? ::gai_strerror(lookup->status) : "no address";
    throw StoreFailure{
        ErrorKind::kUnavailable, "resolve \"" + host + "\": " + why, false, true, {}};
  }
  return lookup->addresses;
}

ConnParams with_resolved_hosts(const ConnParams& params, Deadline deadline) {
  std::string host, hostaddr, port;
  bool has_host = false, has_hostaddr = false, has_port = false;
  for (const auto& [k, v] : params) {
    if (k == "host") host = v, has_host = true;
    if (k == "hostaddr") hostaddr = v, has_hostaddr = true;
    if (k == "port") port = v, has_port = true;
  }
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  if (!has_host) host = env("PGHOST");
  if (!has_hostaddr) hostaddr = env("PGHOSTADDR");
  if (!has_port) port = env("PGPORT");
  if (host.empty()) return params;  // a Unix socket, or hostaddr alone: nothing to resolve

  std::vector<std::string> hosts = split(host);
  std::vector<std::string> addrs =
      hostaddr.empty() ? std::vector<std::string>(hosts.size()) : split(hostaddr);
  std::vector<std::string> ports = split(port);
  // libpq's rules: a hostaddr list matches the host list; one port serves every host.
  if (addrs.size() != hosts.size()) return params;  // libpq will say what is wrong
  if (ports.size() != 1 && ports.size() != hosts.size()) return params;

  std::vector<std::string> out_host, out_addr, out_port;
  std::optional<StoreFailure> first_failure;
  bool any_name = false;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    const std::string& h = hosts[i];
    const std::string& p = ports.size() == 1 ? ports[0] : ports[i];
    bool as_is = !addrs[i].empty() || h.empty() || h[0] == '/' || h[0] == '@' || numeric_host(h);
    if (as_is) {
      out_host.push_back(h);
      out_addr.push_back(!addrs[i].empty() || !numeric_host(h) ? addrs[i] : h);
      out_port.push_back(p);
      continue;
    }
    any_name = true;
    try {
      for (const auto& a : resolve_host(h, deadline)) {
        out_host.push_back(h);
        out_addr.push_back(a);
        out_port.push_back(p);
      }
    } catch (const StoreFailure& e) {
      if (!first_failure) first_failure = e;
      if (e.kind() == ErrorKind::kTimeout) break;  // the deadline is gone for every later host
    }
  }
  if (!any_name && hostaddr.empty()) return params;
  if (out_host.empty()) throw *first_failure;
  auto join = [](const std::vector<std::string>& items) {
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
    return out;
  };
  ConnParams out;
  for (const auto& kv : params) {
    if (kv.first != "host" && kv.first != "hostaddr" && kv.first != "port") out.push_back(kv);
  }
  out.emplace_back("host", join(out_host));
  out.emplace_back("hostaddr", join(out_addr));
  out.emplace_back("port", join(out_port));
  return out;
}

}  // namespace lockkit::detail::pg
