// SPDX-License-Identifier: MIT
// The redlock:// store: one lease over N independent Redis servers, granted by a quorum.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/store_failure.hpp"
#include "core/url.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "redis/redis_connection.hpp"
#include "redis/redis_keys.hpp"
#include "redis/redis_scripts.hpp"

namespace lockkit {
namespace {

using detail::StoreFailure;
using detail::redis::Connection;
using detail::redis::Reply;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

enum Script : std::size_t { kAcquire, kRelease, kExtend, kStatus, kSettle };

constexpr std::size_t kMaxNodes = 64;
// Idle connections kept per node; a call in flight owns one per node, so this bounds what a
// burst of concurrent callers leaves open afterwards.
constexpr std::size_t kMaxIdle = 512;

std::string context(std::string_view op, std::string_view key) {
  return std::string(op) + " \"" + detail::escape_key(key) + "\": ";
}

std::optional<std::uint64_t> as_uint(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER && r.integer >= 0) return static_cast<std::uint64_t>(r.integer);
  if (r.type == REDIS_REPLY_STRING) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(r.str, r.str + r.len, v);
    if (ec == std::errc() && ptr == r.str + r.len) return v;
  }
  return std::nullopt;
}

std::uint64_t to_uint(const redisReply& r) {
  if (auto v = as_uint(r)) return *v;
  throw StoreFailure(ErrorKind::kProtocol, "unexpected reply");
}

bool is_noscript(const redisReply& r) {
  return r.type == REDIS_REPLY_ERROR && std::string_view(r.str, r.len).substr(0, 8) == "NOSCRIPT";
}

detail::redis::ConnectConfig connect_config(const RedisOptions& o) {
  using namespace detail::redis;
  return ConnectConfig{
      .host = o.host,
      .port = o.port,
      .user = o.user,
      .password = o.password.empty() && o.user.empty() ? std::nullopt
                                                       : std::optional<std::string>(o.password),
      .db = o.db,
      .connect_timeout = o.connect_timeout,
      .command_timeout = o.command_timeout,
      .scripts = {kRedlockAcquireScript, kReleaseScript, kExtendScript, kStatusScript,
                  kRedlockSettleScript},
      .allow_eviction = o.allow_eviction,
      .tls =
          TlsConfig{
              .enabled = o.tls.enabled,
              .ca_file = o.tls.ca_file,
              .ca_dir = o.tls.ca_dir,
              .cert_file = o.tls.cert_file,
              .key_file = o.tls.key_file,
              .server_name = o.tls.server_name,
              .insecure_skip_verify = o.tls.insecure_skip_verify,
          },
  };
}

// The outcome of an acquire, for its requests still unanswered when the call returned.
struct Late {
  std::string key;
  std::string token;
  bool granted = false;     // the call's outcome
  std::uint64_t fence = 0;  // the lock's fence, when granted
  bool released = false;    // guarded by LateBook::mu: the holder has released it since
  std::size_t due = 0;      // guarded by LateBook::mu: unanswered requests still listed
};

// Granted locks with requests still unanswered on some node, by token. A release of such a
// lock marks it here first, so that a grant arriving after the release (on the node's older
// connection) is taken back too: a release never leaves an overtaken acquire behind.
struct LateBook {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<Late>> by_token;  // guarded by mu
  std::atomic<std::size_t> size{0};

  void add(const std::shared_ptr<Late>& late, std::size_t due) {
    std::lock_guard lock(mu);
    late->due = due;
    by_token[late->token] = late;
    size.store(by_token.size(), std::memory_order_release);
  }
  void mark_released(std::string_view token) {
    if (size.load(std::memory_order_acquire) == 0) return;
    std::lock_guard lock(mu);
    auto it = by_token.find(std::string(token));
    if (it != by_token.end()) it->second->released = true;
  }
  // Forgets one unanswered request of `late`; returns true if the lock was released meanwhile.
  bool answered(Late& late) {
    std::lock_guard lock(mu);
    const bool released = late.released;
    if (late.due > 0 && --late.due == 0) {
      auto it = by_token.find(late.token);
      if (it != by_token.end() && it->second.get() == &late) by_token.erase(it);
      size.store(by_token.size(), std::memory_order_release);
    }
    return released;
  }
};

// What the next reply on a connection answers.
struct Expect {
  std::uint64_t round = 0;     // the id of the call's round it answers; 0: read and dropped
  std::shared_ptr<Late> late;  // an acquire whose call returned: see `settle_late`
};

std::uint64_t next_round_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// A connection one caller owns at a time, with what INFO said of the server when it was made.
struct Link {
  std::shared_ptr<Connection> conn;
  std::string run_id;
  milliseconds uptime{0};        // at `read_at`
  Steady::time_point read_at{};  // when INFO was read
  Steady::time_point used{};     // the last request sent
  Steady::time_point due{};      // the last request's reply is due by then
  std::deque<Expect> expect;     // replies still to come, in order
  milliseconds uptime_now() const {
    return uptime + std::chrono::duration_cast<milliseconds>(Steady::now() - read_at);
  }
};

// Appends one command: a script by EVALSHA (or EVAL with its text, `eval`), `args` being
// numkeys, keys, argv; or the plain command `args`.
void append_request(std::string& out, const Link& link, const detail::redis::ConnectConfig& config,
                    std::optional<Script> script, bool eval, const std::vector<std::string>& args) {
  detail::redis::append_array_header(out, args.size() + (script ? 2 : 0));
  if (script) {
    detail::redis::append_bulk(out, eval ? "EVAL" : "EVALSHA");
    detail::redis::append_bulk(out, eval ? std::string_view(config.scripts[*script])
                                         : std::string_view(link.conn->script_sha(*script)));
  }
  for (const std::string& arg : args) detail::redis::append_bulk(out, arg);
}

// Where connections for one call arrive when its nodes had none idle: the call polls `fd`
// with its other nodes' sockets instead of waiting for a connect.
struct Mailbox {
  Mailbox() : fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~Mailbox() {
    if (fd >= 0) ::close(fd);
  }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;
  struct Failure {
    std::size_t node;
    ErrorKind kind;
    std::string message;
  };
  void notify() noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
  }
  const int fd;
  std::mutex mu;
  bool closed = false;                                               // guarded by mu
  std::vector<std::pair<std::size_t, std::unique_ptr<Link>>> links;  // guarded by mu
  std::vector<Failure> failures;                                     // guarded by mu
};

// One Redis server of the quorum: its idle connections, the calls waiting for one, what we
// know of its restarts, and its backoff after failures.
// Connections are made on threads of their own, at most `kMaxConnecting` at a time per node,
// and handed to waiting calls first: a burst of callers neither waits for a connect nor floods
// the server with them, and a silent server holds up no caller.
// Fork-safe like the connection pool: a forked child leaves the parent's connections (and
// their locks) untouched, closing only its copies of their sockets, and makes its own.
class Node : public std::enable_shared_from_this<Node> {
 public:
  Node(const RedisOptions& o, milliseconds backoff, milliseconds max_backoff)
      : layout(o.prefix),
        config(connect_config(o)),
        command_timeout(o.command_timeout),
        backoff_(backoff),
        max_backoff_(max_backoff),
        idle_(new Idle(::getpid(), make_context())) {}
  ~Node() { delete idle_.load(std::memory_order_acquire); }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  enum class Take { kLink, kSkip, kWait };

