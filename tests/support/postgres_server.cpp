// SPDX-License-Identifier: MIT
// The PostgreSQL test cluster: scripts/postgres-server.sh in a TempDir, by support/server_script.
#include "support/postgres_server.hpp"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "support/server_script.hpp"

namespace lockkit::testing {
namespace {

constexpr char kScript[] = "postgres-server.sh";

// Returns the pids of `parent`'s children (the server's backends and helper processes).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::unique_ptr<DIR, int (*)(DIR*)> proc(::opendir("/proc"), ::closedir);
  if (!proc) return out;
  while (dirent* e = ::readdir(proc.get())) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    std::size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  return out;
}

}  // namespace

PostgresServer& PostgresServer::shared() {
  static PostgresServer server;  // destroyed at exit: the cluster goes with the binary
  return server;
}

PostgresServer::PostgresServer() {
  run_start();
  password_ = "lockkit-test-password";
  std::string prefix = "postgres://lockkit:" + password_ + "@";
  if (url_.rfind(prefix, 0) != 0) throw std::runtime_error("postgres fixture: unexpected URL");
}

void PostgresServer::run_start() {
  std::vector<std::string> args;
  if (port_ != 0) args = {"--port", std::to_string(port_)};  // the same port after a restart
  ScriptServer server = start_server(kScript, dir_.string(), args);
  port_ = server.port;
  pid_ = server.pid;
  url_ = server.url;
  running_ = true;
}

PostgresServer::~PostgresServer() {
  try {
    if (running_) server_command(kScript, "stop", dir_.string());
  } catch (...) {  // at exit: nothing left to report to; the directory still goes
  }
}

std::string PostgresServer::url(std::string_view query) const {
  return query.empty() ? url_ : url_ + "?" + std::string(query);
}

std::string PostgresServer::url_with_password(std::string_view password) const {
  return "postgres://lockkit:" + std::string(password) + "@127.0.0.1:" + std::to_string(port_) +
         "/lockkit";
}

void PostgresServer::stop() {
  server_command(kScript, "stop", dir_.string());
  running_ = false;
}

void PostgresServer::crash() {
  server_command(kScript, "kill", dir_.string());  // immediate shutdown: no checkpoint
  running_ = false;
}

void PostgresServer::start() {
  run_start();
}

void PostgresServer::pause() {
  ::kill(pid_, SIGSTOP);  // first, so it forks no new backend
  for (pid_t child : children_of(pid_)) ::kill(child, SIGSTOP);
}

void PostgresServer::resume() {
  for (pid_t child : children_of(pid_)) ::kill(child, SIGCONT);
  ::kill(pid_, SIGCONT);
}

}  // namespace lockkit::testing
