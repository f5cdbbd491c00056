// SPDX-License-Identifier: MIT
// The one contract suite every backend passes unchanged: the conformance kit's header.
#ifndef LOCKKIT_TESTS_CONFORMANCE_LOCK_API_CONFORMANCE_HPP_
#define LOCKKIT_TESTS_CONFORMANCE_LOCK_API_CONFORMANCE_HPP_

#include "lockkit/testing/conformance.hpp"

#endif  // LOCKKIT_TESTS_CONFORMANCE_LOCK_API_CONFORMANCE_HPP_
