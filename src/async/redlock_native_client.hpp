// SPDX-License-Identifier: MIT
// Internal: AsyncLockApi's native redlock:// path: one pipelined connection per node, all
// driven by the executor, the quorum decided as the blocking store decides it.
#ifndef LOCKKIT_SRC_ASYNC_REDLOCK_NATIVE_CLIENT_HPP_
#define LOCKKIT_SRC_ASYNC_REDLOCK_NATIVE_CLIENT_HPP_

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "async/redis_native_client.hpp"
#include "lockkit/async.hpp"
#include "lockkit/lock.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit::detail {

class RedlockNativeClient;

// Returns the native client for `api` when it is the core's LockApi over a redlock:// store
// whose nodes are all plain TCP, else null: the caller then uses the blocking pool.
std::shared_ptr<RedlockNativeClient> make_redlock_native(const asio::any_io_executor& ex,
                                                         const std::shared_ptr<LockApi>& api);

// Starts one acquire attempt on every node at once; `done` runs once with `op`, on the client's
// strand (the executor) or, for a refused key, on the calling thread, as soon as the outcome is
// decided.
void redlock_native_try_acquire(const std::shared_ptr<RedlockNativeClient>& client, std::string key,
                                std::chrono::milliseconds ttl,
                                std::shared_ptr<AsyncAcquireOperation> op, NativeAcquireDone done);

// Releases `lock` on every node natively if it was granted natively and is still held, and
// returns true, having taken `sink`, which then completes once on the strand. Returns false
// (leaving `sink` with the caller, uncalled) otherwise.
bool redlock_native_release(const std::shared_ptr<RedlockNativeClient>& client, Lock& lock,
                            std::shared_ptr<AsyncBoolSink>& sink);

// Closes the connections; pending operations fail. For the engine's destructor.
void redlock_native_shutdown(const std::shared_ptr<RedlockNativeClient>& client) noexcept;

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_ASYNC_REDLOCK_NATIVE_CLIENT_HPP_
