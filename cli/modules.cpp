// SPDX-License-Identifier: MIT
// Loads the tool's backend modules (lockkit-<backend>.so) when a URL needs one.
#include "modules.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>
#include <vector>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "modules_config.hpp"

namespace lockkit::cli {
namespace {

// Returns the lower-case scheme of `url`, or "" if it has none.
std::string scheme_of(std::string_view url) {
  std::size_t colon = url.find(':');
  if (colon == std::string_view::npos) return {};
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return scheme;
}

bool registered(const std::string& scheme) {
  std::vector<std::string> known = registered_schemes();  // sorted
  return std::binary_search(known.begin(), known.end(), scheme);
}

// Loads lockkit-<module>.so. Returns "" on success, else why not (dlerror names the file).
std::string load(std::string_view module) {
  std::string path = module_dir() + "/lockkit-" + std::string(module) + ".so";
  // RTLD_NOW: a module that does not fit this tool fails here as a whole, not at a later call.
  // RTLD_LOCAL: its client library's symbols stay its own. Never closed: its backend stays
  // registered (and its Locks in use) until the tool exits.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL) != nullptr) return {};
  const char* error = dlerror();
  return error != nullptr ? error : path + ": cannot be loaded";
}

}  // namespace

std::string module_dir() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec || !exe.is_absolute()) return std::string(kModuleDirInstalled);
  return (exe.parent_path() / kModuleDirFromTool).lexically_normal().string();
}

void load_module_for(std::string_view url) {
  std::string scheme = scheme_of(url);
  if (scheme.empty() || registered(scheme)) return;
  for (const ModuleScheme& m : kModuleSchemes) {
    if (m.scheme == scheme) {
      std::string error = load(m.module);
      if (!error.empty()) {
        throw BackendError(
            m.module, ErrorKind::kUnavailable,
            "this lockkit cannot load its module for " + scheme + ": URLs: " + error);
      }
      return;
    }
  }
  // An unknown scheme: `open` will say so, listing every scheme it knows once all are loaded.
  for (const ModuleScheme& m : kModuleSchemes) {
    if (!m.module.empty()) load(m.module);
  }
}

}  // namespace lockkit::cli
