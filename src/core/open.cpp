// SPDX-License-Identifier: MIT
// The scheme registry behind lockkit::open, with the built-in memory: and noop: backends.
#include "lockkit/open.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/memory.hpp"
#include "lockkit/noop.hpp"

namespace lockkit {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, BackendFactory, std::less<>> factories;
};

std::shared_ptr<LockApi> open_memory(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  if (parsed.has_authority || !parsed.path.empty()) detail::throw_bad_url(url, "use \"memory:\"");
  detail::QueryOptions options(url, parsed);
  MemoryOptions memory;
  if (auto shards = options.take_uint("shards", 1, 65536)) memory.shards = *shards;
  options.finish();
  return make_memory_lock_api(memory);
}

std::shared_ptr<LockApi> open_noop(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);
  if (parsed.has_authority || !parsed.query.empty() ||
      (parsed.path != "" && parsed.path != "locked" && parsed.path != "unlocked")) {
    detail::throw_bad_url(url, "use \"noop:\" or \"noop:locked\"");
  }
  return make_noop_lock_api(parsed.path == "locked");
}

// Function-local, so backends registering from static initialisers find it constructed.
Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;  // never destroyed: static destructors may still open URLs
    reg->factories.emplace("memory", &open_memory);
    reg->factories.emplace("noop", &open_noop);
    return reg;
  }();
  return *r;
}

}  // namespace

void register_backend(std::string scheme, BackendFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> guard(r.mu);
  r.factories[std::move(scheme)] = std::move(factory);
}

void register_backend(std::string scheme,
                      std::function<std::shared_ptr<LeaseStore>(std::string_view url)> factory) {
  if (!factory) throw std::invalid_argument("factory: must not be empty");
  register_backend(std::move(scheme),
                   BackendFactory([factory = std::move(factory)](std::string_view url) {
                     return make_lock_api(factory(url));
                   }));
}

std::vector<std::string> registered_schemes() {
  Registry& r = registry();
  std::lock_guard<std::mutex> guard(r.mu);
  std::vector<std::string> out;
  for (const auto& [scheme, factory] : r.factories) out.push_back(scheme);
  return out;
}

std::shared_ptr<LockApi> open(std::string_view url) {
  std::size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) detail::throw_bad_url(url, "missing scheme");
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  BackendFactory factory;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> guard(r.mu);
    auto it = r.factories.find(scheme);
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& s : registered_schemes()) known += (known.empty() ? "" : ", ") + s + ":";
    detail::throw_bad_url(url, "unknown scheme \"" + scheme + "\" (known: " + known + ")");
  }
  return factory(url);  // outside the registry mutex: factories may connect
}

}  // namespace lockkit
