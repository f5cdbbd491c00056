// SPDX-License-Identifier: MIT
// `lockkit::open(url)`: the one factory from a backend URL to a `LockApi`, and its registry.
#ifndef LOCKKIT_OPEN_HPP_
#define LOCKKIT_OPEN_HPP_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockkit/backend.hpp"  // register_backend for a LeaseStore factory
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

// Opens the backend named by `url`: `memory:`, `noop:`, `noop:locked`, and every scheme of the
// backend libraries linked into the program (`sqlite://`, `redis://`,
// `postgres://`); linking `lockkit::redis` is enough, no registration call is needed.
// Throws `std::invalid_argument` quoting the URL (password redacted) for an unknown scheme or a
// malformed URL, `BackendError` if the backend connects eagerly and fails.
LOCKKIT_EXPORT std::shared_ptr<LockApi> open(std::string_view url);

// Makes a whole `LockApi` from its full URL.
using BackendFactory = std::function<std::shared_ptr<LockApi>(std::string_view url)>;

// Makes `scheme` (without ':', e.g. "redis") open through `factory`, which builds a whole
// `LockApi`; replaces an earlier one. A custom backend registers its `LeaseStore` instead
// (`register_backend` in lockkit/backend.hpp) and gets the core's `LockApi` over it.
LOCKKIT_EXPORT void register_backend(std::string scheme, BackendFactory factory);

// Returns the schemes `open` knows, sorted.
LOCKKIT_EXPORT std::vector<std::string> registered_schemes();

// Returns `url` with any password in its user info replaced by "***".
LOCKKIT_EXPORT std::string redact_url(std::string_view url);

}  // namespace lockkit

#endif  // LOCKKIT_OPEN_HPP_
