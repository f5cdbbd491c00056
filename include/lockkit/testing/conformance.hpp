// SPDX-License-Identifier: MIT
// The conformance kit (`lockkit::testing`, GoogleTest): the contract every backend passes,
// runnable against your own `LeaseStore` with a few lines.
//   #include <lockkit/testing/conformance.hpp>
//   using lockkit::testing::LockApiConformance, lockkit::testing::LeaseStoreFaults;
//   lockkit::testing::ConformanceCase MyCase() {
//     auto store = std::make_shared<MyStore>();
//     return {.name = "MyStore",
//             .make = [store] { return lockkit::make_lock_api(store); },
//             .advance = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); },
//             .expiry_ttl = std::chrono::milliseconds(500),
//             .slack = std::chrono::milliseconds(20)};
//   }
//   INSTANTIATE_TEST_SUITE_P(Mine, LockApiConformance, ::testing::Values(MyCase()),
//                            lockkit::testing::CaseName);
//   INSTANTIATE_TEST_SUITE_P(Mine, LeaseStoreFaults, ::testing::Values(lockkit::testing::
//       StoreCase{.name = "MyStore", .make_store = [] { return std::make_shared<MyStore>(); }}),
//       lockkit::testing::StoreCaseName);
//   INSTANTIATE_TEST_SUITE_P(Mine, KeepAliveConformance, ::testing::Values(lockkit::testing::
//       KeepAliveCase{.name = "MyStore", .make = [store] { return lockkit::make_lock_api(store);
//       }}), lockkit::testing::KeepAliveCaseName);
// Link `lockkit::testing` and GoogleTest's main; the tests come with this header.
#ifndef LOCKKIT_TESTING_CONFORMANCE_HPP_
#define LOCKKIT_TESTING_CONFORMANCE_HPP_

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "lockkit/backend.hpp"
#include "lockkit/lock_api.hpp"

namespace lockkit::testing {

// One backend under test by the `LockApiConformance` suite.
struct ConformanceCase {
  std::string name;  // PascalCase, e.g. "FakeClock"
  // Returns a client of the store under test. Every call must reach the same store (the same
  // table, server or file), so that two clients contend like two processes would; it may
  // return the same object each time.
  std::function<std::shared_ptr<LockApi>()> make;
  // Lets `d` of store time pass: advances a fake clock, or sleeps for real stores.
  std::function<void(std::chrono::milliseconds d)> advance;
  // The TTL used by expiry tests: long for a fake clock, short (e.g. 300ms) for a real one.
  std::chrono::milliseconds expiry_ttl{std::chrono::seconds(30)};
  // How much later than its TTL a real store may still show a lease (0 for a fake clock).
  std::chrono::milliseconds slack{0};
  // The local clock that `Lock::valid_until()` is measured on (the fake clock's `now` for
  // memory: with a `ManualClock`); null = `std::chrono::steady_clock::now`.
  std::function<std::chrono::steady_clock::time_point()> now;
};

// One `LeaseStore` under test by the `LeaseStoreFaults` suite.
struct StoreCase {
  std::string name;  // PascalCase
  // Returns the store under test; every call may return a fresh store or the same one.
  std::function<std::shared_ptr<LeaseStore>()> make_store;
  // Optional: returns a store of the same kind whose server or file cannot be reached (a
  // closed port, a missing directory). Null: that case is skipped with a message.
  std::function<std::shared_ptr<LeaseStore>()> make_unreachable;
  // False for a store that grants every request (`noop:`): skips the exclusivity checks.
  bool exclusive = true;
};

// One store under test by the `KeepAliveConformance` suite. Its cases run on real time (the
// steady clock and real sleeps), so `make` must give clients of a store on the real clock.
struct KeepAliveCase {
  std::string name;  // PascalCase
  // Returns a client of the store under test; every call must reach the same store.
  std::function<std::shared_ptr<LockApi>()> make;
  // The ttl of the leases kept alive: a few hundred ms (1 s for a store counting whole seconds).
  std::chrono::milliseconds ttl{300};
  // How much later than its ttl the store may still show a lease that ran out.
  std::chrono::milliseconds slack{0};
  // Optional: deletes `key`'s lease behind the holder's back, as another program would (SQL
  // DELETE, redis-cli DEL). Null: another client releases it with the holder's token.
  std::function<void(const std::string& key)> remove;
  // Optional, all three or none (else that case is skipped): make the store stop answering and
  // answer again (SIGSTOP and SIGCONT its server), and a client of it whose every call ends
  // within `call_limit` (short connect and command timeouts).
  std::function<void()> pause;
  std::function<void()> resume;
  std::function<std::shared_ptr<LockApi>()> make_impatient;
  std::chrono::milliseconds call_limit{0};
};

// Prints a case by name in failure messages.
inline void PrintTo(const ConformanceCase& c, std::ostream* os) {
  *os << c.name;
}
inline void PrintTo(const StoreCase& c, std::ostream* os) {
  *os << c.name;
}
inline void PrintTo(const KeepAliveCase& c, std::ostream* os) {
  *os << c.name;
}

// Names instantiations after `ConformanceCase::name`.
inline std::string CaseName(const ::testing::TestParamInfo<ConformanceCase>& info) {
  return info.param.name;
}
// Names instantiations after `StoreCase::name`.
inline std::string StoreCaseName(const ::testing::TestParamInfo<StoreCase>& info) {
  return info.param.name;
}
// Names instantiations after `KeepAliveCase::name`.
inline std::string KeepAliveCaseName(const ::testing::TestParamInfo<KeepAliveCase>& info) {
  return info.param.name;
}

// The contract of every `LockApi`: mutual exclusion, tokens, fences, expiry, release, extend,
// keys, arguments, `Lock` semantics, threads.
class LockApiConformance : public ::testing::TestWithParam<ConformanceCase> {
 protected:
  void SetUp() override;
  // Returns a key unique to this test and run, so persistent stores need no cleanup.
  std::string Key(std::string_view suffix = "k") const;
  // Returns the local clock of `valid_until()`.
  std::chrono::steady_clock::time_point Now() const;
  std::shared_ptr<LockApi> api_;    // one client
  std::shared_ptr<LockApi> other_;  // a second client of the same store
};

// A `LeaseStore` that forwards to another and fails on demand, the way a real store fails:
// for tests of what the core (and a caller) does when the store misbehaves.
// Thread safety: safe to share; `inject` may race with calls.
class FaultyStore final : public LeaseStore {
 public:
  enum class Fault {
    kNone,
    kUnreachable,     // every call throws `BackendError` (kUnavailable) before reaching the store
    kInDoubtAcquire,  // acquire is applied, then throws `BackendError` (kInDoubt)
    kInDoubtAcquireReleaseFails,  // the same, and every release throws (kUnavailable)
  };

