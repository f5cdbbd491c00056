// SPDX-License-Identifier: MIT
// Umbrella header: the whole core API of lockkit.
#ifndef LOCKKIT_LOCKKIT_HPP_
#define LOCKKIT_LOCKKIT_HPP_

#include "lockkit/backend.hpp"
#include "lockkit/clock.hpp"
#include "lockkit/duration.hpp"
#include "lockkit/errors.hpp"
#include "lockkit/lock.hpp"
#include "lockkit/lock_api.hpp"
#include "lockkit/memory.hpp"
#include "lockkit/noop.hpp"
#include "lockkit/observer.hpp"
#include "lockkit/open.hpp"
#include "lockkit/retry.hpp"
#include "lockkit/version.hpp"

#endif  // LOCKKIT_LOCKKIT_HPP_
