// SPDX-License-Identifier: MIT
// Keeps the support library non-empty before any fixture exists.
namespace lockkit::testing {
void support_anchor() {}
}  // namespace lockkit::testing
