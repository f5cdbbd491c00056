// SPDX-License-Identifier: MIT
// ThreadSanitizer suppressions for Debian's uninstrumented gRPC (ThreadSanitizer builds only).
// Debian's gRPC, abseil, protobuf and OpenSSL are not instrumented: TSan
// cannot see their internal synchronisation and reports races between gRPC's own threads (e.g.
// its epoll poller's descriptor, created by the caller, read by gRPC's poller thread). Reports
// with a frame in those libraries are suppressed; every race in lockkit's own code is still
// reported.
// Visible: the sanitizer runtime, a shared library, looks it up in the program. Compiled into
// lockkit_etcd and, since the runtime reads it at start-up (before any module is loaded), into
// the `lockkit` tool, which loads etcd as a module.
extern "C" __attribute__((visibility("default"))) const char* __tsan_default_suppressions() {
  return "race:libgrpc.so\n"
         "race:libgrpc++.so\n"
         "race:libgpr.so\n"
         "race:libabsl_\n"
         "race:libprotobuf.so\n"
         // OpenSSL, under gRPC's TLS: its buffers are handed between gRPC's threads.
         "race:libcrypto.so\n"
         "race:libssl.so\n"
         "deadlock:libgrpc.so\n"
         "thread:libgrpc.so\n";
}

// Copies made by those libraries' own code (memcpy inside libstdc++'s out-of-line string
// functions called by gRPC's handshake threads, OpenSSL's buffers) carry no frame of theirs
// that a suppression could match: TSan is told to ignore accesses that uninstrumented libraries
// make through its interceptors. lockkit's own code is instrumented and still checked.
extern "C" __attribute__((visibility("default"))) const char* __tsan_default_options() {
  return "ignore_noninstrumented_modules=1";
}
