// SPDX-License-Identifier: MIT
// LOCKKIT_EXPORT marks the public API. The libraries are compiled with -fvisibility=hidden, so
// everything else (lockkit::detail, the backends' internals) stays out of the shared objects'
// dynamic symbol tables and can change without breaking the ABI.
#ifndef LOCKKIT_EXPORT_HPP_
#define LOCKKIT_EXPORT_HPP_

// LOCKKIT_NO_EXPORT keeps a nested implementation class of an exported class out of it.
#if defined(__GNUC__) || defined(__clang__)
#define LOCKKIT_EXPORT [[gnu::visibility("default")]]
#define LOCKKIT_NO_EXPORT [[gnu::visibility("hidden")]]
#else
#define LOCKKIT_EXPORT
#define LOCKKIT_NO_EXPORT
#endif

#endif  // LOCKKIT_EXPORT_HPP_
