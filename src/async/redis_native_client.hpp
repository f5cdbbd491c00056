// SPDX-License-Identifier: MIT
// Internal: AsyncLockApi's native redis:// path: one pipelined connection driven by the executor.
#ifndef LOCKKIT_SRC_ASYNC_REDIS_NATIVE_CLIENT_HPP_
#define LOCKKIT_SRC_ASYNC_REDIS_NATIVE_CLIENT_HPP_

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lockkit/async.hpp"
#include "lockkit/lock.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit::detail {

class RedisNativeClient;

// Returns the native client for `api` when it is the core's LockApi over a plain-TCP, single
// server redis:// store, else null: the caller then uses the blocking pool.
std::shared_ptr<RedisNativeClient> make_redis_native(const asio::any_io_executor& ex,
                                                     const std::shared_ptr<LockApi>& api);

// Receives the outcome of one native acquire attempt of `op` (a plain function and the
// operation, not a std::function: one allocation less per attempt).
using NativeAcquireDone = void (*)(std::shared_ptr<AsyncAcquireOperation> op,
                                   std::exception_ptr error, std::optional<Lock> lock);

// Starts one acquire attempt; `done` runs once with `op`, on the client's strand (the executor)
// or, for a refused key, on the calling thread. `key` is `op`'s own: it must stay valid while
// `op` lives (the attempt holds `op` until it calls `done`).
void native_try_acquire(const std::shared_ptr<RedisNativeClient>& client, std::string_view key,
                        std::chrono::milliseconds ttl, std::shared_ptr<AsyncAcquireOperation> op,
                        NativeAcquireDone done);

// Releases `lock` natively if it was granted natively and is still held, and returns true,
// having taken `sink`, which then completes once on the strand. Returns false (leaving `sink`
// with the caller, uncalled) otherwise.
bool native_release(const std::shared_ptr<RedisNativeClient>& client, Lock& lock,
                    std::shared_ptr<AsyncBoolSink>& sink);

// Closes the connection; pending operations fail. For the engine's destructor.
void native_shutdown(const std::shared_ptr<RedisNativeClient>& client) noexcept;

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_ASYNC_REDIS_NATIVE_CLIENT_HPP_