  // Hands out an idle connection (kLink, in `out`). Otherwise kWait: a connection (or the
  // failure to make one) will arrive in `box` for node `index`. kSkip while the node backs
  // off after a failure; once the backoff is over, exactly one call probes it (its connect
  // runs off the caller's thread) and the others keep getting kSkip until the probe ends.
  // Never blocks on I/O.
  // Hands out an idle connection without checking it (the caller does, see `idle_closed`);
  // false if there is none or the node is backing off.
  bool take_idle(std::unique_ptr<Link>& out) {
    if (failures_.load(std::memory_order_acquire) != 0) return false;
    Idle& idle = current();
    std::lock_guard lock(idle.mu);
    if (idle.links.empty()) return false;
    out = std::move(idle.links.back());
    idle.links.pop_back();
    return true;
  }

  Take take(std::unique_ptr<Link>& out, const std::shared_ptr<Mailbox>& box, std::size_t index) {
    bool probe = false;
    if (failures_.load(std::memory_order_acquire) != 0) {
      if (Steady::now().time_since_epoch().count() < down_until_.load(std::memory_order_acquire)) {
        return Take::kSkip;
      }
      if (probing_.exchange(true, std::memory_order_acq_rel)) return Take::kSkip;
      probe = true;
    }
    Idle& idle = current();
    const auto now = Steady::now();
    std::unique_lock lock(idle.mu);
    while (!probe && !idle.links.empty()) {
      out = std::move(idle.links.back());
      idle.links.pop_back();
      // A server restart closes idle connections: found out now, the request stays unsent.
      if (now - out->used < milliseconds(5) || !out->conn->idle_closed()) return Take::kLink;
      out.reset();
    }
    idle.waiters.emplace_back(box, index);
    if (probe || idle.connecting < kMaxConnecting) {
      ++idle.connecting;
      lock.unlock();
      start_connector(idle, probe);
    }
    return Take::kWait;
  }

  // Takes back a connection with no reply outstanding: to the oldest waiting call, else idle.
  void put(std::unique_ptr<Link> link) noexcept {
    if (!link || link->conn->broken() || !link->expect.empty()) return;
    Idle& idle = current_noexcept();
    std::lock_guard lock(idle.mu);
    while (!idle.waiters.empty()) {
      auto [box, index] = std::move(idle.waiters.front());
      idle.waiters.pop_front();
      std::lock_guard box_lock(box->mu);
      if (box->closed) continue;
      try {
        box->links.emplace_back(index, std::move(link));
      } catch (...) {
        return;
      }
      box->notify();
      return;
    }
    if (idle.links.size() >= kMaxIdle) return;
    try {
      idle.links.push_back(std::move(link));
    } catch (...) {
    }
  }

  // Records a failed request: a node that timed out or cannot be reached is skipped (a "no"
  // without I/O) for the backoff, which doubles with every further failure, and its idle
  // connections (probably dead too) are closed.
  void failed(const StoreFailure& f) noexcept {
    if (f.kind() != ErrorKind::kTimeout && f.kind() != ErrorKind::kUnavailable) return;
    unsigned n = std::min(failures_.fetch_add(1) + 1, 16U);
    auto wait = std::min<milliseconds>(backoff_ * (1LL << (n - 1)), max_backoff_);
    down_until_.store((Steady::now() + wait).time_since_epoch().count(), std::memory_order_release);
    std::vector<std::unique_ptr<Link>> dead;
    Idle& idle = current_noexcept();
    {
      std::lock_guard lock(idle.mu);
      dead.swap(idle.links);
    }
  }
  // Records that the node answered.
  void answered() noexcept {
    if (failures_.load(std::memory_order_relaxed) != 0) {
      failures_.store(0, std::memory_order_release);
    }
  }

  bool settled(const std::string& run_id) {
    std::lock_guard lock(mu_);
    return settled_run_ == run_id && !run_id.empty();
  }
  void settle(const std::string& run_id) {
    std::lock_guard lock(mu_);
    settled_run_ = run_id;
  }

  const detail::redis::KeyLayout layout;
  const detail::redis::ConnectConfig config;
  const milliseconds command_timeout;

 private:
  static constexpr std::size_t kMaxConnecting = 4;

  // This process's idle connections, waiting calls and TLS context; a forked child makes its
  // own.
  struct Idle {
    Idle(pid_t owner, detail::redis::TlsContext context) : pid(owner), tls(std::move(context)) {}
    const pid_t pid;
    detail::redis::TlsContext tls;
    std::mutex mu;
    std::vector<std::unique_ptr<Link>> links;                              // guarded by mu
    std::deque<std::pair<std::shared_ptr<Mailbox>, std::size_t>> waiters;  // guarded by mu
    std::size_t connecting = 0;                                            // guarded by mu
  };

  // Connects on a thread of its own while calls wait, handing each connection out by `put`.
  void start_connector(Idle& idle, bool probe) {
    try {
      std::thread([self = shared_from_this(), &idle, probe] {
        self->connector(idle, probe);
      }).detach();
    } catch (const std::system_error& e) {
      {
        std::lock_guard lock(idle.mu);
        --idle.connecting;
      }
      if (probe) probing_.store(false, std::memory_order_release);
      fail_waiters(idle, ErrorKind::kUnavailable,
                   std::string("cannot start a connect: ") + e.what());
    }
  }

  void connector(Idle& idle, bool probe) {
    for (;;) {
      std::unique_ptr<Link> link;
      ErrorKind kind = ErrorKind::kUnavailable;
      std::string message;
      try {
        link = connect(idle);
      } catch (const StoreFailure& f) {
        kind = f.kind();
        message = f.what();
        failed(f);
      } catch (const std::exception& e) {
        message = e.what();
      }
      if (link) failures_.store(0, std::memory_order_release);
      if (probe) probing_.store(false, std::memory_order_release);
      probe = false;
      if (!link) {
        {
          std::lock_guard lock(idle.mu);
          --idle.connecting;
        }
        fail_waiters(idle, kind, message);
        return;
      }
      put(std::move(link));
      std::lock_guard lock(idle.mu);
      // More calls waiting than connections coming: one more.
      if (idle.waiters.size() <= idle.connecting - 1 || idle.pid != ::getpid()) {
        --idle.connecting;
        return;
      }
    }
  }

  // Connects, within the connect timeout, and reads the server's run id and uptime. Throws
  // `StoreFailure`.
  std::unique_ptr<Link> connect(Idle& idle) {
    auto link = std::make_unique<Link>();
    link->conn = Connection::open(config, idle.tls.get());
    std::string request;
    detail::redis::append_command(request, {"INFO", "server"});
    Reply info = link->conn->call(request, Steady::now() + command_timeout);
    link->read_at = Steady::now();
    if (info->type == REDIS_REPLY_STRING) {
      std::string_view text(info->str, info->len);
      auto field = [&](std::string_view name) -> std::string_view {
        auto at = text.find(name);
        if (at == std::string_view::npos) return {};
        auto value = text.substr(at + name.size());
        return value.substr(0, value.find_first_of("\r\n"));
      };
      link->run_id = field("\nrun_id:");
      auto up = field("\nuptime_in_seconds:");
      std::int64_t uptime = 0;
      std::from_chars(up.data(), up.data() + up.size(), uptime);
      // Whole seconds, rounded down: errs on the safe side.
      link->uptime = std::chrono::seconds(uptime);
    }
    link->used = Steady::now();
    return link;
  }

