// SPDX-License-Identifier: MIT
// One pipelined Redis connection on an asio strand: AsyncLockApi's native redis:// and
// redlock:// paths write requests and complete replies here, many in flight at once.
#include "async/redis_native_connection.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <charconv>
#include <cstring>
#include <system_error>
#include <type_traits>
#include <utility>

#include "async/blocking_pool.hpp"
#include "redis/redis_scripts.hpp"
#include "redis/redlock_quorum.hpp"

namespace lockkit::detail {

namespace {

using asio::ip::tcp;

// Appends `n` in decimal (no allocation, unlike std::to_string).
void append_number(std::string& out, std::size_t n) {
  char digits[24];
  const char* end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, static_cast<std::size_t>(end - digits));
}

// Appends `s` as a RESP bulk string, growing `out` once.
template <class Out>
char* grow(Out& out, std::size_t n) {
  if constexpr (std::is_same_v<Out, std::string>) {
    const std::size_t at = out.size();
    out.resize(at + n);
    return out.data() + at;
  } else {
    return out.grow(n);
  }
}

template <class Out>
void append_bulk(Out& out, std::string_view s) {
  char head[24] = {'$'};
  char* end = std::to_chars(head + 1, head + sizeof head - 2, s.size()).ptr;
  *end++ = '\r';
  *end++ = '\n';
  const std::size_t head_size = static_cast<std::size_t>(end - head);
  char* p = grow(out, head_size + s.size() + 2);
  std::memcpy(p, head, head_size);
  if (!s.empty()) std::memcpy(p + head_size, s.data(), s.size());
  p[head_size + s.size()] = '\r';
  p[head_size + s.size() + 1] = '\n';
}

}  // namespace

RedisNativeConnection::RedisNativeConnection(asio::strand<asio::any_io_executor> strand,
                                             NativeConnectionConfig config)
    : config_(std::move(config)),
      strand_(std::move(strand)),
      socket_(strand_),
      resolver_(strand_),
      connect_timer_(strand_),
      reply_timer_(strand_),
      sha_(config_.scripts.size()) {}

RedisNativeConnection::~RedisNativeConnection() {
  if (reader_) redisReaderFree(reader_);
}

void RedisNativeConnection::add(Request& request, std::string_view arg) {
  append_bulk(request.payload, arg);
  ++request.parts;
}

RedisNativeConnection::Request RedisNativeConnection::command(
    std::initializer_list<std::string_view> args) {
  Request request;
  for (auto arg : args) add(request, arg);
  return request;
}

void RedisNativeConnection::submit(Request&& request) {
  if (strand_.running_in_this_thread()) {
    submit_here(std::move(request));
    return;
  }
  {
    std::lock_guard<std::mutex> guard(incoming_mu_);
    incoming_.push_back(std::move(request));
    if (drain_posted_) return;
    drain_posted_ = true;
  }
  asio::post(strand_, [self = shared_from_this()] { self->drain(); });
}

// Takes every request submitted since the last drain, in submission order, and writes them
// together.
void RedisNativeConnection::drain() {
  {
    std::lock_guard<std::mutex> guard(incoming_mu_);
    draining_.swap(incoming_);
    drain_posted_ = false;
  }
  batching_ = true;
  for (auto& request : draining_) submit_here(std::move(request));
  draining_.clear();  // keeps its capacity for the next batch
  end_batch();
}

// Writes what the handler that just ended appended, if no write is under way (else that
// write's completion does).
void RedisNativeConnection::end_batch() {
  batching_ = false;
  if (!writing_ && has_output() && state_ != State::kIdle) flush();
}

bool RedisNativeConnection::try_submit(Request&& request) {
  std::lock_guard<std::mutex> guard(gate_mu_);
  if (closed_) return false;
  submit(std::move(request));
  return true;
}

void RedisNativeConnection::shutdown() {
  std::lock_guard<std::mutex> guard(gate_mu_);
  closed_ = true;
  asio::post(strand_, [self = shared_from_this()] {
    self->fail(ErrorKind::kUnavailable, "the AsyncLockApi is gone");
  });
}

std::string RedisNativeConnection::address() const {
  return config_.target.host + ":" + std::to_string(config_.target.port);
}

