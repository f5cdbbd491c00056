// SPDX-License-Identifier: MIT
// Internal: the etcd v3 calls the etcd:// store makes, over gRPC. The one file that includes
// gRPC and the generated code is etcd_client.cpp; this header names no gRPC type, so the rest
// of the backend compiles without them.
#ifndef LOCKKIT_SRC_ETCD_ETCD_CLIENT_HPP_
#define LOCKKIT_SRC_ETCD_ETCD_CLIENT_HPP_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lockkit::detail::etcd {

struct ClientConfig {
  std::vector<std::string> endpoints;  // "host:port", tried in order
  std::string user;                    // empty: no authentication
  std::string password;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
  bool tls = false;         // TLS to every endpoint
  std::string ca_pem;       // trusted CAs (PEM); empty: gRPC's default roots
  std::string cert_pem;     // client certificate chain (PEM); empty: none
  std::string key_pem;      // its private key (PEM)
  std::string server_name;  // the name the certificates must carry; empty: the host
};

// One key as etcd stores it.
struct Entry {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t lease = 0;
};

// A granted lease.
struct Grant {
  std::int64_t id = 0;
  std::int64_t ttl = 0;  // seconds, as the server granted it
};

// The calls, each one RPC with a deadline (connect_timeout to reach a member when none is
// connected, then command_timeout for the request). Every failure throws
// `lockkit::detail::StoreFailure` with the kind; for a write, `maybe_applied` says the request
// may have been applied (sent, answer lost or late). Messages never contain the password.
// After fork(), every call in the child throws kind unsupported: gRPC's threads and
// connections belong to the parent.
// Thread safety: safe to share; calls may run concurrently.
class Client {
 public:
  explicit Client(ClientConfig config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // LeaseGrant for `ttl_seconds` (the server may raise it to its minimum).
  Grant lease_grant(std::int64_t ttl_seconds);
  // LeaseRevoke; also deletes every key attached to the lease. Returns false if there was no
  // such lease (expired or revoked before).
  bool lease_revoke(std::int64_t id);
  // One LeaseKeepAlive round: returns the lease's new TTL in seconds, or 0 if it is gone.
  std::int64_t lease_keep_alive(std::int64_t id);
  // LeaseTimeToLive: whole seconds left (rounded down), or -1 if the lease is gone.
  std::int64_t lease_time_to_live(std::int64_t id);

  // Txn: if `key` does not exist, puts `value` attached to `lease`. Returns the revision of the
  // put (the key's create revision), or empty if the key existed (nothing was written); then
  // `*busy_at` (if given) is the revision at which it existed.
  std::optional<std::int64_t> create(std::string_view key, std::string_view value,
                                     std::int64_t lease, std::int64_t* busy_at = nullptr);
  // Txn: if `key` holds `value`, deletes it. Returns the lease it was attached to, or empty if
  // the key was absent or held something else.
  std::optional<std::int64_t> erase_if(std::string_view key, std::string_view value);
  // Txn: if `key` holds `value` on lease `from`, attaches it to lease `to` (same value, same
  // create revision). Returns false if the key no longer matched.
  bool move_if(std::string_view key, std::string_view value, std::int64_t from, std::int64_t to);
  // Linearizable Range of one key.
  std::optional<Entry> get(std::string_view key);
  // Linearizable Range of every key starting with `prefix` (every key for an empty prefix).
  std::vector<Entry> list(std::string_view prefix);

  // How a watch for a deletion ended.
  enum class WatchEnd : std::uint8_t {
    kDeleted,   // `key` was deleted (released, revoked or expired) at or after the start revision
    kTimedOut,  // nothing happened before the deadline
    kFailed,    // the watch could not be set up or broke (no member, no leader, compacted)
  };
  // Watches `key` for a deletion at revision `start_revision` or later (0: from now on) until
  // `until`; `*deleted_at` is then the revision of the deletion. Never throws: a watch is only
  // a hint.
  WatchEnd watch_deletion(std::string_view key, std::int64_t start_revision,
                          std::chrono::steady_clock::time_point until,
                          std::int64_t* deleted_at) noexcept;

  // Returns the endpoints as given, for messages.
  const std::vector<std::string>& endpoints() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockkit::detail::etcd

#endif  // LOCKKIT_SRC_ETCD_ETCD_CLIENT_HPP_
