// SPDX-License-Identifier: MIT
// The `etcd://` backend: leased locks on an etcd v3 cluster (etcd leases, fences from etcd's
// revisions), over gRPC.
#ifndef LOCKKIT_ETCD_HPP_
#define LOCKKIT_ETCD_HPP_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockkit/backend.hpp"
#include "lockkit/export.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit {

// TLS to the members' client ports: the member's certificate is verified (against gRPC's
// default roots, or `ca_file`) and so is its name (`server_name`, else the endpoint's host).
struct EtcdTlsOptions {
  bool enabled = false;       // true: speak TLS to every endpoint
  std::string ca_file{};      // PEM file of the CAs to trust instead of the default roots
  std::string cert_file{};    // client certificate chain (PEM), for --client-cert-auth members
  std::string key_file{};     // the client certificate's private key (PEM); with `cert_file`
  std::string server_name{};  // the name the certificate must carry; empty = the host
};

// Where and how to reach the etcd cluster. Every timeout is finite.
struct EtcdOptions {
  // Client endpoints of the cluster's members, "host:port" ("[::1]:2379" for IPv6); a call
  // goes to the member that answered last, else to the first one that connects.
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  std::string user{};      // etcd user (Authenticate); empty = the cluster has auth off
  std::string password{};  // never printed
  // Prepended to every key: the etcd key of lock "orders/42" is "lockkit/orders/42".
  std::string prefix = "lockkit/";
  std::chrono::milliseconds connect_timeout{2000};  // to reach a member when none is connected
  std::chrono::milliseconds command_timeout{2000};  // from sending a request to its answer
  EtcdTlsOptions tls{};                             // off: plaintext
};

// Returns the options of an `etcd://[user:password@]host:port[,host:port...][?option=value&...]`
// URL. Options: `connect_timeout`, `command_timeout` (durations like 500ms or 2s), `prefix`
// (percent-encoded bytes), `password_file=PATH` or `password_env=NAME` (the password from a
// file or an environment variable instead of the URL), `tls=1` and `tls_ca_file`, `tls_cert`,
// `tls_key`, `tls_server_name` (TLS; any `tls_*` option turns TLS on). The port defaults to 2379.
// Throws `std::invalid_argument` naming the problem; the message never contains the password.
LOCKKIT_EXPORT EtcdOptions parse_etcd_url(std::string_view url);

// Leased locks on an etcd cluster.
//   auto api = lockkit::open("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379");
//   if (auto lock = api->try_acquire("orders/42", std::chrono::seconds(30))) { ... }
//
// Storage: each lock is the etcd key `prefix + key`, its value the owner token, attached to a
// lease of its own. etcd leases count whole seconds: the lease gets the TTL rounded up to a
// second (and to the cluster's minimum, 1.5 election timeouts rounded up, 2 s by default),
// while `valid_until()` comes from the TTL asked for, so the cluster always keeps the lease at
// least as long as the holder believes it holds it.
// Acquire: LeaseGrant, then one transaction "if the key does not exist, put the token with the
// lease"; a refused acquire revokes its lease at once (three round trips) and leaves nothing
// behind. Fence: the revision that created the key, strictly increasing across all keys of the
// cluster and all time. Release: one transaction "if the value is our token, delete the key",
// then the lease is revoked. Extend: a keep-alive of the lock's lease when it has the TTL asked
// for; another TTL moves the key to a new lease in one transaction.
//
// When the store is unreachable: every call throws `BackendError` (kind unavailable, timeout or
// auth) within `connect_timeout + command_timeout` per request (three times that when an
// acquire loses its answer and settles it). A request refused for want of a leader, a read, and
// a lease request are repeated on another member within that time; a transaction whose answer
// was lost is not. A holder may keep acting until its `valid_until()`, which lies before the
// cluster's expiry, but may not assume it can release or extend. If the acquire transaction
// was sent but its answer lost, the backend reads the key through another member: its own
// token there means granted; otherwise it revokes the lease it granted for it (so that the
// transaction cannot apply late) and reports busy or unavailable; if even that fails it throws
// kind in-doubt. gRPC does not survive `fork()`: in a child of a process that has used
// etcd://, every call and every new etcd:// `LockApi` throws kind unsupported (the parent keeps
// working); such a child must exec a new program to use etcd.
// Thread safety: safe to share; calls may run concurrently.
LOCKKIT_EXPORT std::shared_ptr<LeaseStore> make_etcd_store(EtcdOptions options);

// Returns the core's `LockApi` over `make_etcd_store(options)`. Does not connect: the first
// call does. Throws `std::invalid_argument` for bad options.
LOCKKIT_EXPORT std::shared_ptr<LockApi> make_etcd_lock_api(EtcdOptions options);

}  // namespace lockkit

#endif  // LOCKKIT_ETCD_HPP_
