// SPDX-License-Identifier: MIT
// The server scripts' common interface: run without a shell, their output parsed in one place.
#include "support/server_script.hpp"

#include <unistd.h>

#include <stdexcept>

#include "support/process.hpp"

namespace lockkit::testing {
namespace {

std::string script_path(const std::string& script) {
  return std::string(LOCKKIT_SOURCE_DIR) + "/scripts/" + script;
}

std::string field(const std::string& script, const std::string& out, const std::string& name) {
  std::size_t at = out.find(name + "=");
  if (at == std::string::npos) {
    throw std::runtime_error(script + " printed no " + name + ": " + out);
  }
  std::size_t start = at + name.size() + 1;
  return out.substr(start, out.find('\n', start) - start);
}

}  // namespace

ScriptServer start_server(const std::string& script, const std::string& dir,
                          const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"bash", script_path(script), "start",
                                   dir,    "--owner-pid",       std::to_string(::getpid())};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out = run_command(argv);
  ScriptServer server;
  server.port = static_cast<std::uint16_t>(std::stoi(field(script, out, "SERVER_PORT")));
  server.pid = static_cast<pid_t>(std::stol(field(script, out, "SERVER_PID")));
  server.url = field(script, out, "SERVER_URL");
  if (out.find("SERVER_TLS_PORT=") != std::string::npos) {
    server.tls_port = static_cast<std::uint16_t>(std::stoi(field(script, out, "SERVER_TLS_PORT")));
  }
  return server;
}

void server_command(const std::string& script, const std::string& command, const std::string& dir) {
  (void)run_command({"bash", script_path(script), command, dir});
}

}  // namespace lockkit::testing