  // Tells every waiting call that no connection is coming.
  void fail_waiters(Idle& idle, ErrorKind kind, const std::string& message) noexcept {
    std::deque<std::pair<std::shared_ptr<Mailbox>, std::size_t>> waiters;
    {
      std::lock_guard lock(idle.mu);
      waiters.swap(idle.waiters);
    }
    for (auto& [box, index] : waiters) {
      std::lock_guard lock(box->mu);
      if (box->closed) continue;
      try {
        box->failures.push_back(Mailbox::Failure{index, kind, message});
      } catch (...) {
        continue;
      }
      box->notify();
    }
  }

  detail::redis::TlsContext make_context() const {
    if (!config.tls.enabled) return nullptr;
    return detail::redis::make_tls_context(config.tls);
  }

  Idle& current() {
    Idle* idle = idle_.load(std::memory_order_acquire);
    if (idle->pid == ::getpid()) [[likely]]
      return *idle;
    // A forked child: the parent's connections are its sockets too. Our copies are closed
    // without I/O (when no parent thread held the list at the fork) and the rest is left as it
    // is: a lock a vanished thread held would never be released.
    auto fresh = std::make_unique<Idle>(::getpid(), make_context());
    if (!idle_.compare_exchange_strong(idle, fresh.get(), std::memory_order_acq_rel)) {
      return *idle;
    }
    if (idle->mu.try_lock()) {
      for (auto& link : idle->links) link->conn->abandon_after_fork();
      for (auto& link : idle->links) (void)link.release();  // NOLINT: the parent's objects
      (void)new std::deque<std::pair<std::shared_ptr<Mailbox>, std::size_t>>(  // NOLINT
          std::move(idle->waiters));
      idle->mu.unlock();
    }
    (void)idle->tls.release();  // NOLINT: the parent's context, leaked on purpose
    return *fresh.release();    // the parent's Idle is leaked on purpose
  }
  Idle& current_noexcept() noexcept {
    try {
      return current();
    } catch (...) {
      return *idle_.load(std::memory_order_acquire);
    }
  }

  const milliseconds backoff_;
  const milliseconds max_backoff_;
  std::atomic<Idle*> idle_;
  std::atomic<Steady::rep> down_until_{0};
  std::atomic<unsigned> failures_{0};
  std::atomic<bool> probing_{false};
  std::mutex mu_;
  std::string settled_run_;  // the run whose lock-delay is over; guarded by mu_
};

// Sends `data` on `link` and lists `count` replies to read and drop. Throws `StoreFailure`.
void send_drained(Node& node, Link& link, const std::string& data, std::size_t count) {
  link.used = Steady::now();
  link.due = link.used + node.command_timeout;
  link.conn->send_owned(data, link.due);
  for (std::size_t i = 0; i < count; ++i) link.expect.push_back(Expect{});
}

// Handles the reply to an acquire whose call has returned: a grant of a failed attempt, or of
// a lock released since, is released on the same connection at once; a grant of the lock
// with another fence makes its holder record show the lock's fence. Throws `StoreFailure`.
void settle_late(Node& node, Link& link, Late& late, LateBook& book, const redisReply& r) {
  const bool granted_here = r.type == REDIS_REPLY_ARRAY && r.elements == 3 &&
                            r.element[0]->type == REDIS_REPLY_INTEGER && r.element[0]->integer > 0;
  const bool released = late.granted ? book.answered(late) : true;
  if (!granted_here) return;
  std::string lock_key, fence_key, holder_key;
  node.layout.keys_of(late.key, lock_key, fence_key, holder_key);
  std::string request;
  if (released) {
    append_request(request, link, node.config, kRelease, false,
                   {"2", lock_key, holder_key, late.token});
  } else if (static_cast<std::uint64_t>(r.element[0]->integer) != late.fence) {
    append_request(request, link, node.config, kSettle, false,
                   {"2", fence_key, holder_key, late.token, std::to_string(late.fence)});
  } else {
    return;
  }
  send_drained(node, link, request, 1);
}

// Finishes the requests of calls that returned before all their replies came: reads those
// replies, settles late grants (`settle_late`), and gives each connection back to its node
// once it is quiet; a connection whose reply is overdue is closed and counts as its node's
// failure. One thread, started on first use, polling every such connection at once.
// Fork-safe: a forked child leaves the parent's thread and connections alone and starts its own.
class Reaper {
 public:
  explicit Reaper(std::shared_ptr<LateBook> book) : book_(std::move(book)) {}
  ~Reaper() {
    std::shared_ptr<State> s;
    {
      std::lock_guard lock(init_mu_);
      s = state_;
    }
    if (s == nullptr || s->pid != ::getpid()) return;
    std::lock_guard lock(s->mu);
    s->stop = true;
    s->woken = true;
    wake(*s);
  }
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Takes `link`, which still expects replies, and gives it back to `node` when it is done.
  void hand(const std::shared_ptr<Node>& node, std::unique_ptr<Link> link) {
    std::shared_ptr<State> s = current();
    std::lock_guard lock(s->mu);
    s->inbox.push_back(Item{node, std::move(link)});
    if (!s->started) {
      try {
        std::thread([s] { run(*s); }).detach();  // `s` keeps what the thread uses alive
        s->started = true;
      } catch (const std::system_error&) {
        s->inbox.pop_back();  // the connection closes; its late grant expires with its ttl
        return;
      }
    }
    if (!s->woken) {
      s->woken = true;
      wake(*s);
    }
  }

 private:
  struct Item {
    std::shared_ptr<Node> node;
    std::unique_ptr<Link> link;
  };
  struct State {
    explicit State(std::shared_ptr<LateBook> b)
        : book(std::move(b)), fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
    ~State() {
      if (fd >= 0) ::close(fd);
    }
    const pid_t pid = ::getpid();
    const std::shared_ptr<LateBook> book;
    const int fd;  // eventfd: new work or stop
    std::mutex mu;
    std::vector<Item> inbox;  // guarded by mu
    bool started = false;     // guarded by mu
    bool woken = false;       // guarded by mu: a wake-up is pending on `fd`
    bool stop = false;        // guarded by mu
  };