RedisNativeConnection::Life RedisNativeConnection::life() const {
  Life life = life_;
  if (!life.run_id.empty()) {
    life.uptime += std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - info_at_);
  }
  return life;
}

std::chrono::milliseconds RedisNativeConnection::uptime() const {
  if (life_.run_id.empty()) return life_.uptime;
  return life_.uptime +
         std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - info_at_);
}

void RedisNativeConnection::submit_here(Request&& request) {
  if (state_ == State::kReady) {
    write(std::move(request));
    return;
  }
  queued_.push_back(std::move(request));
  if (state_ == State::kIdle) connect();
}

// The first connection goes through the blocking client once (`probe`), so that the checks it
// makes at connect (eviction policy, credentials) apply here too; then our own socket.
void RedisNativeConnection::connect() {
  state_ = State::kConnecting;
  const std::uint64_t generation = ++generation_;
  if (!probed_ && config_.probe) {
    asio::post(blocking_pool(), [self = shared_from_this(), generation]() mutable {
      std::exception_ptr error;
      try {
        self->config_.probe();
      } catch (...) {
        error = std::current_exception();
      }
      auto& strand = self->strand_;
      // Held until post() has returned: the handler may run at once and the executor's context
      // go while post() still destroys its copy of the strand.
      const auto keep = asio::make_work_guard(strand.get_inner_executor());
      asio::post(strand, [self = std::move(self), generation, error]() mutable {
        if (generation != self->generation_) return;
        if (error) {
          self->fail_with(error);
          return;
        }
        self->probed_ = true;
        self->resolve(generation);
      });
    });
    return;
  }
  resolve(generation);
}

void RedisNativeConnection::resolve(std::uint64_t generation) {
  connect_timer_.expires_after(config_.target.connect_timeout);
  connect_timer_.async_wait([self = shared_from_this(), generation](const std::error_code& ec) {
    if (ec || generation != self->generation_ || self->state_ != State::kConnecting) return;
    self->fail(ErrorKind::kTimeout,
               "connect " + self->address() + " timed out after " +
                   std::to_string(self->config_.target.connect_timeout.count()) + "ms");
  });
  resolver_.async_resolve(
      config_.target.host, std::to_string(config_.target.port),
      [self = shared_from_this(), generation](const std::error_code& ec,
                                              tcp::resolver::results_type results) {
        if (generation != self->generation_) return;
        if (ec) {
          self->fail(ErrorKind::kUnavailable, "resolve " + self->address() + ": " + ec.message());
          return;
        }
        asio::async_connect(self->socket_, results,
                            [self, generation](const std::error_code& cec, const tcp::endpoint&) {
                              if (generation != self->generation_) return;
                              if (cec) {
                                self->fail(ErrorKind::kUnavailable,
                                           "connect " + self->address() + ": " + cec.message());
                                return;
                              }
                              self->connect_timer_.cancel();
                              self->handshake(generation);
                            });
      });
}

void RedisNativeConnection::handshake(std::uint64_t generation) {
  std::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  if (reader_) redisReaderFree(reader_);
  reader_ = redisReaderCreate();
  parsed_ = read_ = 0;
  state_ = State::kHandshake;
  loaded_ = 0;
  read(generation);
  const auto& target = config_.target;
  // Credentials and database first; then the scripts' SHA1s, which every later EVALSHA needs.
  if (target.password) {
    Request auth = target.user.empty() ? command({"AUTH", *target.password})
                                       : command({"AUTH", target.user, *target.password});
    auth.done = handshake_step(generation, ErrorKind::kAuth, "AUTH refused");
    write(std::move(auth));
  }
  if (target.db != 0) {
    Request select = command({"SELECT", std::to_string(target.db)});
    select.done = handshake_step(generation, ErrorKind::kProtocol, "SELECT refused");
    write(std::move(select));
  }
  Request name = command({"CLIENT", "SETNAME", config_.name});
  name.done = [](std::exception_ptr, redisReply*) {};
  write(std::move(name));
  // Ready once every script is loaded (and INFO read): until then requests queue.
  const std::size_t steps = config_.scripts.size() + (config_.read_info ? 1 : 0);
  auto step_done = [self = shared_from_this(), generation, steps] {
    if (++self->loaded_ == steps) self->ready();
  };
  for (std::size_t script = 0; script < config_.scripts.size(); ++script) {
    Request load = command({"SCRIPT", "LOAD", config_.scripts[script]});
    load.done = [self = shared_from_this(), generation, script, step_done](std::exception_ptr error,
                                                                           redisReply* reply) {
      if (error || generation != self->generation_) return;
      if (reply->type != REDIS_REPLY_STRING) {
        self->fail(ErrorKind::kProtocol, "SCRIPT LOAD refused");
        return;
      }
      self->sha_[script].assign(reply->str, reply->len);
      step_done();
    };
    write(std::move(load));
  }
  if (config_.read_info) {
    Request info = command({"INFO", "server"});
    info.done = [self = shared_from_this(), generation, step_done](std::exception_ptr error,
                                                                   redisReply* reply) {
      if (error || generation != self->generation_) return;
      if (reply->type != REDIS_REPLY_STRING) {
        self->fail(ErrorKind::kProtocol, "INFO refused");
        return;
      }
      const auto at = Clock::now();
      auto server = redis::parse_server_info(std::string_view(reply->str, reply->len));
      self->life_ = Life{std::move(server.run_id), server.uptime};
      self->info_at_ = at;
      step_done();
    };
    write(std::move(info));
  }
  if (steps == 0) ready();
}

