// SPDX-License-Identifier: MIT
// Test support: what the sanitizer runtimes of this toolchain cannot do.
#ifndef LOCKKIT_TESTS_SUPPORT_SANITIZERS_HPP_
#define LOCKKIT_TESTS_SUPPORT_SANITIZERS_HPP_

namespace lockkit::testing {

// True in an ASan or TSan build: the program runs several times slower, so timing tests on real
// servers give their short TTLs more room there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// GCC 12's ASan and TSan runtimes (Debian 12) take allocator locks of their own that are not
// fork-safe: a child of a multithreaded parent can hang inside the runtime's malloc, whatever the
// program does (upstream fixed it with pthread_atfork handlers in LLVM 18 and 19). Under them,
// fork tests fork from one thread only; the release build also forks with other threads busy.
inline constexpr bool kForkWithBusyThreads = !kSanitizerBuild;

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_SANITIZERS_HPP_
