// SPDX-License-Identifier: MIT
// The bounded connection pool of the postgres:// backend.
#include "postgres/pg_pool.hpp"

#include <string>

namespace lockkit::detail::pg {

Pool::~Pool() = default;

Pool::Checkout Pool::checkout(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!idle_.empty()) {
      // LIFO: the most recently used connection is the likeliest to be warm and alive.
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      lock.unlock();
      if (conn->alive()) return Checkout{std::move(conn), false};
      conn.reset();  // closed by the server (restart, idle termination): drop it, outside mu_
      lock.lock();
      --open_;
      continue;
    }
    if (open_ < max_) {
      ++open_;
      lock.unlock();
      try {
        return Checkout{connect_(), true};  // the slot is ours; connect without the mutex
      } catch (...) {
        lock.lock();
        --open_;
        cv_.notify_one();
        throw;
      }
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= max_) {
      throw CallError{ErrorKind::kTimeout,
                      "all " + std::to_string(max_) + " pooled connections stayed busy",
                      false,
                      false,
                      {}};
    }
  }
}

void Pool::give_back(std::unique_ptr<Connection> conn) {
  {
    std::lock_guard<std::mutex> guard(mu_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

void Pool::discard(std::unique_ptr<Connection> conn) noexcept {
  conn.reset();
  {
    std::lock_guard<std::mutex> guard(mu_);
    --open_;
  }
  cv_.notify_one();
}

}  // namespace lockkit::detail::pg
