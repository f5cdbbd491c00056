// SPDX-License-Identifier: MIT
// Test harness: runs code in a child process whose DNS server never answers.
#ifndef LOCKKIT_TESTS_SUPPORT_BLACKHOLE_DNS_HPP_
#define LOCKKIT_TESTS_SUPPORT_BLACKHOLE_DNS_HPP_

#include <functional>

namespace lockkit::testing {

// Runs `fn` in a forked child inside new mount and network namespaces (needs root): only `lo`
// is up, a private /etc/resolv.conf names 127.0.0.1 as the only nameserver, and a UDP socket
// and a TCP listener bound on 127.0.0.1:53 take queries and never answer. Any lookup of a name
// not in /etc/hosts then hangs for the resolver's own timeouts (5 s per try, 2 tries).
// Returns `fn`'s result, which becomes the child's exit status (0..255; 128 + n if signal n
// killed it). Throws `std::runtime_error` with the reason if the namespaces cannot be made, so
// a test fails rather than skips.
//   EXPECT_EQ(run_with_blackhole_dns([] { return call_that_must_time_out() ? 0 : 1; }), 0);
// Thread safety: call from one thread; `fn` runs in the child with only the calling thread.
int run_with_blackhole_dns(const std::function<int()>& fn);

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_BLACKHOLE_DNS_HPP_
