// SPDX-License-Identifier: MIT
// ThreadSanitizer suppressions for the async tests (ThreadSanitizer builds only).
// An exception reaches a handler as a `std::exception_ptr`, and copies of it are released on
// several threads (the thread that completed the operation, the io thread, the test's own). The
// reference count lives in GCC 12's libstdc++, which is not instrumented: TSan does not see its
// atomic decrements and reports the last release (which frees the exception) as racing with the
// reads of whoever looked at it before. Only frames in that release are suppressed.
extern "C" __attribute__((visibility("default"))) const char* __tsan_default_suppressions() {
  return "race:std::__exception_ptr::exception_ptr::_M_release\n";
}
