// SPDX-License-Identifier: MIT
// Internal: AsyncLockApi's native postgres:// path: a few pipelined libpq connections whose
// sockets the executor watches.
#ifndef LOCKKIT_SRC_ASYNC_POSTGRES_NATIVE_CLIENT_HPP_
#define LOCKKIT_SRC_ASYNC_POSTGRES_NATIVE_CLIENT_HPP_

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "lockkit/async.hpp"
#include "lockkit/lock.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit::detail {

class PostgresNativeClient;

// Returns the native client for `api` when it is the core's LockApi over a postgres:// store,
// else null: the caller then uses the blocking pool.
std::shared_ptr<PostgresNativeClient> make_postgres_native(const asio::any_io_executor& ex,
                                                           const std::shared_ptr<LockApi>& api);

// Starts one acquire attempt of `op` and returns true, having taken `op`; `done` then runs once
// with it, on the client's strand or on a pool thread (an in-doubt attempt's cleanup). Returns
// false, leaving `op` to the caller, in a process forked after the client was made: its
// connections belong to the parent, and the blocking pool serves the child.
bool native_try_acquire(const std::shared_ptr<PostgresNativeClient>& client, const std::string& key,
                        std::chrono::milliseconds ttl, std::shared_ptr<AsyncAcquireOperation>& op,
                        void (*done)(std::shared_ptr<AsyncAcquireOperation> op,
                                     std::exception_ptr error, std::optional<Lock> lock));

// Releases `lock` natively if it was granted natively and is still held, and returns true,
// having taken `sink`, which then completes once on the strand. Returns false (leaving `sink`
// with the caller, uncalled) otherwise.
bool native_release(const std::shared_ptr<PostgresNativeClient>& client, Lock& lock,
                    std::shared_ptr<AsyncBoolSink>& sink);

// Closes the connections; pending operations fail. For the engine's destructor.
void native_shutdown(const std::shared_ptr<PostgresNativeClient>& client) noexcept;

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_ASYNC_POSTGRES_NATIVE_CLIENT_HPP_
