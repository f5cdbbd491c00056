// SPDX-License-Identifier: MIT
// The etcd v3 calls over gRPC: one channel per endpoint, deadlines on every call, gRPC status
// to StoreFailure in one function, authentication tokens, fork detection.
#include "etcd/etcd_client.hpp"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "core/escape.hpp"
#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/duration.hpp"
#include "rpc.grpc.pb.h"

namespace lockkit::detail::etcd {
namespace {

// What repeating a request on another member would do.
enum class Op : std::uint8_t {
  kRead,        // nothing
  kIdempotent,  // the same as doing it once (or leave a lease without a key, which expires)
  kWrite,       // maybe apply it twice: a lost answer makes it in doubt
};

using Clock = std::chrono::system_clock;  // gRPC deadlines are system_clock time points
using std::chrono::milliseconds;

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

// The one translation of a gRPC status. `write`: the request changes the store, so a reply
// that never came means it may have been applied.
[[noreturn]] void fail(const grpc::Status& status, std::string_view what, std::string_view address,
                       bool write) {
  std::string message = std::string(what) + " on " + std::string(address) + ": ";
  std::string detail = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      throw StoreFailure(ErrorKind::kTimeout, message + "no answer in time", write);
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      // Refused before being applied.
      throw StoreFailure(ErrorKind::kAuth, message + detail);
    case grpc::StatusCode::INVALID_ARGUMENT:
      // A cluster with auth on, asked without a user.
      if (detail.find("user name is empty") != std::string::npos) {
        throw StoreFailure(ErrorKind::kAuth, message + detail + " (the cluster needs a user)");
      }
      throw StoreFailure(ErrorKind::kProtocol, message + detail);
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:  // "too many requests", "database space exceeded"
      throw StoreFailure(ErrorKind::kUnavailable, message + detail, write);
    default:
      throw StoreFailure(ErrorKind::kProtocol, message + detail, write);
  }
}

// etcd answers a request with an expired or unknown auth token like this; a new token and one
// more try fix it (the request was refused before it was applied).
bool stale_token(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
         status.error_message().find("invalid auth token") != std::string::npos;
}

void set_range_end_for_prefix(std::string_view prefix, std::string* key, std::string* end) {
  key->assign(prefix.data(), prefix.size());
  if (prefix.empty()) {
    // etcd's convention for "every key": key and range_end both "\0".
    key->assign(1, '\0');
    end->assign(1, '\0');
    return;
  }
  *end = *key;
  // The first key after every key starting with `prefix`: drop trailing 0xff bytes, then add
  // one to the last byte; all 0xff means "to the end" ("\0").
  while (!end->empty() && static_cast<unsigned char>(end->back()) == 0xff) end->pop_back();
  if (end->empty()) {
    end->assign(1, '\0');
  } else {
    end->back() = static_cast<char>(static_cast<unsigned char>(end->back()) + 1);
  }
}

// The process that first used gRPC through this backend. gRPC's threads, connections and poller
// stay with that process across fork(): a child that used gRPC too would read the parent's
// sockets and events (it corrupted the parent's connection when tried).
std::atomic<pid_t> g_grpc_process{0};

[[noreturn]] void forked() {
  throw StoreFailure(ErrorKind::kUnsupported,
                     "gRPC was started by this process's parent before fork() and does not "
                     "survive it: use etcd:// in the parent, or exec a new program in the child");
}

}  // namespace

