// SPDX-License-Identifier: MIT
// The PostgreSQL test cluster: runs scripts/postgres-server.sh and parses what it prints.
#include "support/postgres_server.hpp"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lockkit::testing {
namespace {

std::string script() {
  return std::string(LOCKKIT_SOURCE_DIR) + "/scripts/postgres-server.sh";
}

// Runs `command` through /bin/sh and returns its stdout; throws with the exit status on failure.
std::string run(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("postgres fixture: cannot run " + command);
  std::string out;
  char buf[512];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  int status = ::pclose(pipe.release());
  if (status != 0) {
    throw std::runtime_error("postgres fixture: `" + command + "` failed (status " +
                             std::to_string(status) + "); see its stderr above");
  }
  return out;
}

std::string field(const std::string& out, const std::string& name) {
  std::size_t at = out.find(name + "=");
  if (at == std::string::npos) {
    throw std::runtime_error("postgres fixture: the script printed no " + name + ": " + out);
  }
  std::size_t start = at + name.size() + 1;
  return out.substr(start, out.find('\n', start) - start);
}

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
  std::string command = "bash '" + script() + "' start --owner-pid " + std::to_string(::getpid());
  if (!dir_.empty()) command += " --dir '" + dir_ + "' --port " + std::to_string(port_);
  std::string out = run(command);
  dir_ = field(out, "PG_DIR");
  port_ = static_cast<std::uint16_t>(std::stoi(field(out, "PG_PORT")));
  pid_ = static_cast<pid_t>(std::stol(field(out, "PG_PID")));
  url_ = field(out, "PG_URL");
}

PostgresServer::~PostgresServer() {
  if (dir_.empty()) return;
  try {
    run("bash '" + script() + "' destroy '" + dir_ + "'");
  } catch (...) {  // at exit: nothing left to report to
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
  run("bash '" + script() + "' stop '" + dir_ + "'");
}

void PostgresServer::crash() {
  ::kill(pid_, SIGCONT);  // a paused server must run to quit
  ::kill(pid_, SIGQUIT);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (::kill(pid_, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling for its exit
  }
  stop();  // SIGKILL if it has not gone; a no-op otherwise
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
