// SPDX-License-Identifier: MIT
// The Redis Cluster fixture: RedisServers in cluster mode joined by redis-cli --cluster create.
#include "support/redis_cluster.hpp"

#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace lockkit::testing {
namespace {

bool running(RedisServer& node) {
  int status = 0;
  run_command({"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(node.port()), "ping"}, &status);
  return status == 0;
}

}  // namespace

RedisCluster::RedisCluster(std::size_t masters, std::size_t replicas_per_master,
                           std::vector<std::string> extra_args, RedisTls tls) {
  // Replicas sync at once (the default waits 5 s for more replicas to share one transfer).
  std::vector<std::string> args{
      "--cluster-enabled",      "yes",  "--cluster-config-file",      "nodes.conf",
      "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0"};
  // One argument per word: redis-server quotes each argument as one token of the directive.
  args.insert(args.end(),
              {"--user", "app", "on", std::string(">") + kAppPassword, "~*", "&*", "+@all"});
  if (tls != RedisTls::kOff) {
    args.insert(args.end(), {"--tls-cluster", "yes", "--tls-replication", "yes"});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const std::size_t total = masters * (1 + replicas_per_master);
  for (std::size_t i = 0; i < total; ++i)
    nodes_.push_back(std::make_unique<RedisServer>(args, tls));
  std::vector<std::string> create{"redis-cli", "--cluster", "create"};
  for (auto& n : nodes_) create.push_back("127.0.0.1:" + std::to_string(n->port()));
  create.insert(create.end(),
                {"--cluster-replicas", std::to_string(replicas_per_master), "--cluster-yes"});
  run_command(create);
  replicas_per_master_ = replicas_per_master;
  wait_ok();
  wait_in_sync();
}

void RedisCluster::wait_in_sync(std::chrono::milliseconds timeout) {
  if (replicas_per_master_ == 0) return;
  // Each master's INFO: its replicas connected and none waiting for or receiving a transfer.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (std::size_t m : masters()) {
    const std::string want = "connected_slaves:" + std::to_string(replicas_per_master_);
    auto in_sync = [&] {
      std::string info = nodes_[m]->cli({"info", "replication"});
      return info.find(want) != std::string::npos && info.find("state=wait") == std::string::npos &&
             info.find("state=send") == std::string::npos;
    };
    while (!in_sync()) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("redis cluster: replicas did not connect");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, bounded
    }
  }
}

RedisCluster::~RedisCluster() = default;  // each RedisServer stops its own pid

std::string RedisCluster::url(std::string_view tail, std::size_t seeds) const {
  std::string out = "redis://";
  const std::size_t n = seeds == 0 ? nodes_.size() : seeds;
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += ',';
    out += "127.0.0.1:" + std::to_string(nodes_[i]->port());
  }
  out += "?cluster=1";
  out += tail;
  return out;
}

std::string RedisCluster::tls_url(std::string_view tail) const {
  std::string out = "rediss://";
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (i > 0) out += ',';
    out += "127.0.0.1:" + std::to_string(nodes_[i]->tls_port());
  }
  out += "?cluster=1&tls_ca_file=" + TestPki::shared().ca;
  out += tail;
  return out;
}

std::string RedisCluster::id(std::size_t i) {
  return nodes_[i]->cli({"cluster", "myid"});
}

std::size_t RedisCluster::master_of(std::uint16_t slot) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!running(*nodes_[i])) continue;
    // CLUSTER NODES: id addr flags master-id ping pong epoch link-state slot-ranges...
    std::istringstream in(nodes_[i]->cli({"cluster", "nodes"}));
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string w; fields >> w;) f.push_back(w);
      if (f.size() < 9 || f[2].find("master") == std::string::npos) continue;
      for (std::size_t k = 8; k < f.size(); ++k) {
        if (f[k].front() == '[') continue;  // a migration in progress, not ownership
        std::size_t dash = f[k].find('-');
        unsigned long lo = std::stoul(f[k].substr(0, dash));
        unsigned long hi = dash == std::string::npos ? lo : std::stoul(f[k].substr(dash + 1));
        if (slot < lo || slot > hi) continue;
        std::string port = f[1].substr(f[1].find(':') + 1);
        port = port.substr(0, port.find('@'));
        for (std::size_t n = 0; n < nodes_.size(); ++n) {
          if (std::to_string(nodes_[n]->port()) == port) return n;
        }
      }
    }
    return nodes_.size();
  }
  return nodes_.size();
}

std::vector<std::size_t> RedisCluster::masters() {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!running(*nodes_[i])) continue;
    if (nodes_[i]->cli({"role"}).substr(0, 6) == "master") out.push_back(i);
  }
  return out;
}

void RedisCluster::wait_ok(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (true) {
    bool ok = true;
    std::set<std::string> maps;
    for (auto& n : nodes_) {
      if (!running(*n)) continue;
      last = n->cli({"cluster", "info"});
      if (last.find("cluster_state:ok") == std::string::npos) {
        ok = false;
        break;
      }
      // Only masters' slot ranges and their ports; replicas differ in order, not in masters.
      std::string nodes = n->cli({"cluster", "nodes"});
      std::istringstream in(nodes);
      std::set<std::string> owned;
      for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::vector<std::string> f;
        for (std::string w; fields >> w;) f.push_back(w);
        if (f.size() < 8 || f[2].find("master") == std::string::npos ||
            f[2].find("fail") != std::string::npos) {
          continue;
        }
        std::string ranges = f[1];
        for (std::size_t k = 8; k < f.size(); ++k) ranges += " " + f[k];
        owned.insert(ranges);
      }
      std::string joined;
      for (const auto& o : owned) joined += o + ";";
      maps.insert(joined);
    }
    if (ok && maps.size() == 1) return;
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("redis cluster: not ok after " + std::to_string(timeout.count()) +
                               "ms: " + last);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, bounded
  }
}

RedisCluster& RedisCluster::shared() {
  static RedisCluster cluster;  // stopped by its destructor when the test binary exits
  return cluster;
}

}  // namespace lockkit::testing