  static void wake(State& s) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(s.fd, &one, sizeof one);
  }

  static void run(State& s) {
    std::vector<Item> items;
    std::vector<pollfd> fds;
    std::vector<Reply> replies;
    for (;;) {
      {
        std::lock_guard lock(s.mu);
        for (Item& item : s.inbox) items.push_back(std::move(item));
        s.inbox.clear();
        s.woken = false;
        if (s.stop && items.empty()) return;
      }
      fds.clear();
      fds.push_back(pollfd{s.fd, POLLIN, 0});
      Steady::time_point first_due = Steady::time_point::max();
      for (const Item& item : items) {
        fds.push_back(pollfd{item.link->conn->fd(), POLLIN, 0});
        first_due = std::min(first_due, item.link->due);
      }
      int timeout = -1;
      if (!items.empty()) {
        auto left = std::chrono::ceil<milliseconds>(first_due - Steady::now()).count();
        timeout = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
      }
      if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) continue;
      if (fds[0].revents != 0) {
        std::uint64_t count = 0;
        [[maybe_unused]] ssize_t n = ::read(s.fd, &count, sizeof count);
      }
      const auto now = Steady::now();
      std::size_t kept = 0;
      for (std::size_t k = 0; k < items.size(); ++k) {
        Item& item = items[k];
        bool drop = false;
        try {
          if (fds[k + 1].revents != 0) {
            replies.clear();
            item.link->conn->receive_owned(replies);
            for (Reply& reply : replies) {
              if (item.link->expect.empty()) {
                throw StoreFailure(ErrorKind::kProtocol, "reply without a request", true);
              }
              Expect e = std::move(item.link->expect.front());
              item.link->expect.pop_front();
              item.node->answered();
              if (e.late) settle_late(*item.node, *item.link, *e.late, *s.book, *reply);
            }
          }
          if (!item.link->expect.empty() && now >= item.link->due) {
            throw StoreFailure(ErrorKind::kTimeout, "no reply in time", true);
          }
        } catch (const StoreFailure& f) {
          item.node->failed(f);
          drop = true;
        }
        if (drop || item.link->expect.empty()) {
          if (drop) {
            for (Expect& e : item.link->expect) {
              if (e.late && e.late->granted) s.book->answered(*e.late);
            }
            item.link.reset();
          } else {
            item.node->put(std::move(item.link));
          }
          continue;
        }
        if (kept != k) items[kept] = std::move(item);
        ++kept;
      }
      items.resize(kept);
    }
  }

  std::shared_ptr<State> current() {
    std::lock_guard lock(init_mu_);
    if (state_ == nullptr || state_->pid != ::getpid()) {
      // After a fork the parent's thread does not exist here and its state may be locked:
      // leaked on purpose.
      if (state_ != nullptr) new std::shared_ptr<State>(std::move(state_));  // NOLINT
      state_ = std::make_shared<State>(book_);
      if (state_->fd < 0) {
        throw StoreFailure(ErrorKind::kUnavailable, "eventfd: " + std::to_string(errno));
      }
    }
    return state_;
  }

  const std::shared_ptr<LateBook> book_;
  std::mutex init_mu_;
  std::shared_ptr<State> state_;  // guarded by init_mu_
};

// One node's answer in a round.
enum class Vote { kPending, kYes, kNo, kError, kInDoubt };

struct Answer {
  Vote vote = Vote::kPending;
  std::uint64_t fence = 0;     // acquire: the node's fence; status: the holder's fence
  std::uint64_t recorded = 0;  // acquire: the longest ttl the node had recorded (ms)
  bool known = false;          // acquire: the node's record names its current run
  milliseconds uptime{0};      // acquire: the node's uptime
  milliseconds remaining{0};   // status
  ErrorKind kind = ErrorKind::kUnavailable;
  std::string message;
};

// One request per node (some nodes), and the answers.
struct Round {
  explicit Round(std::size_t n)
      : answers(n), script(n), args(n), unsent(n, false), eval(n, false) {}
  const std::uint64_t id = next_round_id();
  // Makes node i's arguments once its connection is known.
  std::function<std::vector<std::string>(std::size_t, const Link*)> args_for;
  std::vector<Answer> answers;
  std::vector<std::optional<Script>> script;
  std::vector<std::vector<std::string>> args;
  std::vector<bool> unsent;         // waiting for its connection
  std::vector<bool> eval;           // resent as EVAL after NOSCRIPT
  std::optional<std::size_t> only;  // a plain command to this node alone
  // Returns true if the round sends a request to node `i`.
  bool has(std::size_t i) const { return only ? i == *only : script[i].has_value(); }
  std::size_t pending = 0;  // requests of this round not answered or failed yet
};

// The connections one call owns, one per node at most.
struct Parts {
  explicit Parts(std::size_t n) : links(n), waiting(n, false) {}
  std::vector<std::unique_ptr<Link>> links;
  std::vector<bool> waiting;  // for a connection to arrive in `box`
  std::size_t waits = 0;
  std::shared_ptr<Mailbox> box;
};

thread_local Steady::time_point t_last_now{};

}  // namespace

class RedlockStore final : public LeaseStore {
 public:
  explicit RedlockStore(const RedlockOptions& o)
      : quorum_(o.nodes.size() / 2 + 1),
        book_(std::make_shared<LateBook>()),
        reaper_(std::make_unique<Reaper>(book_)) {
    for (const RedisOptions& n : o.nodes) {
      nodes_.push_back(std::make_shared<Node>(n, o.backoff, o.max_backoff));
      wait_ = std::max(wait_, n.connect_timeout + n.command_timeout);
    }
    wait_ += milliseconds(50);  // the nodes' own timeouts end first; this only bounds the wait
  }

