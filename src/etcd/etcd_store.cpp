// SPDX-License-Identifier: MIT
// The etcd:// LeaseStore: one lease per lock, the acquire transaction, token-checked release
// and extend, status and list by prefix.
#include "etcd/etcd_store.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/escape.hpp"
#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/errors.hpp"

namespace lockkit::detail::etcd {
namespace {

// How many waiters of this process one deletion wakes: one to take the key, one more in case
// the first gives up or loses it to another process. The others keep waiting (or retry at the
// end of their own backoff), so a release never sends every waiter to the cluster at once.
constexpr int kWakePerRelease = 2;

// The last acquire this thread saw refused: the etcd key and the revision at which it was
// held. A watch from the next revision cannot miss a release that came before it started.
struct Refused {
  const void* store = nullptr;
  std::string key;
  std::int64_t revision = 0;
};
thread_local Refused t_refused;

using std::chrono::milliseconds;

std::string context(std::string_view op, std::string_view key) {
  return std::string(op) + " \"" + escape_key(key) + "\": ";
}

[[noreturn]] void raise(std::string_view op, std::string_view key, const StoreFailure& f) {
  throw BackendError("etcd", f.kind(), context(op, key) + f.what());
}

// Returns the file's contents. Throws `std::invalid_argument` naming the option if it cannot be
// read (a caller's mistake, like a bad path in the URL); the contents never go in a message.
std::string read_pem(std::string_view option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) in.setstate(std::ios::failbit);
  if (!in || text.empty()) {
    throw std::invalid_argument(std::string(option) + ": cannot read " + path);
  }
  return text;
}

ClientConfig client_config(const EtcdOptions& o) {
  validate(o);
  return ClientConfig{
      .endpoints = o.endpoints,
      .user = o.user,
      .password = o.password,
      .connect_timeout = o.connect_timeout,
      .command_timeout = o.command_timeout,
      .tls = o.tls.enabled,
      .ca_pem = o.tls.ca_file.empty() ? "" : read_pem("tls_ca_file", o.tls.ca_file),
      .cert_pem = o.tls.cert_file.empty() ? "" : read_pem("tls_cert", o.tls.cert_file),
      .key_pem = o.tls.key_file.empty() ? "" : read_pem("tls_key", o.tls.key_file),
      .server_name = o.tls.server_name};
}

}  // namespace

void validate(const EtcdOptions& o) {
  if (o.endpoints.empty()) throw std::invalid_argument("endpoints: must name at least one member");
  for (const auto& e : o.endpoints) {
    if (e.empty()) throw std::invalid_argument("endpoints: an endpoint is empty");
  }
  for (auto [name, value] : {std::pair{"connect_timeout", o.connect_timeout},
                             std::pair{"command_timeout", o.command_timeout}}) {
    if (value < milliseconds(1) || value > std::chrono::hours(1)) {
      throw std::invalid_argument(std::string(name) + ": must be 1ms..1h, got " +
                                  format_duration(value));
    }
  }
  if (o.tls.cert_file.empty() != o.tls.key_file.empty()) {
    throw std::invalid_argument("tls_cert, tls_key: give both or neither");
  }
  if (!o.tls.enabled &&
      (!o.tls.ca_file.empty() || !o.tls.cert_file.empty() || !o.tls.server_name.empty())) {
    throw std::invalid_argument("tls: TLS files or a server name given with TLS off");
  }
  if (o.password.empty() == false && o.user.empty()) {
    throw std::invalid_argument("password: given without a user");
  }
}

EtcdStore::EtcdStore(const EtcdOptions& options) try
    : prefix_(options.prefix), client_(client_config(options)) {
} catch (const StoreFailure& f) {
  throw BackendError("etcd", f.kind(), std::string("open: ") + f.what());
}

std::int64_t EtcdStore::lease_seconds(milliseconds ttl) noexcept {
  // Up, never down: the lease must outlast the holder's valid_until, which uses `ttl` itself.
  return std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
}

milliseconds EtcdStore::drift(milliseconds ttl) const noexcept {
  // The leader's clock may run a little faster than ours while it counts the lease down.
  return ttl / 100 + milliseconds(2);
}

std::string EtcdStore::etcd_key(std::string_view key) const {
  std::string out;
  out.reserve(prefix_.size() + key.size());
  out.append(prefix_).append(key);
  return out;
}

