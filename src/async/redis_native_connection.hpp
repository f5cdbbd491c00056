// SPDX-License-Identifier: MIT
// Internal: one pipelined Redis connection driven by an asio strand, shared by AsyncLockApi's
// native redis:// and redlock:// paths.
#ifndef LOCKKIT_SRC_ASYNC_REDIS_NATIVE_CONNECTION_HPP_
#define LOCKKIT_SRC_ASYNC_REDIS_NATIVE_CONNECTION_HPP_

#include <array>
#include <asio/any_io_executor.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lockkit/errors.hpp"
#include "redis/redis_native.hpp"

struct redisReply;
struct redisReader;

namespace lockkit::detail {

// What one connection speaks to and how it introduces itself.
struct NativeConnectionConfig {
  redis::NativeTarget target;
  // Loaded by SCRIPT LOAD at every connect; `Request::script` indexes this list.
  std::vector<const char*> scripts;
  std::string name = "lockkit-async";  // CLIENT SETNAME: operators see which connection is ours
  std::string backend = "redis";       // the `BackendError::backend()` of its failures
  bool read_info = false;              // reads INFO server at every connect (see `life`)
  // Runs once on the blocking pool before the first connect (the checks the blocking client
  // makes at connect: eviction policy, credentials); throws `BackendError` to refuse.
  std::function<void()> probe;
  // The index in `scripts` of a batch script (see `Request::batch_op`), or -1.
  int batch_script = -1;
};

// A request's arguments as RESP bulk strings: in place up to kInline bytes (a lock request's
// keys, token and ttl fit), so that building a request allocates nothing.
class RequestPayload {
 public:
  static constexpr std::size_t kInline = 232;

  RequestPayload() noexcept = default;
  RequestPayload(RequestPayload&& other) noexcept { *this = std::move(other); }
  RequestPayload(const RequestPayload& other) { *this = other; }
  RequestPayload& operator=(RequestPayload&& other) noexcept {
    if (this != &other) {
      size_ = other.size_;
      heap_ = std::move(other.heap_);
      if (heap_.empty()) std::memcpy(inline_, other.inline_, size_);
      other.size_ = 0;
      other.heap_.clear();
    }
    return *this;
  }
  RequestPayload& operator=(const RequestPayload& other) {
    if (this != &other) {
      size_ = other.size_;
      heap_ = other.heap_;
      if (heap_.empty()) std::memcpy(inline_, other.inline_, size_);
    }
    return *this;
  }

