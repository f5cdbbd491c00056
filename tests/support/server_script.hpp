// SPDX-License-Identifier: MIT
// Test support: drives scripts/redis-server.sh and scripts/postgres-server.sh, which share their
// arguments and output (SERVER_DIR=, SERVER_PORT=, SERVER_PID=, SERVER_URL= lines).
#ifndef LOCKKIT_TESTS_SUPPORT_SERVER_SCRIPT_HPP_
#define LOCKKIT_TESTS_SUPPORT_SERVER_SCRIPT_HPP_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lockkit::testing {

// What a server script's `start` printed.
struct ScriptServer {
  std::uint16_t port = 0;
  pid_t pid = 0;
  std::string url;
  std::uint16_t tls_port = 0;  // redis-server.sh --with-tls-port: SERVER_TLS_PORT=
};

// Runs `scripts/<script> start DIR --owner-pid <this process> [args...]` (so the script's
// watchdog stops the server if this process dies) and returns what it printed. Throws
// `std::runtime_error` with the script's stderr if it fails.
ScriptServer start_server(const std::string& script, const std::string& dir,
                          const std::vector<std::string>& args = {});

// Runs `scripts/<script> <command> DIR` (stop, kill, destroy); throws like `start_server`.
void server_command(const std::string& script, const std::string& command, const std::string& dir);

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_SERVER_SCRIPT_HPP_
