// SPDX-License-Identifier: MIT
// The wake-up queue of both keepers (the core's threads and AsyncLockApi's executor): a heap of
// entries, earliest `at` on top, whose entries a forked child or a close can visit in place.
#ifndef LOCKKIT_CORE_WAKE_QUEUE_HPP_
#define LOCKKIT_CORE_WAKE_QUEUE_HPP_

#include <queue>
#include <vector>

namespace lockkit::detail {

// Orders wake-up entries (anything with a time point `at`): the later one sinks.
struct LaterAt {
  template <class Entry>
  bool operator()(const Entry& a, const Entry& b) const noexcept {
    return a.at > b.at;
  }
};

template <class Entry>
using WakeQueue = std::priority_queue<Entry, std::vector<Entry>, LaterAt>;

// Reads a priority queue's container, to visit its entries without popping them.
template <class Queue>
const typename Queue::container_type& entries_of(const Queue& q) {
  struct Access : Queue {
    static const typename Queue::container_type& of(const Queue& queue) {
      return queue.*(&Access::c);
    }
  };
  return Access::of(q);
}

}  // namespace lockkit::detail

#endif  // LOCKKIT_CORE_WAKE_QUEUE_HPP_
