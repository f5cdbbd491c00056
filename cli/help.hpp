// SPDX-License-Identifier: MIT
// The `lockkit` help pages.
#ifndef LOCKKIT_CLI_HELP_HPP_
#define LOCKKIT_CLI_HELP_HPP_

#include <string>
#include <string_view>

namespace lockkit::cli {

// Returns the help page of `subcommand` ("run", ...), or the main page for "".
std::string help_text(std::string_view subcommand);

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_HELP_HPP_