  explicit FaultyStore(std::shared_ptr<LeaseStore> inner) : inner_(std::move(inner)) {}
  void inject(Fault fault) noexcept { fault_.store(fault); }
  // Returns how many releases reached the inner store.
  int releases() const noexcept { return releases_.load(); }

  std::string_view backend() const noexcept override { return inner_->backend(); }
  std::optional<std::uint64_t> acquire(std::string_view key, std::string_view token,
                                       std::chrono::milliseconds ttl) override;
  bool release(std::string_view key, std::string_view token) override;
  bool extend(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  std::optional<LockInfo> status(std::string_view key) override;
  std::vector<LockInfo> list(std::string_view prefix) override;
  // Forwards the batch (`kUnreachable`: throws for the whole round, before reaching the store).
  void extend_many(std::span<const ExtendRequest> requests, std::span<ExtendOutcome> out) override;
  std::chrono::steady_clock::time_point now() const noexcept override { return inner_->now(); }
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return inner_->drift(ttl);
  }

 private:
  void fail_if(bool condition) const;

  std::shared_ptr<LeaseStore> inner_;
  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int> releases_{0};
};

// What a store does when it fails: errors are `BackendError`, never "busy" or "not ours";
// an in-doubt acquire leaves no lease that nobody owns. Also the store-level contract
// (fences, token checks) called directly, without the core.
class LeaseStoreFaults : public ::testing::TestWithParam<StoreCase> {
 protected:
  void SetUp() override;
  std::string Key(std::string_view suffix = "k") const;
  std::shared_ptr<LeaseStore> store_;
};

// `Lock::keep_alive` and `Lock::stop_token` on the store, on real time: a kept-alive lease
// outlives many ttls with nobody else getting it; a lease deleted behind the holder's back, or
// capped by `max_hold`, is signalled lost (once, before `valid_until()`); a store that stops
// answering is signalled lost before `valid_until()` and nothing is renewed after that; many
// leases are kept by a few threads; a forked child's copies are not renewed while the parent's
// lease stays. "Before `valid_until()`" is checked as "by `valid_until()` minus
// `loss_margin(ttl)`, when the keeper's timer is due, plus 100 ms for a late timer": a loaded
// machine may wake a thread later than the 10 ms margin of a short ttl.
class KeepAliveConformance : public ::testing::TestWithParam<KeepAliveCase> {
 protected:
  void SetUp() override;
  std::string Key(std::string_view suffix = "k") const;
  std::shared_ptr<LockApi> api_;    // the holder's client
  std::shared_ptr<LockApi> other_;  // another client of the same store
};

// Keeps the suites' object file in a test binary that includes this header (a static
// library's unreferenced test registrations would otherwise be dropped by the linker).
void link_conformance_suite() noexcept;
void link_fault_suite() noexcept;
void link_keep_alive_suite() noexcept;
namespace {
[[maybe_unused]] const bool kConformanceSuitesLinked =
    (link_conformance_suite(), link_fault_suite(), link_keep_alive_suite(), true);
}  // namespace

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTING_CONFORMANCE_HPP_
