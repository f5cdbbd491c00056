// SPDX-License-Identifier: MIT
// The redis-server fixture: drives scripts/redis-server.sh and redis-cli without a shell.
#include "support/redis_server.hpp"

#include <stdexcept>

#include "support/process.hpp"
#include "support/server_script.hpp"

namespace lockkit::testing {
namespace {

constexpr char kScript[] = "redis-server.sh";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

RedisServer::RedisServer(std::vector<std::string> extra_args) : extra_args_(std::move(extra_args)) {
  start();
}

RedisServer::~RedisServer() {
  try {
    if (running_) server_command(kScript, "stop", dir_.string());
  } catch (...) {  // a destructor must not throw; the directory still goes
  }
}

void RedisServer::start() {
  std::vector<std::string> args;
  if (port_ != 0) args = {"--port", std::to_string(port_)};
  if (!extra_args_.empty()) {
    args.push_back("--");
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  }
  port_ = start_server(kScript, dir_.string(), args).port;
  running_ = true;
}

void RedisServer::stop() {
  server_command(kScript, "stop", dir_.string());
  running_ = false;
}

void RedisServer::kill() {
  server_command(kScript, "kill", dir_.string());
  running_ = false;
}

std::string RedisServer::url(std::string_view tail) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + std::string(tail);
}

std::string RedisServer::cli(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(port_)};
  argv.insert(argv.end(), args.begin(), args.end());
  return trim(run_command(argv));
}

RedisServer& RedisServer::shared() {
  static RedisServer server;  // stopped by its destructor when the test binary exits
  return server;
}

}  // namespace lockkit::testing
