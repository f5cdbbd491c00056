// SPDX-License-Identifier: MIT
// The backends the tool loads on first use: lockkit-<backend>.so in ${libdir}/lockkit.
#ifndef LOCKKIT_CLI_MODULES_HPP_
#define LOCKKIT_CLI_MODULES_HPP_

#include <string>
#include <string_view>

namespace lockkit::cli {

// Makes sure `lockkit::open(url)` knows the scheme of `url`: if it is not registered yet and a
// module provides it, loads that module, whose backend registers its schemes. For a scheme that
// no module provides, loads every module there is, so that `open`'s "unknown scheme" message
// lists all the schemes this tool knows. Throws `BackendError` (kUnavailable) naming the module
// and the reason when the module a scheme needs cannot be loaded.
// Why: the network backends' client libraries (libpq with OpenSSL, Kerberos, LDAP, GnuTLS, ...)
// are ~25 shared libraries whose loading costs more than all the rest of `lockkit run`; a tool
// linked with them pays that on every sqlite:// command.
void load_module_for(std::string_view url);

// Returns the directory the modules are loaded from: `kModuleDirFromTool` relative to the
// directory of the running executable (/proc/self/exe), else the installed directory.
std::string module_dir();

}  // namespace lockkit::cli

#endif  // LOCKKIT_CLI_MODULES_HPP_
