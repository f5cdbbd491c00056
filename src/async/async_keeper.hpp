// SPDX-License-Identifier: MIT
// Internal: the keep-alive of an AsyncLockApi's locks on its executor (a timer there instead of
// the keeper's thread), and the native async renewal a store's async path offers.
#ifndef LOCKKIT_SRC_ASYNC_ASYNC_KEEPER_HPP_
#define LOCKKIT_SRC_ASYNC_ASYNC_KEEPER_HPP_

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/keeper.hpp"
#include "lockkit/backend.hpp"

namespace lockkit::detail {

// Renews a batch of leases of one store without blocking a thread: implemented by the `LeaseOps`
// of a native async path (redis://), found by dynamic_cast.
class AsyncRenewer {
 public:
  using Done = std::function<void(std::vector<ExtendOutcome> outcomes, std::string error)>;

  // Sends the renewals of `requests`, except those it sets in `skipped` (their lease's release
  // was sent: they are not renewed). Returns false if it sent none (nothing is called then).
  // Otherwise `done` runs once with every request's outcome (kFailed for those skipped), on the
  // executor, or at once on this thread if no request could be sent after all.
  virtual bool renew_async(std::span<const ExtendRequest> requests, std::span<char> skipped,
                           Done done) = 0;
  // Returns how long a reply can take at most (then its request fails): a holder whose thread
  // would read it waits no longer.
  virtual std::chrono::steady_clock::duration reply_bound() const noexcept = 0;

 protected:
  ~AsyncRenewer() = default;
};

class AsyncKeeper;

// Returns a keeper whose wake-ups and renewal rounds run on `ex`.
std::shared_ptr<AsyncKeeper> make_async_keeper(const asio::any_io_executor& ex);

// Returns `keeper` as the scheduler a `Lock` is kept alive on.
std::shared_ptr<LeaseScheduler> as_scheduler(const std::shared_ptr<AsyncKeeper>& keeper);

// Stops `keeper` for good (its AsyncLockApi is destroyed; the executor may go next): no timer
// is armed and nothing is posted any more; its leases go to the keeper's thread, which only
// watches them (they are not renewed, and run out).
void close_async_keeper(AsyncKeeper& keeper) noexcept;

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_ASYNC_ASYNC_KEEPER_HPP_
