// SPDX-License-Identifier: MIT
// Internal: what lockkit::async's native PostgreSQL path needs from a postgres:// store, so that
// it runs the sync store's statements on connections the executor drives (free of libpq types).
#ifndef LOCKKIT_SRC_POSTGRES_PG_NATIVE_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_NATIVE_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/store_failure.hpp"
#include "lockkit/errors.hpp"

namespace lockkit::detail::pg {

// The operations the native path runs: the store's own statements for them.
enum class NativeOp { kAcquire, kRelease, kExtend };

// The answer to one request.
struct NativeReply {
  // acquire: granted; release: the token held the key and the lease was still unexpired;
  // extend: extended.
  bool ok = false;
  std::uint64_t fence = 0;  // acquire: the fence of the grant
};

// One connection in libpq's non-blocking pipeline mode, driven by a caller that waits for its
// socket: `send` requests, `flush` when writable, `consume` when readable, `next` in order.
// Thread safety: one thread at a time.
class NativeConnection {
 public:
  virtual ~NativeConnection() = default;
  // Returns the socket to wait on.
  virtual int socket() const noexcept = 0;
  // Returns true if this process did not open it (inherited across fork()): never use it.
  virtual bool inherited() const noexcept = 0;
  // Queues one request (its own transaction). Throws `StoreFailure` (broken, not sent).
  virtual void send(NativeOp op, std::string_view key, std::string_view token,
                    std::chrono::milliseconds ttl) = 0;
  // Returns true once everything queued is written. Throws `StoreFailure` (broken).
  virtual bool flush() = 0;
  // Reads what arrived. Throws `StoreFailure` (broken) if the connection is gone.
  virtual void consume() = 0;
  // Returns false if the oldest request's answer is not complete yet; otherwise fills `reply`
  // and returns true, or throws `StoreFailure` for that request (not broken: the others go on)
  // or for the connection (broken: every request on it is lost).
  virtual bool next(NativeReply& reply) = 0;
  // Asks the server to cancel the statement it is running on this connection; returns at once.
  virtual void cancel() noexcept = 0;
};

// What the native path uses of the store's options.
struct NativeConfig {
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
  std::size_t connections = 4;  // native connections to keep, besides the store's pool
  // After a request's deadline, how long to wait for the server to confirm a cancel.
  std::chrono::milliseconds cancel_grace{1000};
};

// Implemented by the postgres:// store; reached by dynamic_cast from its `LeaseStore`.
class NativeAsyncSource {
 public:
  virtual NativeConfig native_config() const noexcept = 0;
  // Opens a connection ready for `send` (blocks up to the connect timeout; checks or creates
  // the schema first, as the store's first call does). Throws `StoreFailure`.
  virtual std::unique_ptr<NativeConnection> native_connect() = 0;
  // Returns the error the store itself would throw for `op` on `key` failing with `e` (an
  // acquire that may have applied: in doubt).
  virtual BackendError native_error(NativeOp op, std::string_view key,
                                    const StoreFailure& e) const = 0;

 protected:
  ~NativeAsyncSource() = default;
};

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_NATIVE_HPP_
