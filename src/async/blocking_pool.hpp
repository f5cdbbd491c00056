// SPDX-License-Identifier: MIT
// Internal: the few threads that run blocking store calls for every AsyncLockApi.
#ifndef LOCKKIT_SRC_ASYNC_BLOCKING_POOL_HPP_
#define LOCKKIT_SRC_ASYNC_BLOCKING_POOL_HPP_

#include <asio/thread_pool.hpp>
#include <cstddef>

namespace lockkit::detail {

// Store calls of stores without a native async path block a thread each. They share these
// few threads, whatever the number of AsyncLockApis and pending operations: a waiting acquire
// holds none (it waits on a timer), only an attempt in flight does.
inline constexpr std::size_t kBlockingThreads = 4;

// Returns the calling process's pool, started on first use. A forked child gets a pool of its
// own (the parent's threads are not in it); the parent's copy is abandoned there, never joined.
// Look it up for every post, never keep the reference: a child must not use its parent's.
asio::thread_pool& blocking_pool();

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_ASYNC_BLOCKING_POOL_HPP_
