// SPDX-License-Identifier: MIT
// ThreadSanitizer suppressions for Debian's uninstrumented gRPC (ThreadSanitizer builds only).
// Debian's gRPC, abseil and protobuf are not instrumented: TSan
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
         "deadlock:libgrpc.so\n"
         "thread:libgrpc.so\n";
}