RedisNativeConnection::Done RedisNativeConnection::handshake_step(std::uint64_t generation,
                                                                  ErrorKind kind,
                                                                  std::string what) {
  return [self = shared_from_this(), generation, kind, what](std::exception_ptr error,
                                                             redisReply* reply) {
    if (error || generation != self->generation_) return;
    if (reply->type == REDIS_REPLY_ERROR) self->fail(kind, what);
  };
}

void RedisNativeConnection::ready() {
  state_ = State::kReady;
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& request : queued) write(std::move(request));
}

void RedisNativeConnection::write(Request&& request) {
  if (request.batch_op != 0) {
    batch_.push_back(std::move(request));
    if (batch_.size() == redis::kMaxBatchOps) close_batch();
  } else {
    close_batch();  // what was written before goes out before
    append(std::move(request));
  }
  if (writing_ || batching_ || flush_posted_) return;
  // Outside a batch (a handshake step, a timer's or another handler's request): written at the
  // end of this turn, together with whatever else the turn appends.
  flush_posted_ = true;
  // Not tied to this connection: a failure empties out_, so what it finds there is the next
  // connection's (its handshake).
  asio::post(strand_, [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (!self->writing_ && self->has_output()) self->flush();
  });
}

void RedisNativeConnection::append(Request&& request) {
  const std::size_t parts = request.parts + (request.script == kNoScript ? 0 : 2);
  out_ += '*';
  append_number(out_, parts);
  out_ += "\r\n";
  if (request.script != kNoScript) {
    const auto script = static_cast<std::size_t>(request.script);
    append_bulk(out_, request.eval ? "EVAL" : "EVALSHA");
    append_bulk(out_, request.eval ? std::string_view(config_.scripts[script])
                                   : std::string_view(sha_[script]));
  }
  out_.append(request.payload.data(), request.payload.size());
  request.deadline = Clock::now() + config_.target.command_timeout;
  inflight_.push_back(std::move(request));
  ++unsent_;
  arm_reply_timer();
}

// Turns the batch operations written since the last call into one run of the batch script:
// its keys, the letters naming the operations, then their arguments, each in order.
void RedisNativeConnection::close_batch() {
  if (batch_.empty()) return;
  Request run;
  run.script = config_.batch_script;
  std::size_t numkeys = 0, bytes = 0, parts = 0;
  for (const Request& item : batch_) {
    numkeys += item.numkeys;
    bytes += item.payload.size();
    parts += item.parts;
    run.maybe_write = run.maybe_write || item.maybe_write;
  }
  run.payload.reserve(bytes + batch_.size() + 64);
  char digits[24];
  const char* end = std::to_chars(digits, digits + sizeof digits, numkeys).ptr;
  add(run, std::string_view(digits, static_cast<std::size_t>(end - digits)));
  for (const Request& item : batch_) {
    std::memcpy(run.payload.grow(item.key_bytes), item.payload.data(), item.key_bytes);
  }
  std::string& ops = op_letters_;
  ops.clear();
  for (const Request& item : batch_) ops.push_back(item.batch_op);
  add(run, ops);
  for (const Request& item : batch_) {
    const std::size_t n = item.payload.size() - item.key_bytes;
    std::memcpy(run.payload.grow(n), item.payload.data() + item.key_bytes, n);
  }
  run.parts = parts + 2;
  run.items = std::move(batch_);
  batch_.clear();
  append(std::move(run));
}