void EtcdStore::revoke_quietly(std::int64_t lease) noexcept {
  try {
    (void)client_.lease_revoke(lease);
  } catch (...) {  // a lease that holds no key harms nobody; it expires by its TTL
  }
}

std::optional<std::uint64_t> EtcdStore::acquire(std::string_view key, std::string_view token,
                                                milliseconds ttl) {
  const std::string k = etcd_key(key);
  const std::int64_t seconds = lease_seconds(ttl);
  Grant grant;
  try {
    grant = client_.lease_grant(seconds);
  } catch (const StoreFailure& f) {
    // Even if the grant was applied, the lease holds no key and expires by itself.
    raise("try_acquire", key, f);
  }
  if (grant.ttl > seconds) {
    std::int64_t seen = min_granted_.load(std::memory_order_relaxed);
    while (grant.ttl > seen && !min_granted_.compare_exchange_weak(seen, grant.ttl)) {
    }
  }
  std::optional<std::int64_t> revision;
  std::int64_t busy_at = 0;
  try {
    revision = client_.create(k, token, grant.id, &busy_at);
  } catch (const StoreFailure& f) {
    if (!f.maybe_applied()) {
      revoke_quietly(grant.id);
      raise("try_acquire", key, f);
    }
    // The answer was lost (a member died or the leader changed under the request). Whether the
    // transaction was applied can be read: the key holds our token on our lease only if it
    // was. Otherwise revoking our lease settles it: etcd refuses a put on a revoked lease, so
    // the transaction can no longer apply late, and if it applied after the read the key goes
    // with the lease.
    std::string outcome;
    try {
      auto entry = client_.get(k);
      if (entry && entry->value == token && entry->lease == grant.id) {
        return static_cast<std::uint64_t>(entry->create_revision);
      }
      (void)client_.lease_revoke(grant.id);
      if (entry) return std::nullopt;  // someone else holds it
      throw BackendError("etcd", f.kind(),
                         context("try_acquire", key) + f.what() +
                             "; the transaction was not applied (checked on another member)");
    } catch (const StoreFailure& g) {
      outcome = std::string("could not settle it (") + g.what() + ")";
    }
    // Still in doubt: revoking the lease takes the grant back either way.
    try {
      (void)client_.lease_revoke(grant.id);
      outcome += "; revoked the lease granted for it, so nothing is held";
    } catch (const std::exception& e) {
      outcome += "; could not revoke its lease (" + std::string(e.what()) +
                 "); it expires within " + std::to_string(grant.ttl) + "s";
    }
    throw BackendError(
        "etcd", ErrorKind::kInDoubt,
        context("try_acquire", key) + f.what() + "; the lock was in doubt: " + outcome);
  }
  if (!revision) {
    // Busy: the lease we granted for it must not linger until it expires.
    revoke_quietly(grant.id);
    t_refused.store = this;
    t_refused.key = k;
    t_refused.revision = busy_at;
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(*revision);
}

bool EtcdStore::release(std::string_view key, std::string_view token) {
  std::optional<std::int64_t> lease;
  try {
    lease = client_.erase_if(etcd_key(key), token);
  } catch (const StoreFailure& f) {
    raise("release", key, f);
  }
  if (!lease) return false;
  // The key is gone already; its lease holds nothing now.
  if (*lease != 0) revoke_quietly(*lease);
  return true;
}

bool EtcdStore::extend(std::string_view key, std::string_view token, milliseconds ttl) {
  const std::string k = etcd_key(key);
  const std::int64_t want = lease_seconds(ttl);
  try {
    auto entry = client_.get(k);
    if (!entry || entry->value != token || entry->lease == 0) return false;
    // Alive after the keep-alive means still ours: the key leaves its lease only by a release
    // with our token, or with the lease.
    const std::int64_t granted = client_.lease_keep_alive(entry->lease);
    if (granted <= 0) return false;
    const std::int64_t minimum = min_granted_.load(std::memory_order_relaxed);
    if (granted == want || (granted > want && granted == minimum)) return true;
    // Another TTL: a new lease, and the key moves to it in one transaction (same value, same
    // create revision, so the same fence).
    Grant next = client_.lease_grant(want);
    if (next.ttl == granted) {
      revoke_quietly(next.id);  // the cluster's minimum: the keep-alive did it already
      return true;
    }
    bool moved;
    try {
      moved = client_.move_if(k, token, entry->lease, next.id);
    } catch (const StoreFailure& f) {
      // If it was applied, the key lives on `next` now: revoking it would free the lock.
      if (!f.maybe_applied()) revoke_quietly(next.id);
      throw;
    }
    if (!moved) {
      revoke_quietly(next.id);
      return false;
    }
    revoke_quietly(entry->lease);
    return true;
  } catch (const StoreFailure& f) {
    raise("extend", key, f);
  }
}

// One watch per key per process, run by one of the waiting threads while the others wait on a
// condition variable; a deletion wakes the first kWakePerRelease waiters in arrival order. The
// watch starts right after the revision at which this thread saw the key held (or after the
// last deletion already handed out), so a release between the refused attempt and the watch
// is not missed. When the watch fails (no member, no leader), the waiter sleeps out its backoff.
void EtcdStore::wait_for_release(std::string_view key,
                                 std::chrono::steady_clock::time_point until) {
  using Steady = std::chrono::steady_clock;
  const std::string k = etcd_key(key);
  std::int64_t from = 0;
  if (t_refused.store == this && t_refused.key == k) from = t_refused.revision + 1;
  bool woken = false;
  bool failed = false;
  std::unique_lock<std::mutex> lock(waiters_mu_);
  auto found = waiters_.find(k);
  if (found == waiters_.end()) found = waiters_.emplace(k, std::make_shared<Waiters>()).first;
  const std::shared_ptr<Waiters> w = found->second;
  const auto me = w->queue.insert(w->queue.end(), &woken);
  while (!woken && !failed && Steady::now() < until) {
    if (w->watching) {
      w->cv.wait_until(lock, until);
      continue;
    }
    w->watching = true;
    const std::int64_t start =
        w->deleted > 0 ? std::max(from, w->deleted + 1) : from;  // 0: from now on
    lock.unlock();
    std::int64_t deleted_at = 0;
    const auto end = client_.watch_deletion(k, start, until, &deleted_at);
    lock.lock();
    w->watching = false;
    if (end == Client::WatchEnd::kDeleted) {
      w->deleted = std::max(w->deleted, deleted_at);
      int n = 0;
      for (bool* flag : w->queue) {
        if (n == kWakePerRelease) break;
        if (!*flag) {
          *flag = true;
          ++n;
        }
      }
    } else if (end == Client::WatchEnd::kFailed) {
      failed = true;
    }
    w->cv.notify_all();  // the woken, and someone to take the watch over
  }
  w->queue.erase(me);
  if (w->queue.empty() && !w->watching) waiters_.erase(k);
  lock.unlock();
  if (failed) std::this_thread::sleep_until(until);
}

std::optional<LockInfo> EtcdStore::status(std::string_view key) {
  try {
    auto entry = client_.get(etcd_key(key));
    if (!entry) return std::nullopt;
    milliseconds remaining{0};
    if (entry->lease != 0) {
      std::int64_t left = client_.lease_time_to_live(entry->lease);
      if (left < 0) return std::nullopt;  // expired between the two reads
      // etcd rounds down to whole seconds; a held lock never shows 0.
      remaining = std::max<milliseconds>(milliseconds(1), std::chrono::seconds(left));
    }
    return LockInfo{std::string(key), static_cast<std::uint64_t>(entry->create_revision),
                    remaining};
  } catch (const StoreFailure& f) {
    raise("status", key, f);
  }
}

std::vector<LockInfo> EtcdStore::list(std::string_view prefix) {
  std::vector<LockInfo> out;
  try {
    auto entries = client_.list(etcd_key(prefix));
    out.reserve(entries.size());
    for (auto& entry : entries) {
      milliseconds remaining{0};
      if (entry.lease != 0) {
        std::int64_t left = client_.lease_time_to_live(entry.lease);
        if (left < 0) continue;
        remaining = std::max<milliseconds>(milliseconds(1), std::chrono::seconds(left));
      }
      out.push_back(LockInfo{entry.key.substr(prefix_.size()),
                             static_cast<std::uint64_t>(entry.create_revision), remaining});
    }
  } catch (const StoreFailure& f) {
    raise("list", prefix, f);
  }
  return out;
}

}  // namespace lockkit::detail::etcd