struct Client::Impl {
  explicit Impl(ClientConfig c) : config(std::move(c)), owner(::getpid()) {
    pid_t first = 0;
    if (!g_grpc_process.compare_exchange_strong(first, owner) && first != owner) forked();
    grpc::ChannelArguments args;
    // Reconnect soon after a member comes back, not after gRPC's default backoff (up to 2 min).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                static_cast<int>(std::min<std::int64_t>(config.connect_timeout.count(), 1 << 30)));
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (config.tls) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = config.ca_pem;
      ssl.pem_cert_chain = config.cert_pem;
      ssl.pem_private_key = config.key_pem;
      credentials = grpc::SslCredentials(ssl);
      if (!config.server_name.empty()) args.SetSslTargetNameOverride(config.server_name);
    }
    endpoints = std::make_unique<std::vector<Endpoint>>();
    for (const auto& address : config.endpoints) {
      Endpoint e;
      e.address = address;
      e.channel = grpc::CreateCustomChannel(address, credentials, args);
      e.kv = etcdserverpb::KV::NewStub(e.channel);
      e.lease = etcdserverpb::Lease::NewStub(e.channel);
      e.auth = etcdserverpb::Auth::NewStub(e.channel);
      e.watch = etcdserverpb::Watch::NewStub(e.channel);
      endpoints->push_back(std::move(e));
    }
  }

  ~Impl() {
    // gRPC's threads did not survive fork(): tearing the channels down in the child could wait
    // for them forever. The child leaves them to the parent.
    if (::getpid() != owner) (void)endpoints.release();
  }

  void check_process() const {
    if (::getpid() != owner) forked();
  }

  // Returns the index of a member that is connected, preferring the one that answered last;
  // waits until `deadline` at most. Throws kUnavailable if none is: nothing was sent.
  std::size_t connected(Clock::time_point deadline) {
    auto& list = *endpoints;
    const std::size_t n = list.size();
    const std::size_t first = current.load(std::memory_order_relaxed);
    auto ready = [&]() -> std::optional<std::size_t> {
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t index = (first + i) % n;
        if (list[index].channel->GetState(true) == GRPC_CHANNEL_READY) return index;
      }
      return std::nullopt;
    };
    auto found = ready();
    if (!found) {
      // None connected: every member is asked to connect now, in parallel (a member that was
      // down is retried at once, not after gRPC's backoff), and the first one up is taken. gRPC
      // reports a member that failed as failed until it connects, so nothing tells a member
      // that is down from one still connecting: they are all watched until the deadline.
      for (auto& e : list) {
        if (e.channel->GetState(true) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
          grpc::experimental::ChannelResetConnectionBackoff(e.channel.get());
        }
      }
      while (!(found = ready()) && Clock::now() < deadline) {
        Endpoint& watched = list[first];
        (void)watched.channel->WaitForStateChange(
            watched.channel->GetState(false),
            std::min(deadline, Clock::now() + std::chrono::milliseconds(10)));
      }
    }
    if (found) {
      if (*found != first) current.store(*found, std::memory_order_relaxed);
      return *found;
    }
    std::string names;
    for (const auto& e : list) names += (names.empty() ? "" : ",") + e.address;
    std::string message = "could not connect to any etcd member (" + names + ") within " +
                          format_duration(config.connect_timeout);
    ErrorKind kind = ErrorKind::kUnavailable;
    if (config.tls) {
      // gRPC tells why a channel failed only to a call: ask one member, without waiting.
      const std::string why = last_error(list[first]);
      if (why.find("andshake") != std::string::npos ||
          why.find("CERTIFICATE") != std::string::npos ||
          why.find("certificate") != std::string::npos) {
        // The member's certificate was refused, or ours: retrying will not help.
        kind = ErrorKind::kAuth;
        message +=
            ": TLS handshake failed (is tls_ca_file the CA that signed the members' "
            "certificates, and tls_server_name a name they carry?)";
      }
      if (!why.empty()) message += ": " + why;
    }
    throw StoreFailure(kind, message);
  }

  // Returns the error a call on `e` gets at once while its channel is down ("" if none).
  std::string last_error(Endpoint& e) {
    etcdserverpb::RangeRequest request;
    request.set_key("\0", 1);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(Clock::now() + milliseconds(200));
    grpc::Status status = e.kv->Range(&context, request, &response);
    return status.ok() ? std::string() : status.error_message();
  }

  // The auth token for `e`, fetched on first use and after etcd said it went stale.
  std::string token(Endpoint& e, bool refresh) {
    std::lock_guard<std::mutex> guard(mu);
    if (!auth_token.empty() && !refresh) return auth_token;
    etcdserverpb::AuthenticateRequest request;
    request.set_name(config.user);
    request.set_password(config.password);
    etcdserverpb::AuthenticateResponse response;
    grpc::ClientContext context;
    context.set_deadline(Clock::now() + config.command_timeout);
    grpc::Status status = e.auth->Authenticate(&context, request, &response);
    if (!status.ok()) {
      if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
          status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        // etcd: "authentication failed, invalid user ID or password", or auth not enabled.
        throw StoreFailure(ErrorKind::kAuth, "authenticate as \"" + escape_key(config.user) +
                                                 "\" on " + e.address + ": " +
                                                 status.error_message());
      }
      fail(status, "authenticate", e.address, false);
    }
    auth_token = response.token();
    return auth_token;
  }

  // Runs one call `rpc(endpoint, context)` with a deadline, the auth token, and etcd's
  // require-leader flag: a member cut off from its leader refuses at once instead of waiting.
  // Within connect_timeout + command_timeout in all, the call is repeated on the next member
  // when that is safe: always after a refusal for want of a leader (nothing was applied; the
  // cluster may be electing one), and for `op` other than kWrite after a broken connection or
  // a member that did not answer in time. A member that failed so is passed over by the next
  // calls, so a stopped (SIGSTOP) member costs one command_timeout, not one per call.
  template <class Rpc>
  void call(std::string_view what, Op op, Rpc&& rpc) {
    check_process();
    const auto start = Clock::now();
    const auto overall = start + config.connect_timeout + config.command_timeout;
    const std::size_t n = endpoints->size();
    bool refreshed = false;
    for (std::size_t tries = 1;; ++tries) {
      std::size_t index = connected(std::min(Clock::now() + config.connect_timeout, overall));
      Endpoint& e = (*endpoints)[index];
      grpc::ClientContext context;
      context.set_deadline(std::min(Clock::now() + config.command_timeout, overall));
      context.AddMetadata("hasleader", "true");
      if (!config.user.empty()) context.AddMetadata("token", token(e, refreshed));
      grpc::Status status = rpc(e, context);
      if (status.ok()) return;
      if (!refreshed && !config.user.empty() && stale_token(status)) {
        refreshed = true;
        continue;
      }
      const auto code = status.error_code();
      const bool lost =
          code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
      const bool no_leader = code == grpc::StatusCode::UNAVAILABLE &&
                             status.error_message().find("no leader") != std::string::npos;
      if (lost && n > 1) {
        // Pass over this member: the next call, and the next try, start with the one after.
        std::size_t expected = index;
        current.compare_exchange_strong(expected, (index + 1) % n, std::memory_order_relaxed);
      }
      if (lost && (no_leader || op != Op::kWrite)) {
        if (tries % n == 0) {
          // Every member tried: an election takes about one election timeout.
          std::this_thread::sleep_until(std::min(Clock::now() + milliseconds(50), overall));
        }
        if (Clock::now() < overall) continue;
      }
      fail(status, what, e.address, op == Op::kWrite && !no_leader);
    }
  }

  const ClientConfig config;
  const pid_t owner;
  std::unique_ptr<std::vector<Endpoint>> endpoints;
  std::atomic<std::size_t> current{0};
  std::mutex mu;
  std::string auth_token;  // guarded by mu
};

