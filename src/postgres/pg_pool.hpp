// SPDX-License-Identifier: MIT
// Internal: a bounded pool of libpq connections that never connects while holding its mutex.
#ifndef LOCKKIT_SRC_POSTGRES_PG_POOL_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_POOL_HPP_

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "postgres/pg_connection.hpp"

namespace lockkit::detail::pg {

// Hands out at most `max` connections. Idle ones are checked before reuse and dropped if the
// server closed them; new ones are opened outside the mutex by `connect`. After fork(), the
// first checkout in the new process drops every connection it inherited (without a word to
// the server: they belong to the other process) and starts afresh.
// Thread safety: safe to share; safe across fork() (its mutex is never held across one).
class Pool {
 public:
  using Connect = std::function<std::unique_ptr<Connection>()>;

  Pool(std::size_t max, Connect connect);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  struct Checkout {
    std::unique_ptr<Connection> conn;
    bool fresh = false;  // opened for this checkout (not reused)
  };
  // Returns a live connection: an idle one, or a new one if fewer than `max` are open. Waits
  // until `deadline` for one to come back, then throws `StoreFailure` (kind timeout). Throws what
  // `connect` throws.
  Checkout checkout(Deadline deadline);
  // Returns a healthy connection for reuse.
  void give_back(std::unique_ptr<Connection> conn);
  // Drops a broken connection (closed outside the mutex) and frees its slot.
  void discard(std::unique_ptr<Connection> conn) noexcept;

 private:
  friend struct PoolForkGuard;
  // Forgets the state of the process that forked us; called with `mu_` held.
  void adopt_after_fork(std::vector<std::unique_ptr<Connection>>& inherited);

  const std::size_t max_;
  const Connect connect_;
  std::mutex mu_;
  // A pointer: threads of the parent may have been waiting on it at fork(); the child gets a
  // fresh one (the old one is never touched again).
  std::condition_variable* cv_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
  std::size_t open_ = 0;                           // guarded by mu_; idle + checked out
  pid_t pid_;                                      // guarded by mu_; the process `open_` counts
};

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_POOL_HPP_
