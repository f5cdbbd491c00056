// SPDX-License-Identifier: MIT
// The bounded connection pool of the postgres:// backend, and how it survives fork().
#include "postgres/pg_pool.hpp"

#include <pthread.h>
#include <unistd.h>

#include <set>
#include <string>

namespace lockkit::detail::pg {

// Every live pool, so that fork() can take all their mutexes first: a child then never
// inherits a mutex locked by a thread it does not have.
struct PoolForkGuard {
  static PoolForkGuard& get() {
    static PoolForkGuard* g = [] {
      auto* guard = new PoolForkGuard;  // never destroyed: atfork handlers outlive statics
      ::pthread_atfork(&prepare, &after, &after);
      return guard;
    }();
    return *g;
  }
  static void prepare() {
    PoolForkGuard& g = get();
    g.mu.lock();
    for (Pool* p : g.pools) p->mu_.lock();
  }
  static void after() {
    PoolForkGuard& g = get();
    for (Pool* p : g.pools) p->mu_.unlock();
    g.mu.unlock();
  }
  // Condition variables the parent's threads may have waited on at fork(): destroying or
  // signalling one could block forever, so they stay here, reachable and untouched.
  void retire(std::condition_variable* cv) {
    std::lock_guard<std::mutex> guard(retired_mu);  // not `mu`: callers hold a pool's mutex
    retired.push_back(cv);
  }
  std::mutex retired_mu;
  std::vector<std::condition_variable*> retired;  // guarded by retired_mu
  std::mutex mu;
  std::set<Pool*> pools;  // guarded by mu
};

Pool::Pool(std::size_t max, Connect connect)
    : max_(max), connect_(std::move(connect)), cv_(new std::condition_variable), pid_(::getpid()) {
  idle_.reserve(max);  // give_back never allocates
  PoolForkGuard& g = PoolForkGuard::get();
  std::lock_guard<std::mutex> guard(g.mu);
  g.pools.insert(this);
}

Pool::~Pool() {
  {
    PoolForkGuard& g = PoolForkGuard::get();
    std::lock_guard<std::mutex> guard(g.mu);
    g.pools.erase(this);
  }
  std::lock_guard<std::mutex> guard(mu_);
  if (pid_ == ::getpid()) {
    delete cv_;
  } else {
    PoolForkGuard::get().retire(cv_);
  }
  // Idle connections close with `idle_`; inherited ones detach from their socket first.
}

void Pool::adopt_after_fork(std::vector<std::unique_ptr<Connection>>& inherited) {
  // Connections checked out at fork() belong to threads this process does not have: they are
  // never given back here, so the count starts from zero.
  for (auto& c : idle_) inherited.push_back(std::move(c));
  idle_.clear();
  open_ = 0;
  pid_ = ::getpid();
  PoolForkGuard::get().retire(cv_);
  cv_ = new std::condition_variable;
}

Pool::Checkout Pool::checkout(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (pid_ != ::getpid()) {
    std::vector<std::unique_ptr<Connection>> inherited;
    adopt_after_fork(inherited);
    lock.unlock();
    inherited.clear();  // each detaches from the shared socket before closing
    lock.lock();
  }
  while (true) {
    if (!idle_.empty()) {
      // LIFO: the most recently used connection is the likeliest to be warm and alive.
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      lock.unlock();
      if (!conn->inherited() && conn->alive()) return Checkout{std::move(conn), false};
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
        cv_->notify_one();
        throw;
      }
    }
    if (cv_->wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= max_) {
      throw StoreFailure{ErrorKind::kTimeout,
                         "all " + std::to_string(max_) + " pooled connections stayed busy",
                         false,
                         false,
                         {}};
    }
  }
}

void Pool::give_back(std::unique_ptr<Connection> conn) {
  std::lock_guard<std::mutex> guard(mu_);
  if (conn->inherited()) return;  // counted by the process that forked (cannot happen here)
  idle_.push_back(std::move(conn));
  cv_->notify_one();  // under the mutex: `cv_` may be replaced after a fork
}

void Pool::discard(std::unique_ptr<Connection> conn) noexcept {
  bool ours = !conn->inherited();
  conn.reset();
  std::lock_guard<std::mutex> guard(mu_);
  if (!ours) return;
  --open_;
  cv_->notify_one();
}

}  // namespace lockkit::detail::pg