Client::Client(ClientConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Client::~Client() = default;

const std::vector<std::string>& Client::endpoints() const noexcept {
  return impl_->config.endpoints;
}

Grant Client::lease_grant(std::int64_t ttl_seconds) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse response;
  // Repeated after a lost answer at worst leaves an unused lease, which expires by itself.
  impl_->call("LeaseGrant", Op::kIdempotent, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.lease->LeaseGrant(&c, request, &response);
  });
  if (!response.error().empty()) {
    throw StoreFailure(ErrorKind::kProtocol, "LeaseGrant: " + response.error());
  }
  return Grant{response.id(), response.ttl()};
}

bool Client::lease_revoke(std::int64_t id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(id);
  etcdserverpb::LeaseRevokeResponse response;
  try {
    impl_->call("LeaseRevoke", Op::kIdempotent, [&](Endpoint& e, grpc::ClientContext& c) {
      grpc::Status status = e.lease->LeaseRevoke(&c, request, &response);
      // "etcdserver: requested lease not found": expired or revoked already.
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        throw StoreFailure(ErrorKind::kProtocol, "", false, false, "lease not found");
      }
      return status;
    });
  } catch (const StoreFailure& f) {
    if (f.server_code() == "lease not found") return false;
    throw;
  }
  return true;
}

