// SPDX-License-Identifier: MIT
// Internal: what tests may ask the memory: store beyond the LeaseStore interface.
#ifndef LOCKKIT_SRC_MEMORY_MEMORY_STORE_HPP_
#define LOCKKIT_SRC_MEMORY_MEMORY_STORE_HPP_

#include <cstddef>

#include "lockkit/backend.hpp"

namespace lockkit::detail {

// Returns the number of entries in a `make_memory_store` table, live or expired but not yet
// swept; for tests of the memory bound. Throws `std::invalid_argument` for another store.
std::size_t memory_table_size(const LeaseStore& store);

}  // namespace lockkit::detail

#endif  // LOCKKIT_SRC_MEMORY_MEMORY_STORE_HPP_
