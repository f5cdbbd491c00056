// SPDX-License-Identifier: MIT
// LeakSanitizer suppressions for test binaries whose threads use OpenSSL and are still running
// at exit (AddressSanitizer builds only): OpenSSL keeps per-thread state and process-wide
// contexts (gRPC's TLS credentials; libpq's SSL negotiation on the async pool's threads, which
// live for the whole process) that it frees only when a thread ends or at its own cleanup.
// Debian's OpenSSL is not instrumented, so the reports carry only libcrypto/libssl frames;
// lockkit's own allocations are still checked.
extern "C" __attribute__((visibility("default"))) const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\n"
         "leak:libssl.so\n";
}