std::int64_t Client::lease_keep_alive(std::int64_t id) {
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse response;
  bool answered = false;
  impl_->call("LeaseKeepAlive", Op::kIdempotent, [&](Endpoint& e, grpc::ClientContext& c) {
    auto stream = e.lease->LeaseKeepAlive(&c);
    // etcd answers each request in order before it reads the end of the stream.
    answered = stream->Write(request) && stream->Read(&response);
    stream->WritesDone();
    grpc::Status status = stream->Finish();
    if (status.ok() && !answered) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended without an answer");
    }
    return status;
  });
  return response.ttl() > 0 ? response.ttl() : 0;
}

std::int64_t Client::lease_time_to_live(std::int64_t id) {
  etcdserverpb::LeaseTimeToLiveRequest request;
  request.set_id(id);
  etcdserverpb::LeaseTimeToLiveResponse response;
  impl_->call("LeaseTimeToLive", Op::kRead, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.lease->LeaseTimeToLive(&c, request, &response);
  });
  return response.ttl();
}

std::optional<std::int64_t> Client::create(std::string_view key, std::string_view value,
                                           std::int64_t lease, std::int64_t* busy_at) {
  etcdserverpb::TxnRequest request;
  auto* compare = request.add_compare();
  compare->set_key(key.data(), key.size());
  compare->set_target(etcdserverpb::Compare::CREATE);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_create_revision(0);  // the key does not exist
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key.data(), key.size());
  put->set_value(value.data(), value.size());
  put->set_lease(lease);
  etcdserverpb::TxnResponse response;
  impl_->call("Txn", Op::kWrite, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.kv->Txn(&c, request, &response);
  });
  if (!response.succeeded()) {
    if (busy_at) *busy_at = response.header().revision();
    return std::nullopt;
  }
  // The put ran at the transaction's revision, which is the key's create revision.
  return response.header().revision();
}

std::optional<std::int64_t> Client::erase_if(std::string_view key, std::string_view value) {
  etcdserverpb::TxnRequest request;
  auto* compare = request.add_compare();
  compare->set_key(key.data(), key.size());
  compare->set_target(etcdserverpb::Compare::VALUE);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_value(value.data(), value.size());
  auto* erase = request.add_success()->mutable_request_delete_range();
  erase->set_key(key.data(), key.size());
  erase->set_prev_kv(true);
  etcdserverpb::TxnResponse response;
  impl_->call("Txn", Op::kWrite, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.kv->Txn(&c, request, &response);
  });
  if (!response.succeeded()) return std::nullopt;
  std::int64_t lease = 0;
  if (response.responses_size() == 1 &&
      response.responses(0).response_delete_range().prev_kvs_size() == 1) {
    lease = response.responses(0).response_delete_range().prev_kvs(0).lease();
  }
  return lease;
}

