// SPDX-License-Identifier: MIT
// etcd-raw-bench: the ceiling for etcd:// pairs/s. Bare gRPC clients (threads on one channel,
// like lockkit's) sending exactly the requests of a granted lockkit pair: LeaseGrant, Txn
// "create if absent, with the lease", Txn "delete if the value is the token", LeaseRevoke.
//
//   etcd-raw-bench --endpoint 127.0.0.1:2379 --clients 64 --seconds 5
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_stats.hpp"
#include "rpc.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: etcd-raw-bench --endpoint HOST:PORT [--clients C] [--seconds S]\n");
  std::exit(64);
}

grpc::Status call_deadline(grpc::ClientContext& c) {
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return grpc::Status::OK;
}

struct Result {
  std::uint64_t pairs = 0;
  std::uint64_t errors = 0;
  std::vector<std::uint32_t> latency_us;
};

// One granted pair; returns false on any failure.
bool pair(etcdserverpb::KV::Stub& kv, etcdserverpb::Lease::Stub& lease, const std::string& key,
          const std::string& token) {
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(10);
  etcdserverpb::LeaseGrantResponse granted;
  {
    grpc::ClientContext c;
    call_deadline(c);
    if (!lease.LeaseGrant(&c, grant, &granted).ok()) return false;
  }
  etcdserverpb::TxnRequest create;
  auto* cmp = create.add_compare();
  cmp->set_key(key);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(0);
  auto* put = create.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(token);
  put->set_lease(granted.id());
  etcdserverpb::TxnResponse created;
  {
    grpc::ClientContext c;
    call_deadline(c);
    if (!kv.Txn(&c, create, &created).ok() || !created.succeeded()) return false;
  }
  etcdserverpb::TxnRequest erase;
  auto* same = erase.add_compare();
  same->set_key(key);
  same->set_target(etcdserverpb::Compare::VALUE);
  same->set_result(etcdserverpb::Compare::EQUAL);
  same->set_value(token);
  auto* del = erase.add_success()->mutable_request_delete_range();
  del->set_key(key);
  del->set_prev_kv(true);
  etcdserverpb::TxnResponse erased;
  {
    grpc::ClientContext c;
    call_deadline(c);
    if (!kv.Txn(&c, erase, &erased).ok() || !erased.succeeded()) return false;
  }
  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(granted.id());
  etcdserverpb::LeaseRevokeResponse revoked;
  grpc::ClientContext c;
  call_deadline(c);
  return lease.LeaseRevoke(&c, revoke, &revoked).ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint;
  int clients = 1;
  double seconds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 >= argc) usage();
    if (a == "--endpoint") {
      endpoint = argv[++i];
    } else if (a == "--clients") {
      clients = std::atoi(argv[++i]);
    } else if (a == "--seconds") {
      seconds = std::atof(argv[++i]);
    } else {
      usage();
    }
  }
  if (endpoint.empty() || clients < 1 || seconds <= 0) usage();
  auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  auto kv = etcdserverpb::KV::NewStub(channel);
  auto lease = etcdserverpb::Lease::NewStub(channel);
  std::vector<Result> results(static_cast<std::size_t>(clients));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto begin = Clock::now();
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      Result& r = results[static_cast<std::size_t>(t)];
      const std::string token = "0123456789abcdef0123456789abcd" + std::to_string(t % 100);
      for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        const std::string key = "raw-bench/" + std::to_string(t) + "/" + std::to_string(n % 1000);
        const auto start = Clock::now();
        if (!pair(*kv, *lease, key, token)) {
          ++r.errors;
          continue;
        }
        ++r.pairs;
        r.latency_us.push_back(static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double took = std::chrono::duration<double>(Clock::now() - begin).count();
  Result total;
  for (auto& r : results) {
    total.pairs += r.pairs;
    total.errors += r.errors;
    total.latency_us.insert(total.latency_us.end(), r.latency_us.begin(), r.latency_us.end());
  }
  std::printf("etcd-raw %-30s clients=%-4d pairs/s=%-10.0f p50=%.0fus p99=%.0fus errors=%llu\n",
              endpoint.c_str(), clients, static_cast<double>(total.pairs) / took,
              lockkit::bench::percentile(total.latency_us, 0.5),
              lockkit::bench::percentile(total.latency_us, 0.99),
              static_cast<unsigned long long>(total.errors));
  return total.errors > 0 ? 1 : 0;
}
