// SPDX-License-Identifier: MIT
// Internal: a bounded pool of libpq connections that never connects while holding its mutex.
#ifndef LOCKKIT_SRC_POSTGRES_PG_POOL_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_POOL_HPP_

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "postgres/pg_connection.hpp"

namespace lockkit::detail::pg {

// Hands out at most `max` connections. Idle ones are checked before reuse and dropped if the
// server closed them; new ones are opened outside the mutex by `connect`.
// Thread safety: safe to share.
class Pool {
 public:
  using Connect = std::function<std::unique_ptr<Connection>()>;

  Pool(std::size_t max, Connect connect) : max_(max), connect_(std::move(connect)) {
    idle_.reserve(max);  // give_back never allocates
  }
  ~Pool();

  struct Checkout {
    std::unique_ptr<Connection> conn;
    bool fresh = false;  // opened for this checkout (not reused)
  };
  // Returns a live connection: an idle one, or a new one if fewer than `max` are open. Waits
  // until `deadline` for one to come back, then throws `CallError` (kind timeout). Throws what
  // `connect` throws.
  Checkout checkout(Deadline deadline);
  // Returns a healthy connection for reuse.
  void give_back(std::unique_ptr<Connection> conn);
  // Drops a broken connection (closed outside the mutex) and frees its slot.
  void discard(std::unique_ptr<Connection> conn) noexcept;

 private:
  const std::size_t max_;
  const Connect connect_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
  std::size_t open_ = 0;                           // guarded by mu_; idle + checked out
};

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_POOL_HPP_