bool Client::move_if(std::string_view key, std::string_view value, std::int64_t from,
                     std::int64_t to) {
  etcdserverpb::TxnRequest request;
  auto* same_value = request.add_compare();
  same_value->set_key(key.data(), key.size());
  same_value->set_target(etcdserverpb::Compare::VALUE);
  same_value->set_result(etcdserverpb::Compare::EQUAL);
  same_value->set_value(value.data(), value.size());
  auto* same_lease = request.add_compare();
  same_lease->set_key(key.data(), key.size());
  same_lease->set_target(etcdserverpb::Compare::LEASE);
  same_lease->set_result(etcdserverpb::Compare::EQUAL);
  same_lease->set_lease(from);
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key.data(), key.size());
  put->set_value(value.data(), value.size());
  put->set_lease(to);
  etcdserverpb::TxnResponse response;
  impl_->call("Txn", Op::kWrite, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.kv->Txn(&c, request, &response);
  });
  return response.succeeded();
}

Client::WatchEnd Client::watch_deletion(std::string_view key, std::int64_t start_revision,
                                        std::chrono::steady_clock::time_point until,
                                        std::int64_t* deleted_at) noexcept {
  try {
    impl_->check_process();
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             until - std::chrono::steady_clock::now());
    if (deadline <= Clock::now()) return WatchEnd::kTimedOut;
    Endpoint& e = (*impl_->endpoints)[impl_->connected(deadline)];
    grpc::ClientContext context;
    context.set_deadline(deadline);
    // A member cut off from the leader cancels the watch instead of keeping it silent.
    context.AddMetadata("hasleader", "true");
    if (!impl_->config.user.empty()) context.AddMetadata("token", impl_->token(e, false));
    auto stream = e.watch->Watch(&context);
    etcdserverpb::WatchRequest request;
    auto* create = request.mutable_create_request();
    create->set_key(key.data(), key.size());
    create->set_start_revision(start_revision);
    create->add_filters(etcdserverpb::WatchCreateRequest::NOPUT);
    WatchEnd end = WatchEnd::kFailed;
    if (stream->Write(request)) {
      etcdserverpb::WatchResponse response;
      while (stream->Read(&response)) {
        if (response.canceled()) break;  // compacted past start_revision, or lost its leader
        bool deleted = false;
        for (const auto& event : response.events()) {
          if (event.type() != mvccpb::Event::DELETE) continue;
          deleted = true;
          *deleted_at = std::max(*deleted_at, event.kv().mod_revision());
        }
        if (deleted) {
          end = WatchEnd::kDeleted;
          break;
        }
      }
    }
    // Ends the stream at once, whatever state it is in; Finish then returns promptly.
    context.TryCancel();
    grpc::Status status = stream->Finish();
    if (end == WatchEnd::kFailed && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      end = WatchEnd::kTimedOut;
    }
    return end;
  } catch (...) {  // no member, no auth token: the caller falls back to its own deadline
    return WatchEnd::kFailed;
  }
}

std::optional<Entry> Client::get(std::string_view key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key.data(), key.size());
  etcdserverpb::RangeResponse response;
  impl_->call("Range", Op::kRead, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.kv->Range(&c, request, &response);
  });
  if (response.kvs_size() == 0) return std::nullopt;
  const auto& kv = response.kvs(0);
  return Entry{kv.key(), kv.value(), kv.create_revision(), kv.lease()};
}

std::vector<Entry> Client::list(std::string_view prefix) {
  etcdserverpb::RangeRequest request;
  set_range_end_for_prefix(prefix, request.mutable_key(), request.mutable_range_end());
  etcdserverpb::RangeResponse response;
  impl_->call("Range", Op::kRead, [&](Endpoint& e, grpc::ClientContext& c) {
    return e.kv->Range(&c, request, &response);
  });
  std::vector<Entry> out;
  out.reserve(static_cast<std::size_t>(response.kvs_size()));
  for (const auto& kv : response.kvs()) {
    out.push_back(Entry{kv.key(), kv.value(), kv.create_revision(), kv.lease()});
  }
  return out;
}

}  // namespace lockkit::detail::etcd
