// SPDX-License-Identifier: MIT
// Internal: host name resolution under a deadline, and the connection keywords built from it.
#ifndef LOCKKIT_SRC_POSTGRES_PG_RESOLVE_HPP_
#define LOCKKIT_SRC_POSTGRES_PG_RESOLVE_HPP_

#include <string>
#include <vector>

#include "postgres/pg_connection.hpp"

namespace lockkit::detail::pg {

// Returns the numeric addresses of `host` (IPv4 and IPv6, in the resolver's order). Runs
// getaddrinfo on a helper thread and stops waiting at `deadline` (the thread is left to finish
// alone: getaddrinfo cannot be interrupted). Throws `StoreFailure`: kind timeout if the resolver
// did not answer in time, unavailable if it found no address.
std::vector<std::string> resolve_host(const std::string& host, Deadline deadline);

// Returns `params` with every host name resolved before `deadline` and handed to libpq as
// `hostaddr` (one host entry per address; `host` stays for TLS and messages). Numeric hosts,
// Unix socket directories and entries with their own `hostaddr` are kept as they are. The
// PGHOST, PGHOSTADDR and PGPORT variables count when `params` names no host. Throws
// `StoreFailure` like `resolve_host` if no host is left.
ConnParams with_resolved_hosts(const ConnParams& params, Deadline deadline);

}  // namespace lockkit::detail::pg

#endif  // LOCKKIT_SRC_POSTGRES_PG_RESOLVE_HPP_
