// SPDX-License-Identifier: MIT
// Redis Cluster routing: CLUSTER SLOTS, the slot map and one pool per node.
#include "redis/redis_cluster.hpp"

#include <charconv>
#include <set>
#include <thread>

#include "redis/redis_keys.hpp"

namespace lockkit::detail::redis {
namespace {

std::string node_name(const NodeAddress& a) {
  return a.host + ":" + std::to_string(a.port);
}

std::string_view text_of(const redisReply& r) {
  return std::string_view(r.str, r.len);
}

template <typename T>
bool parse_number(std::string_view s, T& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

ClusterCounters& cluster_counters() noexcept {
  static ClusterCounters counters;
  return counters;
}

std::optional<Redirection> parse_redirection(std::string_view text) {
  Redirection r;
  if (text.substr(0, 6) == "MOVED ") {
    text.remove_prefix(6);
  } else if (text.substr(0, 4) == "ASK ") {
    r.ask = true;
    text.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  std::size_t space = text.find(' ');
  if (space == std::string_view::npos || !parse_number(text.substr(0, space), r.slot) ||
      r.slot >= kSlots) {
    return std::nullopt;
  }
  std::string_view endpoint = text.substr(space + 1);
  std::size_t colon = endpoint.rfind(':');  // an IPv6 address has colons of its own
  if (colon == std::string_view::npos || colon == 0 ||
      !parse_number(endpoint.substr(colon + 1), r.to.port) || r.to.port == 0) {
    return std::nullopt;
  }
  r.to.host = std::string(endpoint.substr(0, colon));
  return r;
}

ClusterRouter::ClusterRouter(ConnectConfig base, std::vector<NodeAddress> seeds,
                             std::size_t connections)
    : base_(std::move(base)), seeds_(std::move(seeds)), connections_(connections), slots_(kSlots) {}

Pool* ClusterRouter::pool_locked(const NodeAddress& to) {
  auto& pool = pools_[node_name(to)];
  if (!pool) {
    ConnectConfig config = base_;
    config.host = to.host;
    config.port = to.port;
    pool = std::make_unique<Pool>(std::move(config), connections_);  // connects on first use
  }
  return pool.get();
}

Pool& ClusterRouter::node(const NodeAddress& to) {
  std::lock_guard<std::mutex> guard(mu_);
  return *pool_locked(to);
}

Pool& ClusterRouter::moved(std::uint16_t slot, const NodeAddress& to) {
  std::lock_guard<std::mutex> guard(mu_);
  Pool* pool = pool_locked(to);
  slots_[slot].store(pool, std::memory_order_release);
  return *pool;
}

Pool& ClusterRouter::route(std::uint16_t slot, TimePoint deadline) {
  if (Pool* pool = slots_[slot].load(std::memory_order_acquire)) return *pool;
  refresh(version(), deadline);
  if (Pool* pool = slots_[slot].load(std::memory_order_acquire)) return *pool;
  throw StoreFailure(ErrorKind::kUnavailable,
                     "cluster: no master serves slot " + std::to_string(slot), false);
}

std::vector<Pool*> ClusterRouter::masters(TimePoint deadline) {
  if (version() == 0) refresh(0, deadline);
  std::vector<Pool*> out;
  std::set<Pool*> seen;
  for (const auto& slot : slots_) {
    Pool* pool = slot.load(std::memory_order_acquire);
    if (pool && seen.insert(pool).second) out.push_back(pool);
  }
  return out;
}

void ClusterRouter::refresh(std::uint64_t seen, TimePoint deadline) {
  // try_lock and short pauses, not a timed mutex: the wait stays bounded by `deadline`, also in
  // a forked child whose parent held the lock, and sanitizers follow plain mutexes.
  std::unique_lock<std::mutex> one_at_a_time(refresh_mu_, std::try_to_lock);
  while (!one_at_a_time.owns_lock() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    one_at_a_time.try_lock();
  }
  if (!one_at_a_time.owns_lock()) {
    throw StoreFailure(ErrorKind::kTimeout, "cluster: the slot map was not learned in time", false);
  }
  if (version() != seen) return;  // learned by another caller while we waited
  std::vector<NodeAddress> candidates;
  {
    std::lock_guard<std::mutex> guard(mu_);
    candidates = known_;
  }
  candidates.insert(candidates.end(), seeds_.begin(), seeds_.end());
  std::string request;
  append_command(request, {"CLUSTER", "SLOTS"});
  std::string last_error = "no node to ask";
  ErrorKind last_kind = ErrorKind::kUnavailable;  // auth stays auth: a wrong password everywhere
  std::set<std::string> tried;
  for (const NodeAddress& candidate : candidates) {
    if (!tried.insert(node_name(candidate)).second) continue;
    const TimePoint now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    Reply reply;
    try {
      Pool& pool = node(candidate);
      auto conn = pool.get(pool.pick());
      reply = conn->call(request, std::min(deadline, now + base_.command_timeout));
    } catch (const StoreFailure& f) {
      last_error = node_name(candidate) + ": " + f.what();
      last_kind = f.kind();
      continue;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      last_error = node_name(candidate) + ": " + std::string(text_of(*reply));
      continue;
    }
    // [[start, end, [host, port, id, ...], replicas...], ...]
    std::vector<std::pair<std::pair<std::uint16_t, std::uint16_t>, NodeAddress>> ranges;
    bool good = reply->type == REDIS_REPLY_ARRAY;
    for (std::size_t i = 0; good && i < reply->elements; ++i) {
      const redisReply& range = *reply->element[i];
      if (range.type != REDIS_REPLY_ARRAY || range.elements < 3 ||
          range.element[0]->type != REDIS_REPLY_INTEGER ||
          range.element[1]->type != REDIS_REPLY_INTEGER ||
          range.element[2]->type != REDIS_REPLY_ARRAY || range.element[2]->elements < 2 ||
          range.element[2]->element[0]->type != REDIS_REPLY_STRING ||
          range.element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
        good = false;
        break;
      }
      const long long start = range.element[0]->integer;
      const long long end = range.element[1]->integer;
      const long long port = range.element[2]->element[1]->integer;
      if (start < 0 || end < start || end >= kSlots || port <= 0 || port > 65535) {
        good = false;
        break;
      }
      NodeAddress master{std::string(text_of(*range.element[2]->element[0])),
                         static_cast<std::uint16_t>(port)};
      // An empty or "?" endpoint means "the address you reached me at".
      if (master.host.empty() || master.host == "?") master.host = candidate.host;
      ranges.push_back({{static_cast<std::uint16_t>(start), static_cast<std::uint16_t>(end)},
                        std::move(master)});
    }
    if (!good) {
      last_error = node_name(candidate) + ": unexpected CLUSTER SLOTS reply";
      continue;
    }
    {
      std::lock_guard<std::mutex> guard(mu_);
      std::vector<Pool*> slots(kSlots, nullptr);
      std::vector<NodeAddress> known;
      std::set<std::string> names;
      for (const auto& [range, master] : ranges) {
        Pool* pool = pool_locked(master);
        for (std::uint32_t s = range.first; s <= range.second; ++s) slots[s] = pool;
        if (names.insert(node_name(master)).second) known.push_back(master);
      }
      // Slot by slot: a concurrent caller sees the old or the new master, either of which
      // answers (the old one with MOVED).
      for (std::uint32_t s = 0; s < kSlots; ++s)
        slots_[s].store(slots[s], std::memory_order_release);
      known_ = std::move(known);
    }
    cluster_counters().refreshes.fetch_add(1, std::memory_order_relaxed);
    version_.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  throw StoreFailure(
      last_kind, "cluster: no node told the slot map (CLUSTER SLOTS); last: " + last_error, false);
}

}  // namespace lockkit::detail::redis