// Hands a reply to its request, or a batch's replies to its operations.
void RedisNativeConnection::complete(Request& request, redisReply* reply) {
  if (request.items.empty()) {
    request.done(nullptr, reply);
    return;
  }
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == request.items.size()) {
    for (std::size_t i = 0; i < request.items.size(); ++i) {
      request.items[i].done(nullptr, reply->element[i]);
    }
    return;
  }
  // Refused as a whole (the script did not run: out of memory before it started, a busy
  // server, a replica): every operation gets that reply, as it would have alone.
  for (Request& item : request.items) item.done(nullptr, reply);
}

void RedisNativeConnection::flush() {
  close_batch();
  writing_buf_.swap(out_);
  out_.clear();
  unsent_ = 0;
  writing_ = true;
  asio::async_write(socket_, asio::buffer(writing_buf_),
                    [self = shared_from_this(), generation = generation_](const std::error_code& ec,
                                                                          std::size_t) {
                      if (generation != self->generation_) return;
                      self->writing_ = false;
                      if (ec) {
                        self->fail(ErrorKind::kUnavailable, "write: " + ec.message());
                        return;
                      }
                      if (self->has_output()) self->flush();
                    });
}

void RedisNativeConnection::read(std::uint64_t generation) {
  socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this(), generation](
                                                  const std::error_code& ec, std::size_t n) {
    if (generation != self->generation_) return;
    if (ec) {
      self->fail(ErrorKind::kUnavailable, ec == asio::error::eof ? "connection closed by the server"
                                                                 : "read: " + ec.message());
      return;
    }
    self->parsed_ = 0;
    self->read_ = n;
    self->complete_replies(generation);
  });
}

// Completes at most kRepliesPerTurn of the replies read, then lets the executor run what they
// started (the callers' handlers, which submit the next requests, and the write of those)
// before the next slice: the server gets new work while this side goes on with the rest,
// rather than idling until every reply of a large read was handled. Reads again once all are.
void RedisNativeConnection::complete_replies(std::uint64_t generation) {
  // Requests the callbacks submit go out in one write after the slice.
  batching_ = true;
  for (std::size_t done = 0;; ++done) {
    if (done == kRepliesPerTurn) {
      end_batch();
      arm_reply_timer();
      asio::post(strand_, [self = shared_from_this(), generation] {
        if (generation == self->generation_) self->complete_replies(generation);
      });
      return;
    }
    redisReply integer{};
    std::unique_ptr<redisReply, void (*)(void*)> owned(nullptr, freeReplyObject);
    redisReply* reply = &integer;
    if (!next_integer(integer)) {
      // Everything else (and an integer split across reads) goes through hiredis's reader.
      if (parsed_ < read_) {
        if (redisReaderFeed(reader_, buf_.data() + parsed_, read_ - parsed_) != REDIS_OK) {
          fail(ErrorKind::kProtocol, "unreadable reply");
          return;
        }
        parsed_ = read_;
      } else if (reader_->pos == reader_->len) {
        // Nothing unread here or there: not asked, hiredis would start a reply of no bytes
        // (and keep every later integer from the direct path).
        break;
      }
      void* raw = nullptr;
      if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
        fail(ErrorKind::kProtocol, "unreadable reply");
        return;
      }
      if (!raw) break;
      owned.reset(static_cast<redisReply*>(raw));
      reply = owned.get();
    }
    if (inflight_.empty()) {
      fail(ErrorKind::kProtocol, "a reply nobody asked for");
      return;
    }
    Request request = std::move(inflight_.front());
    inflight_.pop_front();
    if (reply->type == REDIS_REPLY_ERROR && request.script != kNoScript && !request.eval &&
        std::string_view(reply->str, reply->len).starts_with("NOSCRIPT")) {
      // Flushed since we connected (SCRIPT FLUSH): EVAL runs it and caches it again.
      request.eval = true;
      write(std::move(request));
      continue;
    }
    complete(request, reply);
    if (generation != generation_) return;  // the callback failed the connection
  }
  end_batch();
  arm_reply_timer();
  read(generation);
}