  std::string_view backend() const noexcept override { return "redlock"; }
  // The core reads this just before `acquire`: the attempt's start for our validity check.
  Steady::time_point now() const noexcept override {
    auto t = Steady::now();
    t_last_now = t;
    return t;
  }
  milliseconds drift(milliseconds ttl) const noexcept override {
    return ttl / 100 + milliseconds(2);  // clock drift between us and the nodes, as Redlock
  }

  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       milliseconds ttl) override {
    check_key(key);
    auto start = Steady::now();
    if (start - t_last_now < milliseconds(100)) start = t_last_now;
    const std::size_t n = nodes_.size();
    const std::string skey(key), stoken(token);
    const std::string record =
        std::to_string(std::max<std::uint64_t>(ttl.count(), max_ttl_.load()));
    const std::string sttl = std::to_string(ttl.count());
    // The same floor for every node's fence (see kRedlockAcquireScript): our wall clock in µs.
    const std::string clock =
        std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
    Parts parts(n);
    Round round(n);
    bool decided = false, granted = false;
    std::uint64_t fence = 0;
    std::vector<std::size_t> settle_runs;  // nodes whose lock-delay this call ends
    auto decide = [&](bool final) {
      decide_acquire(round, final, decided, granted, fence, settle_runs);
      return decided;
    };
    // The run id goes with the request once the node's lock-delay is over (see the script);
    // it depends on the connection, so the arguments are made when it is known.
    round.args_for = [&](std::size_t i, const Link* link) {
      auto k = keys_for(*nodes_[i], key);
      const bool settled = link && nodes_[i]->settled(link->run_id);
      return std::vector<std::string>{"4",  k[0],   k[1],
                                      k[2], k[3],   stoken,
                                      sttl, record, settled ? link->run_id : std::string(),
                                      clock};
    };
    for (std::size_t i = 0; i < n; ++i) round.script[i] = kAcquire;
    start_round(parts, round);
    auto on_reply = [&](std::size_t i, Reply& reply) {
      const redisReply& r = *reply;
      const Link& link = *parts.links[i];
      Answer& a = round.answers[i];
      if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 ||
          r.element[0]->type != REDIS_REPLY_INTEGER) {
        throw StoreFailure(ErrorKind::kProtocol, "unexpected reply", true);
      }
      if (r.element[0]->integer < 0) {
        throw StoreFailure(ErrorKind::kProtocol,
                           "an internal name holds a key that is not lockkit's; names "
                           "containing \"lockkit:{\" are reserved for lockkit");
      }
      a.fence = static_cast<std::uint64_t>(r.element[0]->integer);
      a.vote = a.fence != 0 ? Vote::kYes : Vote::kNo;
      a.recorded = to_uint(*r.element[1]);
      const redisReply& run = *r.element[2];
      // Known: the node's record names its current run (lockkit saw it before this one), or
      // we ended its lock-delay ourselves (and are recording its run with this very call).
      Node& node = *nodes_[i];
      a.known =
          !link.run_id.empty() &&
          ((run.type == REDIS_REPLY_STRING && std::string_view(run.str, run.len) == link.run_id) ||
           node.settled(link.run_id));
      a.uptime = link.uptime_now();
      if (a.known && !node.settled(link.run_id)) node.settle(link.run_id);
      std::uint64_t seen = max_ttl_.load();
      while (a.known && a.recorded > seen && !max_ttl_.compare_exchange_weak(seen, a.recorded)) {
      }
    };
    pump(parts, round, start + wait_, on_reply, [&] { return decide(false); });
    if (!decided) decide(true);
    // Ends the lock-delay of nodes counted now on the node too (its record names this run),
    // so that other clients, and short-lived processes making one call each, count it at once.
    for (std::size_t i : settle_runs) {
      Link* link = parts.links[i].get();
      if (link == nullptr) continue;
      nodes_[i]->settle(link->run_id);
      try {
        std::string request;
        detail::redis::append_command(
            request,
            {"HSET", nodes_[i]->layout.prefix() + "lockkit:{redlock}", "run", link->run_id});
        send_drained(*nodes_[i], *link, request, 1);
      } catch (const StoreFailure& f) {
        nodes_[i]->failed(f);
        parts.links[i].reset();  // the next call that reaches the node records it
      }
    }
    std::vector<std::size_t> undo, below;
    std::size_t at_fence = 0, errors = 0, in_doubt = 0;
    std::string why;
    for (std::size_t i = 0; i < n; ++i) {
      const Answer& a = round.answers[i];
      if (a.vote == Vote::kYes) {
        undo.push_back(i);
        if (a.fence >= fence) {
          ++at_fence;
        } else {
          below.push_back(i);
        }
      }
      if (a.vote == Vote::kInDoubt) undo.push_back(i), ++in_doubt;
      if (a.vote == Vote::kError || a.vote == Vote::kInDoubt || a.vote == Vote::kPending) {
        ++errors;
        if (why.empty() && !a.message.empty()) why = a.message;
      }
    }
    auto late = std::make_shared<Late>();
    late->key = skey;
    late->token = stoken;
    late->granted = granted;
    late->fence = fence;
    if (!granted) {
      undo_on(parts, undo, key, token);
      finish(parts, &round, late);
      if (errors > n - quorum_) {
        const ErrorKind kind = in_doubt ? ErrorKind::kInDoubt : ErrorKind::kUnavailable;
        throw BackendError("redlock", kind,
                           context("try_acquire", key) + std::to_string(errors) + " of " +
                               std::to_string(n) + " nodes failed, no quorum possible" +
                               (why.empty() ? "" : " (" + why + ")"));
      }
      return std::nullopt;
    }
    // Fences: make sure a quorum of counters is at least `fence`, so every later quorum
    // (which shares a node with this one) hands out more.
    if (!below.empty() && !write_back(parts, key, token, fence, below, at_fence)) {
      late->granted = false;
      undo_on(parts, undo, key, token);
      finish(parts, &round, late);
      throw BackendError(
          "redlock", ErrorKind::kUnavailable,
          context("try_acquire", key) + "could not write the fence back to a quorum of nodes");
    }
    if (Steady::now() >= start + ttl - drift(ttl)) {
      // The validity was spent before the lock was ours: nobody may act on it.
      late->granted = false;
      undo_on(parts, undo, key, token);
      finish(parts, &round, late);
      return std::nullopt;
    }
    finish(parts, &round, late);
    return fence;
  }

  bool release(std::string_view key, std::string_view token) override {
    check_key(key);
    book_->mark_released(token);
    return yes_no("release", key, kRelease, {std::string(token)});
  }

  bool extend(std::string_view key, std::string_view token, milliseconds ttl) override {
    check_key(key);
    const auto start = Steady::now();
    bool ok = yes_no("extend", key, kExtend, {std::string(token), std::to_string(ttl.count())});
    return ok && Steady::now() < start + ttl - drift(ttl);
  }

  std::optional<LockInfo> status(std::string_view key) override {
    check_key(key);
    return status_unchecked(key);
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    // Candidates from every node that answers, then a quorum status of each.
    std::vector<std::string> keys;
    std::size_t failed = 0;
    std::string why;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      Node& node = *nodes_[i];
      const std::string pattern = node.layout.holder_pattern(prefix);
      std::string cursor = "0";
      try {
        do {
          Reply page = exchange(i, {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
          if (page->type != REDIS_REPLY_ARRAY || page->elements != 2 ||
              page->element[0]->type != REDIS_REPLY_STRING ||
              page->element[1]->type != REDIS_REPLY_ARRAY) {
            throw StoreFailure(ErrorKind::kProtocol, "bad SCAN reply");
          }
          cursor.assign(page->element[0]->str, page->element[0]->len);
          const redisReply& names = *page->element[1];
          for (std::size_t j = 0; j < names.elements; ++j) {
            std::string_view name(names.element[j]->str, names.element[j]->len);
            std::string_view k = node.layout.holder_key(name);
            if (k.empty() || k.size() > kMaxKeyBytes || k.substr(0, prefix.size()) != prefix ||
                node.layout.reserved(k)) {
              continue;
            }
            keys.emplace_back(k);
          }
        } while (cursor != "0");
      } catch (const StoreFailure& f) {
        ++failed;
        if (why.empty()) why = f.what();
      }
    }
    if (failed > nodes_.size() - quorum_) {
      throw BackendError("redlock", ErrorKind::kUnavailable,
                         context("list", prefix) + std::to_string(failed) + " of " +
                             std::to_string(nodes_.size()) + " nodes failed (" + why + ")");
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    std::vector<LockInfo> out;
    for (const std::string& k : keys) {
      auto info = status_unchecked(k);
      if (info && info->fence != 0) out.push_back(std::move(*info));
    }
    return out;
  }

 private:
  // --- the round engine: the calling thread sends to every node and polls their replies ---

  std::vector<std::string> keys_for(const Node& node, std::string_view key) const {
    std::string lock_key, fence_key, holder_key;
    node.layout.keys_of(key, lock_key, fence_key, holder_key);
    std::string meta = node.layout.prefix() + "lockkit:{redlock}";
    return {std::move(lock_key), std::move(fence_key), std::move(holder_key), std::move(meta)};
  }

  // Sends `round`'s request to every node that has a script in it (`round.args_for` makes the
  // arguments), on connections this call owns: taken idle, or awaited in `parts.box`.
  void start_round(Parts& parts, Round& round) {
    const std::size_t n = round.answers.size();
    // Idle connections are taken unchecked and checked together, in one poll: a server
    // restart closes them, and finding out now keeps the request unsent.
    std::vector<std::size_t> taken;
    for (std::size_t i = 0; i < n; ++i) {
      if (!round.has(i)) continue;
      if (parts.links[i] != nullptr || parts.waiting[i]) continue;
      if (nodes_[i]->take_idle(parts.links[i])) taken.push_back(i);
    }
    if (!taken.empty()) {
      const auto now = Steady::now();
      pollfd fds[kMaxNodes];
      std::size_t count = 0, who[kMaxNodes];
      for (std::size_t i : taken) {
        if (now - parts.links[i]->used < milliseconds(5)) continue;
        fds[count] = pollfd{parts.links[i]->conn->fd(), POLLIN | POLLRDHUP, 0};
        who[count++] = i;
      }
      if (count > 0 && ::poll(fds, count, 0) > 0) {
        for (std::size_t k = 0; k < count; ++k) {
          if (fds[k].revents == 0) continue;
          // Closed, or (over TLS) perhaps only a session ticket: the careful check decides.
          parts.links[who[k]].reset();
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!round.has(i)) continue;
      ++round.pending;
      if (parts.links[i] == nullptr && !parts.waiting[i]) {
        if (!parts.box) parts.box = std::make_shared<Mailbox>();
        if (parts.box->fd < 0) {
          fail(parts, round, i, StoreFailure(ErrorKind::kUnavailable, "eventfd failed"), false);
          continue;
        }
        switch (nodes_[i]->take(parts.links[i], parts.box, i)) {
          case Node::Take::kLink:
            break;
          case Node::Take::kSkip:
            fail(parts, round, i,
                 StoreFailure(ErrorKind::kUnavailable, "node skipped after a recent failure"),
                 /*record=*/false);
            continue;
          case Node::Take::kWait:
            parts.waiting[i] = true;
            ++parts.waits;
            break;
        }
      }
      if (parts.waiting[i]) {
        round.unsent[i] = true;
        continue;
      }
      round.args[i] = round.args_for(i, parts.links[i].get());
      send(parts, round, i);
    }
  }

  // Sends node `i`'s request of `round` on its connection.
  void send(Parts& parts, Round& round, std::size_t i) {
    round.unsent[i] = false;
    Link& link = *parts.links[i];
    Node& node = *nodes_[i];
    std::string request;
    append_request(request, link, node.config, round.script[i], round.eval[i], round.args[i]);
    try {
      link.used = Steady::now();
      link.due = link.used + node.command_timeout;
      link.conn->send_owned(request, link.due);
      link.expect.push_back(Expect{round.id, nullptr});
    } catch (const StoreFailure& f) {
      fail(parts, round, i, f);
    }
  }

  // Node `i`'s request failed: an error vote (in doubt if it may have run), and its connection
  // is closed. `record`: the node failed (not merely skipped).
  void fail(Parts& parts, Round& round, std::size_t i, const StoreFailure& f, bool record = true) {
    Answer& a = round.answers[i];
    if (a.vote == Vote::kPending) {
      a.vote = f.maybe_applied() ? Vote::kInDoubt : Vote::kError;
      a.kind = f.kind();
      a.message = f.what();
      --round.pending;
    }
    round.unsent[i] = false;
    if (record) nodes_[i]->failed(f);
    parts.links[i].reset();  // with any earlier round's unanswered request (a late acquire's
                             // grant there expires with its ttl)
  }

  // Reads the replies to `round`'s requests until `done()`, until every one is answered, or
  // until `deadline`. `on_reply(i, reply)` fills node i's answer (and may throw
  // `StoreFailure`); replies to requests queued before ours on a connection are dropped. A
  // connection with none of `round`'s requests is not read: an earlier round's reply stays
  // there for `finish`.
  template <class OnReply, class Done>
  void pump(Parts& parts, Round& round, Steady::time_point deadline, OnReply&& on_reply,
            Done&& done) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> who;
    std::vector<Reply> replies;
    constexpr std::size_t kBox = static_cast<std::size_t>(-1);
    while (round.pending > 0 && !done()) {
      fds.clear();
      who.clear();
      for (std::size_t i = 0; i < parts.links.size(); ++i) {
        const Link* link = parts.links[i].get();
        if (link != nullptr && round.has(i) && round.answers[i].vote == Vote::kPending &&
            !round.unsent[i] && !link->expect.empty()) {
          fds.push_back(pollfd{link->conn->fd(), POLLIN, 0});
          who.push_back(i);
        }
      }
      if (parts.waits > 0) {
        fds.push_back(pollfd{parts.box->fd, POLLIN, 0});
        who.push_back(kBox);
      }
      if (fds.empty()) return;
      const auto left = deadline - Steady::now();
      if (left <= Steady::duration::zero()) return;
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      const timespec limit{static_cast<time_t>(ns / 1'000'000'000),
                           static_cast<long>(ns % 1'000'000'000)};
      const int ready = ::ppoll(fds.data(), fds.size(), &limit, nullptr);
      if (ready < 0 && errno != EINTR) return;
      if (ready <= 0) continue;
      for (std::size_t k = 0; k < fds.size(); ++k) {
        if (fds[k].revents == 0) continue;
        const std::size_t i = who[k];
        if (i == kBox) {
          collect(parts, round);
          continue;
        }
        Link* link = parts.links[i].get();
        if (link == nullptr) continue;
        replies.clear();
        try {
          link->conn->receive_owned(replies);
        } catch (const StoreFailure& f) {
          fail(parts, round, i, f);
          continue;
        }
        nodes_[i]->answered();
        for (Reply& reply : replies) {
          if (parts.links[i] == nullptr) break;
          if (link->expect.empty()) {
            fail(parts, round, i,
                 StoreFailure(ErrorKind::kProtocol, "reply without a request", true));
            break;
          }
          Expect e = std::move(link->expect.front());
          link->expect.pop_front();
          if (e.round != round.id) continue;  // a request dropped unread
          Answer& a = round.answers[i];
          if (a.vote != Vote::kPending) continue;
          if (is_noscript(*reply) && round.script[i] && !round.eval[i]) {
            // The server lost its scripts (SCRIPT FLUSH): the same request with the text.
            round.eval[i] = true;
            send(parts, round, i);
            continue;
          }
          try {
            if (reply->type == REDIS_REPLY_ERROR) {
              std::string text(reply->str, reply->len);
              ErrorKind kind = detail::redis::error_reply_kind(text);
              // Refused before running (auth, unavailable): not applied; anything else may
              // come from inside a script, after some of its writes.
              a.vote = kind != ErrorKind::kAuth && kind != ErrorKind::kUnavailable ? Vote::kInDoubt
                                                                                   : Vote::kError;
              a.kind = kind;
              a.message = "server error: " + text;
            } else {
              on_reply(i, reply);
            }
          } catch (const StoreFailure& f) {
            a.vote = f.maybe_applied() ? Vote::kInDoubt : Vote::kError;
            a.kind = f.kind();
            a.message = f.what();
          }
          if (a.vote == Vote::kPending) a.vote = Vote::kError;
          --round.pending;
        }
      }
    }
  }

  // Takes the connections (or failures) that arrived for `parts`, and sends `round`'s requests
  // that waited for them.
  void collect(Parts& parts, Round& round) {
    std::vector<std::pair<std::size_t, std::unique_ptr<Link>>> links;
    std::vector<Mailbox::Failure> failures;
    {
      std::lock_guard lock(parts.box->mu);
      std::uint64_t count = 0;
      [[maybe_unused]] ssize_t n = ::read(parts.box->fd, &count, sizeof count);
      links.swap(parts.box->links);
      failures.swap(parts.box->failures);
    }
    for (auto& [i, link] : links) {
      if (parts.waiting[i]) {
        parts.waiting[i] = false;
        --parts.waits;
      }
      if (parts.links[i] != nullptr) {
        nodes_[i]->put(std::move(link));
        continue;
      }
      parts.links[i] = std::move(link);
      if (round.unsent[i]) {
        round.args[i] = round.args_for(i, parts.links[i].get());
        send(parts, round, i);
      }
    }
    for (Mailbox::Failure& f : failures) {
      if (!parts.waiting[f.node]) continue;
      parts.waiting[f.node] = false;
      --parts.waits;
      if (round.unsent[f.node]) {
        // Recorded by the connect already; here it is this call's error vote only.
        Answer& a = round.answers[f.node];
        a.vote = Vote::kError;
        a.kind = f.kind;
        a.message = f.message;
        round.unsent[f.node] = false;
        --round.pending;
      }
    }
  }

  // Ends a call: connections still being made go to their nodes when they arrive; quiet ones
  // go back now; those still expecting replies go to the reaper, where an acquire's late
  // replies (`round`'s) are settled with `late`.
  void finish(Parts& parts, const Round* round, const std::shared_ptr<Late>& late) {
    if (parts.box) {
      std::vector<std::pair<std::size_t, std::unique_ptr<Link>>> links;
      {
        std::lock_guard lock(parts.box->mu);
        parts.box->closed = true;
        links.swap(parts.box->links);
      }
      for (auto& [i, link] : links) nodes_[i]->put(std::move(link));
    }
    std::size_t due = 0;
    for (auto& link : parts.links) {
      if (!link) continue;
      for (Expect& e : link->expect) {
        if (round != nullptr && e.round == round->id && late) {
          e.late = late;
          due += late->granted ? 1 : 0;
        }
        e.round = 0;
      }
    }
    if (due > 0) book_->add(late, due);
    std::vector<Reply> replies;
    for (std::size_t i = 0; i < parts.links.size(); ++i) {
      auto& link = parts.links[i];
      if (!link) continue;
      if (!link->expect.empty()) {
        // Often the last replies are already here: no need to wake the reaper for them.
        try {
          replies.clear();
          link->conn->receive_owned(replies);
          for (Reply& reply : replies) {
            if (link->expect.empty()) {
              throw StoreFailure(ErrorKind::kProtocol, "reply without a request", true);
            }
            Expect e = std::move(link->expect.front());
            link->expect.pop_front();
            nodes_[i]->answered();
            if (e.late) settle_late(*nodes_[i], *link, *e.late, *book_, *reply);
          }
        } catch (const StoreFailure& f) {
          for (Expect& e : link->expect) {
            if (e.late && e.late->granted) book_->answered(*e.late);
          }
          nodes_[i]->failed(f);
          link.reset();
          continue;
        }
      }
      if (link->expect.empty()) {
        nodes_[i]->put(std::move(link));
        continue;
      }
      try {
        reaper_->hand(nodes_[i], std::move(link));
      } catch (const std::exception&) {
        // Closed with it: a late grant there expires with its ttl.
      }
    }
  }

  // Runs one plain command on node `i` and returns its reply. Throws `StoreFailure`.
  Reply exchange(std::size_t i, const std::vector<std::string>& command) {
    Parts parts(nodes_.size());
    Round round(nodes_.size());
    Reply out;
    round.only = i;  // a plain command (no script), to node i only
    round.args_for = [&](std::size_t, const Link*) { return command; };
    start_round(parts, round);
    pump(
        parts, round, Steady::now() + wait_,
        [&](std::size_t, Reply& reply) {
          out = std::move(reply);
          round.answers[i].vote = Vote::kYes;
        },
        [] { return false; });
    finish(parts, nullptr, nullptr);
    const Answer& a = round.answers[i];
    if (a.vote == Vote::kYes) return out;
    if (a.vote == Vote::kPending) throw StoreFailure(ErrorKind::kTimeout, "no reply in time");
    throw StoreFailure(a.kind, a.message);
  }

  // Decides once a quorum of counted grants is in (granted), or can no longer be (refused).
  // A node whose history we have not seen (restarted, new) counts only once every node has
  // answered and only if its uptime exceeds the longest ttl recorded on the nodes with known
  // history (lock-delay); such nodes go to `settle_runs`.
  void decide_acquire(const Round& round, bool final, bool& decided, bool& granted,
                      std::uint64_t& fence, std::vector<std::size_t>& settle_runs) const {
    std::uint64_t longest = max_ttl_.load();
    // Only a node with known history vouches for its record: in a fresh deployment no node is
    // known yet, so concurrent first calls (each seeing the others' ttls) do not all wait.
    for (const Answer& a : round.answers) {
      if (a.known) longest = std::max(longest, a.recorded);
    }
    const bool all_in = round.pending == 0 || final;
    std::size_t counted = 0, maybe = 0;
    std::uint64_t f = 0;
    std::vector<std::size_t> runs;
    for (std::size_t i = 0; i < round.answers.size(); ++i) {
      const Answer& a = round.answers[i];
      if (a.vote == Vote::kPending && !final) ++maybe;
      if (a.vote != Vote::kYes) continue;
      if (a.known) {
        ++counted;
        f = std::max(f, a.fence);
      } else if (!all_in) {
        ++maybe;
      } else if (a.uptime >= milliseconds(longest)) {
        ++counted;
        f = std::max(f, a.fence);
        runs.push_back(i);
      }
    }
    if (counted >= quorum_) {
      decided = true;
      granted = true;
      fence = f;
    } else if (counted + maybe < quorum_) {
      decided = true;
      granted = false;
    }
    if (decided) settle_runs = std::move(runs);
  }

  // Writes `fence` to the nodes in `below` until a quorum holds a counter >= fence.
  bool write_back(Parts& parts, std::string_view key, std::string_view token, std::uint64_t fence,
                  const std::vector<std::size_t>& below, std::size_t already) {
    if (already >= quorum_) return true;
    Round round(nodes_.size());
    const std::string sfence = std::to_string(fence);
    for (std::size_t i : below) round.script[i] = kSettle;
    round.args_for = [&](std::size_t i, const Link*) {
      auto k = keys_for(*nodes_[i], key);
      return std::vector<std::string>{"2", k[1], k[2], std::string(token), sfence};
    };
    start_round(parts, round);
    auto enough = [&] {
      std::size_t yes = already;
      for (const Answer& a : round.answers) yes += a.vote == Vote::kYes;
      return yes >= quorum_;
    };
    pump(
        parts, round, Steady::now() + wait_,
        [&](std::size_t i, Reply& r) {
          round.answers[i].vote =
              r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? Vote::kYes : Vote::kError;
        },
        enough);
    return enough();
  }

  // Releases the grants of a failed attempt on `nodes` and waits for the answers (bounded
  // like every round): the next attempt finds them gone.
  void undo_on(Parts& parts, const std::vector<std::size_t>& nodes, std::string_view key,
               std::string_view token) {
    if (nodes.empty()) return;
    Round round(nodes_.size());
    for (std::size_t i : nodes) round.script[i] = kRelease;
    round.args_for = [&](std::size_t i, const Link*) {
      auto k = keys_for(*nodes_[i], key);
      return std::vector<std::string>{"2", k[0], k[2], std::string(token)};
    };
    start_round(parts, round);
    pump(
        parts, round, Steady::now() + wait_,
        [&](std::size_t i, Reply&) { round.answers[i].vote = Vote::kYes; }, [] { return false; });
  }

  // --- release, extend, status ----------------------------------------------------------

  // Runs `script` (KEYS lock, holder; ARGV `argv`) on every node; true once a quorum answered
  // 1, false once it cannot; throws if fewer than a quorum answered at all.
  bool yes_no(std::string_view op, std::string_view key, Script script,
              const std::vector<std::string>& argv) {
    const std::size_t n = nodes_.size();
    Parts parts(n);
    Round round(n);
    for (std::size_t i = 0; i < n; ++i) round.script[i] = script;
    round.args_for = [&](std::size_t i, const Link*) {
      auto k = keys_for(*nodes_[i], key);
      std::vector<std::string> args{"2", std::move(k[0]), std::move(k[2])};
      args.insert(args.end(), argv.begin(), argv.end());
      return args;
    };
    start_round(parts, round);
    auto decided = [&] {
      std::size_t yes = 0, no = 0;
      for (const Answer& b : round.answers) {
        yes += b.vote == Vote::kYes;
        no += b.vote != Vote::kYes && b.vote != Vote::kPending;
      }
      return yes >= quorum_ || no > n - quorum_;
    };
    pump(
        parts, round, Steady::now() + wait_,
        [&](std::size_t i, Reply& r) {
          round.answers[i].vote = to_uint(*r) == 1 ? Vote::kYes : Vote::kNo;
        },
        decided);
    finish(parts, nullptr, nullptr);
    std::size_t yes = 0, errors = 0;
    std::string why;
    ErrorKind kind = ErrorKind::kUnavailable;
    for (const Answer& a : round.answers) {
      yes += a.vote == Vote::kYes;
      if (a.vote == Vote::kError || a.vote == Vote::kInDoubt || a.vote == Vote::kPending) {
        ++errors;
        if (why.empty() && !a.message.empty()) why = a.message, kind = a.kind;
      }
    }
    if (yes >= quorum_) return true;
    if (errors > n - quorum_) {
      if (kind != ErrorKind::kAuth && kind != ErrorKind::kProtocol) kind = ErrorKind::kUnavailable;
      throw BackendError("redlock", kind,
                         context(op, key) + std::to_string(errors) + " of " + std::to_string(n) +
                             " nodes failed, no quorum possible" +
                             (why.empty() ? "" : " (" + why + ")"));
    }
    return false;
  }

  std::optional<LockInfo> status_unchecked(std::string_view key) {
    const std::size_t n = nodes_.size();
    Parts parts(n);
    Round round(n);
    for (std::size_t i = 0; i < n; ++i) round.script[i] = kStatus;
    round.args_for = [&](std::size_t i, const Link*) {
      auto k = keys_for(*nodes_[i], key);
      return std::vector<std::string>{"2", std::move(k[0]), std::move(k[2])};
    };
    start_round(parts, round);
    auto decided = [&] {
      std::size_t yes = 0, no = 0;
      for (const Answer& b : round.answers) {
        yes += b.vote == Vote::kYes;
        no += b.vote != Vote::kYes && b.vote != Vote::kPending;
      }
      return yes >= quorum_ || no > n - quorum_;
    };
    pump(
        parts, round, Steady::now() + wait_,
        [&](std::size_t i, Reply& reply) {
          const redisReply& r = *reply;
          Answer& a = round.answers[i];
          if (r.type == REDIS_REPLY_NIL) {
            a.vote = Vote::kNo;
          } else if (r.type == REDIS_REPLY_ARRAY && r.elements == 2) {
            a.fence = to_uint(*r.element[0]);
            a.remaining = milliseconds(to_uint(*r.element[1]));
            a.vote = Vote::kYes;
          } else {
            throw StoreFailure(ErrorKind::kProtocol, "unexpected reply");
          }
        },
        decided);
    finish(parts, nullptr, nullptr);
    std::size_t yes = 0, errors = 0;
    std::uint64_t fence = 0;
    milliseconds remaining = milliseconds::max();
    std::string why;
    for (const Answer& a : round.answers) {
      if (a.vote == Vote::kYes) {
        ++yes;
        fence = std::max(fence, a.fence);
        remaining = std::min(remaining, a.remaining);
      }
      if (a.vote == Vote::kError || a.vote == Vote::kInDoubt || a.vote == Vote::kPending) {
        ++errors;
        if (why.empty() && !a.message.empty()) why = a.message;
      }
    }
    if (yes >= quorum_) return LockInfo{std::string(key), fence, remaining};
    if (errors > n - quorum_) {
      throw BackendError("redlock", ErrorKind::kUnavailable,
                         context("status", key) + std::to_string(errors) + " of " +
                             std::to_string(n) + " nodes failed, no quorum possible" +
                             (why.empty() ? "" : " (" + why + ")"));
    }
    return std::nullopt;
  }

  void check_key(std::string_view key) const {
    for (const auto& node : nodes_) {
      if (!node->layout.reserved(key)) [[likely]]
        continue;
      throw std::invalid_argument(
          "key: Redis names (prefix + key) containing \"lockkit:{\" are reserved by redlock://");
    }
  }

  const std::size_t quorum_;
  milliseconds wait_{0};
  std::atomic<std::uint64_t> max_ttl_{0};  // the longest ttl (ms) seen recorded on any node
  std::vector<std::shared_ptr<Node>> nodes_;
  const std::shared_ptr<LateBook> book_;
  const std::unique_ptr<Reaper> reaper_;
};

std::shared_ptr<LeaseStore> make_redlock_store(RedlockOptions options) {
  if (options.nodes.empty() || options.nodes.size() > kMaxNodes) {
    throw std::invalid_argument("nodes: must be 1..64, got " +
                                std::to_string(options.nodes.size()));
  }
  if (options.backoff < milliseconds(1) || options.max_backoff < options.backoff) {
    throw std::invalid_argument("backoff: must be >= 1ms and <= max_backoff");
  }
  for (RedisOptions& node : options.nodes) {
    (void)make_redis_store(node);  // checks the node's options the way redis:// does
  }
  return std::make_shared<RedlockStore>(options);
}

std::shared_ptr<LockApi> make_redlock_lock_api(RedlockOptions options) {
  return make_lock_api(make_redlock_store(std::move(options)));
}

RedlockOptions parse_redlock_url(std::string_view url) {
  detail::Url parsed = detail::parse_url(url);  // checks the syntax, quotes a redacted url
  if (parsed.scheme != "redlock") detail::throw_bad_url(url, "scheme must be redlock://");
  if (!parsed.has_authority || parsed.hosts.empty()) {
    detail::throw_bad_url(url, "no host (use redlock://host1:port1,host2:port2,...)");
  }
  if (parsed.hosts.size() > kMaxNodes) detail::throw_bad_url(url, "more than 64 hosts");
  // Every node is the redis:// URL with one of the hosts: same credentials, path and options.
  std::string_view rest = url.substr(url.find("://") + 3);
  const std::size_t end = std::min(rest.find('/'), rest.find('?'));
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  std::string userinfo;
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    userinfo = std::string(authority.substr(0, at + 1));
    authority.remove_prefix(at + 1);
  }
  RedlockOptions out;
  std::size_t start = 0;
  for (;;) {
    std::size_t comma = authority.find(',', start);
    std::string_view host = authority.substr(start, comma - start);
    if (host.empty()) detail::throw_bad_url(url, "empty host in the host list");
    std::string node_url = "redis://" + userinfo + std::string(host) + std::string(tail);
    try {
      out.nodes.push_back(parse_redis_url(node_url));
    } catch (const std::invalid_argument& e) {
      // parse_redis_url quotes the node's url redacted; say which host it was.
      throw std::invalid_argument(std::string(e.what()) + " (redlock node " +
                                  std::to_string(out.nodes.size() + 1) + ")");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace {
std::shared_ptr<LeaseStore> open_redlock(std::string_view url) {
  return make_redlock_store(parse_redlock_url(url));
}
using StoreFactory = std::function<std::shared_ptr<LeaseStore>(std::string_view)>;
[[maybe_unused]] const bool g_registered =
    (register_backend("redlock", StoreFactory(&open_redlock)), true);
}  // namespace

}  // namespace lockkit

// Referenced by the redis backend's anchor, so linking lockkit::redis statically keeps
// redlock:// registered too.
extern "C" void lockkit_backend_anchor_redlock() {}
