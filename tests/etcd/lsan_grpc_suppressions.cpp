// SPDX-License-Identifier: MIT
// LeakSanitizer suppressions for the etcd test binaries (AddressSanitizer builds only): gRPC's
// TLS channel credentials keep OpenSSL contexts (SSL_CTX, certificates) in process-wide caches
// that are never freed before exit. Debian's OpenSSL is not instrumented, so the reports carry
// only libcrypto frames; lockkit's own allocations are still checked.
extern "C" __attribute__((visibility("default"))) const char* __lsan_default_suppressions() {
  return "leak:libcrypto.so\n"
         "leak:libssl.so\n";
}