// Reads an integer reply (":123\r\n", what the lock scripts answer) straight from buf_, without
// hiredis's allocation per reply, when it is whole there and hiredis holds nothing unread.
bool RedisNativeConnection::next_integer(redisReply& reply) {
  if (parsed_ >= read_ || buf_[parsed_] != ':') return false;
  if (reader_->pos != reader_->len || reader_->ridx != -1) return false;
  const char* begin = buf_.data() + parsed_ + 1;
  const char* end = buf_.data() + read_;
  const char* cr = static_cast<const char*>(std::memchr(begin, '\r', end - begin));
  if (!cr || cr + 1 >= end || cr[1] != '\n') return false;
  long long value = 0;
  const auto [ptr, ec] = std::from_chars(begin, cr, value);
  if (ec != std::errc() || ptr != cr || ptr == begin) return false;  // hiredis says what it is
  reply.type = REDIS_REPLY_INTEGER;
  reply.integer = value;
  parsed_ = static_cast<std::size_t>(cr + 2 - buf_.data());
  return true;
}

// One timer for the oldest request: replies come in order, so if it has none by its deadline
// the connection is stuck, and everything on it fails.
void RedisNativeConnection::arm_reply_timer() {
  if (timer_armed_ || inflight_.empty()) return;
  timer_armed_ = true;
  reply_timer_.expires_at(inflight_.front().deadline);
  reply_timer_.async_wait([self = shared_from_this(),
                           generation = generation_](const std::error_code& ec) {
    if (generation != self->generation_) return;
    self->timer_armed_ = false;
    if (ec) return;
    if (!self->inflight_.empty() && self->inflight_.front().deadline <= Clock::now()) {
      self->fail(
          ErrorKind::kTimeout,
          "no reply within " + std::to_string(self->config_.target.command_timeout.count()) + "ms");
      return;
    }
    self->arm_reply_timer();
  });
}

// Ends the connection; every request on it or waiting for it fails. A request that was
// (perhaps) sent and may write is in doubt.
void RedisNativeConnection::fail(ErrorKind kind, const std::string& what) {
  ++generation_;
  state_ = State::kIdle;
  timer_armed_ = false;
  writing_ = false;
  batching_ = false;  // the handler that failed returns without ending its batch
  std::error_code ignored;
  socket_.close(ignored);
  resolver_.cancel();
  connect_timer_.cancel();
  reply_timer_.cancel();
  out_.clear();
  auto inflight = std::move(inflight_);
  auto queued = std::move(queued_);
  auto batch = std::move(batch_);
  inflight_.clear();
  queued_.clear();
  batch_.clear();
  const std::size_t sent = inflight.size() - std::min(unsent_, inflight.size());
  unsent_ = 0;
  auto fail_one = [&](Request& request, bool was_sent) {
    const bool doubt = was_sent && request.maybe_write;
    request.done(std::make_exception_ptr(BackendError(
                     config_.backend, doubt ? ErrorKind::kInDoubt : kind,
                     doubt ? what + "; the lock may have been taken (in doubt)" : what)),
                 nullptr);
  };
  std::size_t i = 0;
  for (auto& request : inflight) {
    const bool was_sent = i++ < sent;
    if (request.items.empty()) {
      fail_one(request, was_sent);
    } else {
      for (auto& item : request.items) fail_one(item, was_sent);
    }
  }
  for (auto& request : batch) fail_one(request, false);
  for (auto& request : queued) fail_one(request, false);
}

// Fails the requests waiting for a connection with the probe's error. Each gets an exception
// of its own: nothing a handler sees is shared with this thread.
void RedisNativeConnection::fail_with(const std::exception_ptr& error) {
  ++generation_;
  state_ = State::kIdle;
  ErrorKind kind = ErrorKind::kUnavailable;
  std::string what = "connect failed";
  try {
    std::rethrow_exception(error);
  } catch (const BackendError& e) {
    kind = e.kind();
    what = e.what();
    const std::string head = std::string(e.backend()) + ": ";
    if (what.starts_with(head)) what.erase(0, head.size());
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& request : queued) {
    request.done(std::make_exception_ptr(BackendError(config_.backend, kind, what)), nullptr);
  }
}

}  // namespace lockkit::detail