  // Makes room for `n` bytes in all (only beyond kInline does that allocate).
  void reserve(std::size_t n) {
    if (n > kInline && heap_.empty()) {
      heap_.reserve(n);
      heap_.assign(inline_, size_);
    } else if (!heap_.empty()) {
      heap_.reserve(n);
    }
  }
  // Appends `n` bytes, to be written at the returned address.
  char* grow(std::size_t n) {
    if (heap_.empty() && size_ + n <= kInline) {
      char* at = inline_ + size_;
      size_ += n;
      return at;
    }
    if (heap_.empty()) heap_.assign(inline_, size_);
    heap_.resize(size_ + n);
    char* at = heap_.data() + size_;
    size_ += n;
    return at;
  }
  const char* data() const noexcept { return heap_.empty() ? inline_ : heap_.data(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  operator std::string_view() const noexcept { return {data(), size_}; }  // NOLINT

 private:
  std::size_t size_ = 0;
  std::string heap_;  // holds all of it once it outgrew inline_
  char inline_[kInline];
};

// What a request's reply goes to: a std::function<void(std::exception_ptr, redisReply*)> that
// keeps a callable of up to kInline bytes in place. One is made and run per request, and
// std::function allocates for any capture larger than two pointers. Same requirements as
// std::function (a copyable callable); larger ones go to the heap.
class ReplyCallback {
 public:
  static constexpr std::size_t kInline = 128;

  ReplyCallback() noexcept = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, ReplyCallback>>>
  ReplyCallback(F f) {  // NOLINT: implicit, as std::function's
    using T = std::decay_t<F>;
    static_assert(std::is_copy_constructible_v<T>, "a copyable callable, as std::function");
    if constexpr (fits<T>()) {
      new (storage_) T(std::move(f));
    } else {
      *reinterpret_cast<T**>(storage_) = new T(std::move(f));
    }
    ops_ = &kOps<T>;
  }
  ReplyCallback(ReplyCallback&& other) noexcept : ops_(other.ops_) {
    if (ops_) ops_->move(other.storage_, storage_);
    other.ops_ = nullptr;
  }
  ReplyCallback(const ReplyCallback& other) : ops_(nullptr) {
    if (other.ops_) other.ops_->copy(other.storage_, storage_);
    ops_ = other.ops_;
  }
  ReplyCallback& operator=(ReplyCallback&& other) noexcept {
    if (this != &other) {
      reset();
      if (other.ops_) other.ops_->move(other.storage_, storage_);
      ops_ = std::exchange(other.ops_, nullptr);
    }
    return *this;
  }
  ReplyCallback& operator=(const ReplyCallback& other) {
    if (this != &other) *this = ReplyCallback(other);
    return *this;
  }
  ~ReplyCallback() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  // Like std::function's: calls the target as a non-const lvalue.
  void operator()(std::exception_ptr error, redisReply* reply) const {
    ops_->call(const_cast<unsigned char*>(storage_), std::move(error), reply);
  }

 private:
  struct Ops {
    void (*call)(void*, std::exception_ptr, redisReply*);
    void (*move)(void* from, void* to) noexcept;  // and destroys `from`
    void (*copy)(const void* from, void* to);
    void (*destroy)(void*) noexcept;
  };
  template <class T>
  static constexpr bool fits() {
    return sizeof(T) <= kInline && alignof(T) <= alignof(std::max_align_t) &&
           std::is_nothrow_move_constructible_v<T>;
  }
  template <class T>
  static T& target(void* p) {
    if constexpr (fits<T>()) {
      return *std::launder(reinterpret_cast<T*>(p));
    } else {
      return **reinterpret_cast<T**>(p);
    }
  }
  template <class T>
  static constexpr Ops kOps{
      [](void* p, std::exception_ptr error, redisReply* reply) {
        target<T>(p)(std::move(error), reply);
      },
      [](void* from, void* to) noexcept {
        if constexpr (fits<T>()) {
          T& t = target<T>(from);
          new (to) T(std::move(t));
          t.~T();
        } else {
          *reinterpret_cast<T**>(to) = *reinterpret_cast<T**>(from);
        }
      },
      [](const void* from, void* to) {
        const T& t = target<T>(const_cast<void*>(from));
        if constexpr (fits<T>()) {
          new (to) T(t);
        } else {
          *reinterpret_cast<T**>(to) = new T(t);
        }
      },
      [](void* p) noexcept {
        if constexpr (fits<T>()) {
          target<T>(p).~T();
        } else {
          delete *reinterpret_cast<T**>(p);
        }
      },
  };
  void reset() noexcept {
    if (ops_) std::exchange(ops_, nullptr)->destroy(storage_);
  }

  const Ops* ops_ = nullptr;
  alignas(std::max_align_t) unsigned char storage_[kInline];
};

// One connection, touched only on its strand. Requests queue while it connects; once ready,
// each is appended to the output buffer, and the buffer is written once per turn of the
// executor (one write in flight): the server then reads many requests per read and answers
// them in one write. Replies, which Redis sends in order, complete the oldest request first. A
// request that gets no reply within the command timeout fails the connection and everything on it;
// the next request connects again. Thread safety: `submit`, `try_submit` and `shutdown` from any
// thread; the rest on the strand.
class RedisNativeConnection : public std::enable_shared_from_this<RedisNativeConnection> {
 public:
  using Clock = std::chrono::steady_clock;
  // Gets the reply (an error reply too) or the failure (a `BackendError`; kInDoubt for a
  // request sent with `maybe_write` whose reply was lost). Runs on the strand, once.
  using Done = ReplyCallback;
  static constexpr int kNoScript = -1;
  static constexpr std::size_t kRepliesPerTurn = 32;

  struct Request {
    int script = kNoScript;  // EVALSHA of `NativeConnectionConfig::scripts[script]`
    // Non-zero: one operation of the batch script, named by this letter; its `payload` holds
    // its keys (the first `numkeys` parts, `key_bytes` bytes; see `end_keys`), then its
    // arguments. Operations written one after another, with nothing else between them, go out
    // as one run of the batch script and get their own replies from its array, in order.
    char batch_op = 0;
    std::size_t numkeys = 0;
    std::size_t key_bytes = 0;
    std::vector<Request> items;  // a batch's operations (then `done` is unused)
    // EVALSHA's numkeys, keys and argv, or a whole command: `parts` RESP bulk strings, written
    // once by the caller (one buffer, not one string per argument).
    RequestPayload payload;
    std::size_t parts = 0;
    bool maybe_write = false;  // a lost reply leaves it in doubt
    bool eval = false;         // send the script's text (after NOSCRIPT)
    Done done;
    Clock::time_point deadline{};
  };

  // The server's run as INFO told it at the current connection's handshake.
  struct Life {
    std::string run_id;                   // empty before the first handshake
    std::chrono::milliseconds uptime{0};  // counted on from the INFO reply with the local clock
  };

  RedisNativeConnection(asio::strand<asio::any_io_executor> strand, NativeConnectionConfig config);
  ~RedisNativeConnection();
  RedisNativeConnection(const RedisNativeConnection&) = delete;
  RedisNativeConnection& operator=(const RedisNativeConnection&) = delete;

  // Appends `arg` to `request`'s arguments.
  static void add(Request& request, std::string_view arg);
  // For a batch operation: the parts added so far are its keys.
  static void end_keys(Request& request) noexcept {
    request.numkeys = request.parts;
    request.key_bytes = request.payload.size();
  }
  static Request command(std::initializer_list<std::string_view> args);

  // Any thread. On the strand itself (a handler that starts the next operation), at once.
  void submit(Request&& request);
  // Like `submit`, from a thread that may outlive the AsyncLockApi (a keeper thread): returns
  // false, sending nothing, once `shutdown` has run, because the executor may be gone then.
  bool try_submit(Request&& request);
  // Fails everything pending and refuses `try_submit` from now on. For the engine's destructor.
  void shutdown();

  const redis::NativeTarget& target() const noexcept { return config_.target; }
  const asio::strand<asio::any_io_executor>& strand() const noexcept { return strand_; }
  std::string address() const;
  // On the strand: what INFO said on the current connection (`read_info` only).
  Life life() const;
  // On the strand: `life()`'s parts, without copying the run id (per reply on a hot path).
  const std::string& run_id() const noexcept { return life_.run_id; }
  std::chrono::milliseconds uptime() const;

 private:
  enum class State { kIdle, kConnecting, kHandshake, kReady };

  void submit_here(Request&& request);  // by reference: a request is moved once per hop
  void drain();
  void end_batch();
  void connect();
  void resolve(std::uint64_t generation);
  void handshake(std::uint64_t generation);
  Done handshake_step(std::uint64_t generation, ErrorKind kind, std::string what);
  void ready();
  void write(Request&& request);
  void append(Request&& request);  // to out_ and inflight_
  void close_batch();
  void complete(Request& request, redisReply* reply);
  bool has_output() const noexcept { return !out_.empty() || !batch_.empty(); }
  void flush();
  void read(std::uint64_t generation);
  void complete_replies(std::uint64_t generation);
  bool next_integer(redisReply& reply);
  void arm_reply_timer();
  void fail(ErrorKind kind, const std::string& what);
  void fail_with(const std::exception_ptr& error);

  const NativeConnectionConfig config_;
  asio::strand<asio::any_io_executor> strand_;
  asio::ip::tcp::socket socket_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  asio::steady_timer reply_timer_;
  std::mutex gate_mu_;
  bool closed_ = false;  // guarded by gate_mu_
  // Requests submitted off the strand, taken by one posted `drain` per batch (not one post per
  // request: that would cost a handler, a strand hop and a write each).
  std::mutex incoming_mu_;
  std::vector<Request> incoming_;  // guarded by incoming_mu_
  bool drain_posted_ = false;      // guarded by incoming_mu_
  // The rest only on strand_.
  State state_ = State::kIdle;
  std::uint64_t generation_ = 0;  // one per connection attempt; stale handlers see a change
  bool probed_ = false;
  bool writing_ = false;
  bool batching_ = false;  // in a handler that flushes when it ends (read, drain)
  bool flush_posted_ = false;
  bool timer_armed_ = false;
  std::vector<Request> draining_;
  std::deque<Request> queued_;    // before the connection is ready
  std::deque<Request> inflight_;  // in the output buffer or sent, oldest first
  std::size_t unsent_ = 0;        // the newest `unsent_` of inflight_ are only in out_
  std::vector<Request> batch_;    // batch operations not yet in out_ (written by close_batch)
  std::string op_letters_;        // close_batch's scratch
  std::string out_;
  std::string writing_buf_;
  std::vector<std::string> sha_;
  std::size_t loaded_ = 0;  // scripts loaded in this handshake
  Life life_;
  Clock::time_point info_at_{};
  redisReader* reader_ = nullptr;
  std::array<char, 64 * 1024> buf_{};
  std::size_t read_ = 0;    // bytes in buf_ from the last read
  std::size_t parsed_ = 0;  // of which taken (as an integer reply, or fed to hiredis)
};

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_ASYNC_REDIS_NATIVE_CONNECTION_HPP_
