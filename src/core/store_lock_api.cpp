// SPDX-License-Identifier: MIT
// The LockApi over any LeaseStore: the acquire protocol written once, and the observer hook.
#include "core/store_lock_api.hpp"

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/clocked_store.hpp"
#include "core/keeper.hpp"
#include "core/token.hpp"
#include "lockkit/backend.hpp"
#include "lockkit/errors.hpp"

namespace lockkit {

std::chrono::steady_clock::time_point LeaseStore::now() const noexcept {
  return std::chrono::steady_clock::now();
}

std::chrono::milliseconds LeaseStore::drift(std::chrono::milliseconds) const noexcept {
  return std::chrono::milliseconds(0);
}

void LeaseStore::extend_many(std::span<const ExtendRequest> requests,
                             std::span<ExtendOutcome> out) {
  for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
    try {
      out[i] = extend(requests[i].key, requests[i].token, requests[i].ttl)
                   ? ExtendOutcome::kExtended
                   : ExtendOutcome::kNotOurs;
    } catch (...) {  // this one failed; the others may still go through
      out[i] = ExtendOutcome::kFailed;
    }
  }
}

const char* to_string(LockOperation operation) noexcept {
  switch (operation) {
    case LockOperation::kTryAcquire:
      return "try_acquire";
    case LockOperation::kAcquire:
      return "acquire";
    case LockOperation::kRelease:
      return "release";
    case LockOperation::kExtend:
      return "extend";
  }
  return "unknown";
}

const char* to_string(LockOutcome outcome) noexcept {
  switch (outcome) {
    case LockOutcome::kOk:
      return "ok";
    case LockOutcome::kBusy:
      return "busy";
    case LockOutcome::kNotOurs:
      return "not_ours";
    case LockOutcome::kError:
      return "error";
  }
  return "unknown";
}

namespace detail {
namespace {

// Thread indices: small numbers, each held by one live thread at a time and handed to a new
// thread once its holder has exited, so that a LockApi's per-thread counts stay as few as the
// threads that ran at the same time. 0: none.
constexpr unsigned kIndexChunk = 64;
constexpr unsigned kIndexChunks = 64;
constexpr unsigned kMaxIndex = kIndexChunk * kIndexChunks;  // indices 1..kMaxIndex-1

struct IndexRegistry {
  IndexRegistry() {
    // A forked child's thread keeps its index (and its counts); the indices of the parent's
    // other threads are never handed out again there (their holders are gone mid-way, maybe).
    pthread_atfork([] { registry().mu.lock(); }, [] { registry().mu.unlock(); },
                   [] { registry().after_fork_in_child(); });
  }
  static IndexRegistry& registry();
  void after_fork_in_child();

  std::mutex mu;
  std::vector<unsigned> free;  // guarded by mu: returned by threads that exited
  unsigned next = 1;           // guarded by mu
  // The process in which index i was last taken (or kept across a fork): its holder may run
  // there. Guarded by mu.
  std::vector<pid_t> pid = std::vector<pid_t>(kMaxIndex, 0);
};

IndexRegistry& IndexRegistry::registry() {
  // Never destroyed: threads may exit (and give back their index) after static destruction.
  static IndexRegistry* r = new IndexRegistry;
  return *r;
}

thread_local unsigned t_index = 0;       // constant initialised: no TLS guard on the lock path
thread_local bool t_index_gone = false;  // the thread gave its index back: it is exiting

void IndexRegistry::after_fork_in_child() {
  if (t_index != 0) pid[t_index] = getpid();
  mu.unlock();
}

// Gives the thread's index back when it exits.
struct IndexHolder {
  IndexHolder() = default;
  IndexHolder(const IndexHolder&) = delete;
  IndexHolder& operator=(const IndexHolder&) = delete;
  ~IndexHolder() {
    const unsigned i = t_index;
    t_index = 0;
    t_index_gone = true;  // locks dropped by later thread_local destructors count atomically
    if (i == 0) return;
    IndexRegistry& r = IndexRegistry::registry();
    std::lock_guard<std::mutex> guard(r.mu);
    try {
      r.free.push_back(i);
    } catch (...) {  // not handed out again: one count per api stays unused
    }
  }
};

// Returns this thread's index, taking one if it has none; 0 when it cannot have one (too many
// threads at once, exiting, out of memory): its locks then hold a reference of their own.
unsigned thread_index() noexcept {
  if (t_index != 0) return t_index;
  if (t_index_gone) return 0;
  try {
    static thread_local IndexHolder holder;  // its destructor gives the index back
    (void)holder;
    IndexRegistry& r = IndexRegistry::registry();
    std::lock_guard<std::mutex> guard(r.mu);
    unsigned i = 0;
    if (!r.free.empty()) {
      i = r.free.back();
      r.free.pop_back();
    } else if (r.next < kMaxIndex) {
      i = r.next++;
    } else {
      return 0;
    }
    r.pid[i] = getpid();
    return t_index = i;
  } catch (...) {
    return 0;
  }
}

// True if index i's holder may be a live thread of this process (not one lost in a fork).
bool index_may_run(unsigned i) noexcept {
  IndexRegistry& r = IndexRegistry::registry();
  std::lock_guard<std::mutex> guard(r.mu);
  return r.pid[i] == getpid();
}

// The count's owner and its detacher must see each other's stores (Dekker): with membarrier(2)
// the detacher, which runs once per api, pays for both, and the owner's side is plain stores and
// loads; without it, both sides use sequentially consistent ones.
#if defined(__linux__)
long membarrier(int command) noexcept {
  return syscall(SYS_membarrier, command, 0, 0);
}

bool register_membarrier() noexcept {
  const long supported = membarrier(MEMBARRIER_CMD_QUERY);
  return supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
         membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

// Set while the library loads (false before: sequentially consistent, which the detacher's
// side serves too).
const bool g_asymmetric = register_membarrier();
#else
const bool g_asymmetric = false;
#endif

// The detacher's side, after its stores to orphaned_: from here on, every thread's earlier
// stores are seen, and its later loads see orphaned_. False if that cannot be had.
bool detacher_barrier() noexcept {
  if (!g_asymmetric) return true;  // the owners' seq_cst store and load do it
#if defined(__linux__)
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return true;
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
    return true;
  }
  return membarrier(MEMBARRIER_CMD_GLOBAL) == 0;
#else
  return false;
#endif
}

}  // namespace

LockCount::LockCount(std::shared_ptr<LeaseOps> ops, unsigned index) noexcept
    : ops_(std::move(ops)), index_(index) {}

void LockCount::drop() noexcept {
  if (t_index == index_) {
    // The owner: a plain count, unless the api's destructor has started settling. busy_ tells
    // it to wait until a decrement that missed orphaned_ has landed.
    bool orphaned;
    if (g_asymmetric) {
      busy_.store(true, std::memory_order_relaxed);
      // Only the compiler's order: the detacher's membarrier orders the CPU's.
      std::atomic_signal_fence(std::memory_order_seq_cst);
      orphaned = orphaned_.load(std::memory_order_relaxed);
    } else {
      busy_.store(true, std::memory_order_seq_cst);
      orphaned = orphaned_.load(std::memory_order_seq_cst);
    }
    if (!orphaned) {
      local_.store(local_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      busy_.store(false, std::memory_order_release);
      return;
    }
    busy_.store(false, std::memory_order_release);
  }
  if (shared_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void LockCount::detach(std::span<LockCount* const> counts) noexcept {
  for (LockCount* c : counts) c->orphaned_.store(true, std::memory_order_seq_cst);
  // Without the barrier an owner's decrement could be missed; then the count (and the store) is
  // kept for good rather than risk freeing it under a lock.
  if (!detacher_barrier()) return;
  for (LockCount* c : counts) {
    // An owner whose busy_ is seen false here sees orphaned_ in its next drop: local_ is final.
    if (index_may_run(c->index_)) {
      while (c->busy_.load(std::memory_order_seq_cst)) std::this_thread::yield();
    }
    const std::int64_t local = c->local_.load(std::memory_order_acquire);
    if (c->shared_.fetch_add(local - kAttached, std::memory_order_acq_rel) == kAttached - local) {
      delete c;
    }
  }
}

}  // namespace detail

namespace {

using Steady = std::chrono::steady_clock;

// What the LockApi and all its Locks share: the store and the attached observer.
struct Shared {
  explicit Shared(std::shared_ptr<LeaseStore> s) : store(std::move(s)) {}

  const std::shared_ptr<LeaseStore> store;
  // Read on every operation, hence a plain atomic pointer: a null check when none is attached.
  std::atomic<LockObserver*> observer{nullptr};
  std::mutex mu;
  // Every distinct observer ever attached: a Lock may still report to a replaced one, so none
  // is freed before the last Lock.
  std::vector<std::shared_ptr<LockObserver>> observers;  // guarded by mu
};

LockEvent make_event(LockOperation operation, std::string_view backend,
                     std::string_view key) noexcept {
  LockEvent event;
  event.operation = operation;
  event.backend = backend;
  event.key = key;
  return event;
}

void notify(LockObserver* observer, const LockEvent& event) noexcept {
  try {
    observer->on_event(event);
  } catch (...) {  // an observer never changes the result of a lock operation
  }
}

// Fills in the error of a failed call from the exception being handled.
void note_current_error(LockEvent& event) noexcept {
  event.outcome = LockOutcome::kError;
  try {
    throw;
  } catch (const BackendError& e) {
    event.error = e.kind();
  } catch (...) {
  }
}

// What Locks call back into. The LockApi keeps several, each with its own reference count, and
// a thread hands out Locks from its own one: threads taking locks at the same time then never
// write the same shared_ptr control block. Aligned to 128 bytes (the pair of lines the adjacent
// line prefetcher fetches together), so that one stripe's count never shares a line pair with
// what another thread reads.
class alignas(128) Stripe final : public detail::LeaseOps, public detail::BatchRenewer {
 public:
  explicit Stripe(std::shared_ptr<Shared> shared)
      : shared_(std::move(shared)), store_(shared_->store.get()) {}

  std::string_view backend() const noexcept override { return store_->backend(); }
  Steady::time_point now() const noexcept override { return store_->now(); }
  std::chrono::milliseconds drift(std::chrono::milliseconds ttl) const noexcept override {
    return store_->drift(ttl);
  }

  const void* batch_key() const noexcept override { return store_; }

  // The keep-alive's renewals: one `extend_many` round. A single renewal goes through `extend`,
  // so that its error message reaches `on_renewal_error`.
  std::string renew_many(std::span<const ExtendRequest> requests,
                         std::span<ExtendOutcome> out) noexcept override {
    std::string error;
    const auto start = Steady::now();
    try {
      if (requests.size() == 1) {
        out[0] = store_->extend(requests[0].key, requests[0].token, requests[0].ttl)
                     ? ExtendOutcome::kExtended
                     : ExtendOutcome::kNotOurs;
      } else {
        store_->extend_many(requests, out);
      }
    } catch (const std::exception& e) {
      error = e.what();
      std::fill(out.begin(), out.end(), ExtendOutcome::kFailed);
    } catch (...) {
      error = "unknown error";
      std::fill(out.begin(), out.end(), ExtendOutcome::kFailed);
    }
    if (LockObserver* observer = shared_->observer.load(std::memory_order_acquire)) {
      const auto latency = Steady::now() - start;
      for (std::size_t i = 0; i < requests.size(); ++i) {
        LockEvent event = make_event(LockOperation::kExtend, store_->backend(), requests[i].key);
        event.latency = latency;
        event.outcome = out[i] == ExtendOutcome::kExtended  ? LockOutcome::kOk
                        : out[i] == ExtendOutcome::kNotOurs ? LockOutcome::kNotOurs
                                                            : LockOutcome::kError;
        notify(observer, event);
      }
    }
    return error;
  }

  bool release(std::string_view key, std::string_view token) override {
    LockObserver* observer = shared_->observer.load(std::memory_order_acquire);
    if (!observer) return store_->release(key, token);
    return observed_release(observer, key, token, std::nullopt);
  }

  bool release_held(std::string_view key, std::string_view token,
                    Steady::time_point acquired) override {
    LockObserver* observer = shared_->observer.load(std::memory_order_acquire);
    if (!observer) return store_->release(key, token);
    return observed_release(observer, key, token, acquired);
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    LockObserver* observer = shared_->observer.load(std::memory_order_acquire);
    if (!observer) return store_->extend(key, token, ttl);
    LockEvent event = make_event(LockOperation::kExtend, store_->backend(), key);
    auto start = Steady::now();
    bool ours;
    try {
      ours = store_->extend(key, token, ttl);
    } catch (...) {
      event.latency = Steady::now() - start;
      note_current_error(event);
      notify(observer, event);
      throw;
    }
    event.latency = Steady::now() - start;
    event.outcome = ours ? LockOutcome::kOk : LockOutcome::kNotOurs;
    notify(observer, event);
    return ours;
  }

 private:
  bool observed_release(LockObserver* observer, std::string_view key, std::string_view token,
                        std::optional<Steady::time_point> acquired) {
    LockEvent event = make_event(LockOperation::kRelease, store_->backend(), key);
    if (acquired) event.held = store_->now() - *acquired;
    auto start = Steady::now();
    bool ours;
    try {
      ours = store_->release(key, token);
    } catch (...) {
      event.latency = Steady::now() - start;
      note_current_error(event);
      notify(observer, event);
      throw;
    }
    event.latency = Steady::now() - start;
    event.outcome = ours ? LockOutcome::kOk : LockOutcome::kNotOurs;
    notify(observer, event);
    return ours;
  }

  const std::shared_ptr<Shared> shared_;
  LeaseStore* const store_;  // owned by shared_
};

// Numbers the threads that take locks, so that each picks a stripe of its own. Constant
// initialised and numbered on first use: no TLS guard on the lock path.
std::atomic<unsigned> g_next_thread{0};
thread_local unsigned t_thread_number = 0;  // 0: not numbered yet

unsigned thread_number() noexcept {
  unsigned n = t_thread_number;
  if (n == 0) n = t_thread_number = g_next_thread.fetch_add(1, std::memory_order_relaxed) + 1;
  return n;
}

class StoreLockApi final : public LockApi, public detail::NativeGrants {
 public:
  explicit StoreLockApi(std::shared_ptr<LeaseStore> store)
      : shared_(std::make_shared<Shared>(std::move(store))),
        store_(shared_->store.get()),
        clocked_(dynamic_cast<detail::ClockedStore*>(store_)) {
    for (auto& stripe : stripes_) stripe = std::make_shared<Stripe>(shared_);
  }

  StoreLockApi(const StoreLockApi&) = delete;
  StoreLockApi& operator=(const StoreLockApi&) = delete;

  ~StoreLockApi() override {
    // Each thread's count goes on without the api until its last Lock is gone.
    std::vector<detail::LockCount*> counts;
    try {
      counts.reserve(kCountsPerChunk);
    } catch (...) {  // then one at a time
    }
    for (auto& slot : counts_) {
      std::atomic<detail::LockCount*>* chunk = slot.load(std::memory_order_acquire);
      if (!chunk) continue;
      for (std::size_t i = 0; i < kCountsPerChunk; ++i) {
        detail::LockCount* c = chunk[i].load(std::memory_order_acquire);
        if (!c) continue;
        try {
          counts.push_back(c);
        } catch (...) {
          detail::LockCount::detach(std::span<detail::LockCount* const>(&c, 1));
        }
      }
      delete[] chunk;
    }
    if (!counts.empty()) detail::LockCount::detach(counts);
  }

  std::string_view backend() const noexcept override { return store_->backend(); }

  std::optional<Lock> try_acquire(std::string_view key, std::chrono::milliseconds ttl) override {
    validate_key(key);
    validate_ttl(ttl);
    LockObserver* observer = shared_->observer.load(std::memory_order_acquire);
    if (!observer) return try_once(key, ttl);
    LockEvent event = make_event(LockOperation::kTryAcquire, store_->backend(), key);
    auto start = Steady::now();
    std::optional<Lock> lock;
    try {
      lock = try_once(key, ttl);
    } catch (...) {
      event.latency = Steady::now() - start;
      note_current_error(event);
      notify(observer, event);
      throw;
    }
    event.latency = Steady::now() - start;
    event.outcome = lock ? LockOutcome::kOk : LockOutcome::kBusy;
    if (lock) event.fence = lock->fence();
    notify(observer, event);
    return lock;
  }

  std::optional<Lock> acquire(std::string_view key, std::chrono::milliseconds ttl,
                              const RetryPolicy& policy = {}) override {
    validate_retry_policy(policy);
    validate_key(key);
    validate_ttl(ttl);
    unsigned attempts = 0;
    LockObserver* observer = shared_->observer.load(std::memory_order_acquire);
    if (!observer) return detail::acquire_loop(*this, key, ttl, policy, attempts, store_);
    LockEvent event = make_event(LockOperation::kAcquire, store_->backend(), key);
    auto start = Steady::now();
    std::optional<Lock> lock;
    try {
      lock = detail::acquire_loop(*this, key, ttl, policy, attempts, store_);
    } catch (...) {
      event.latency = Steady::now() - start;
      event.attempts = attempts;
      note_current_error(event);
      // The observer read after the loop: one attached meanwhile sees the end of the wait.
      notify(shared_->observer.load(std::memory_order_acquire), event);
      throw;
    }
    event.latency = Steady::now() - start;
    event.attempts = attempts;
    event.outcome = lock ? LockOutcome::kOk : LockOutcome::kBusy;
    if (lock) event.fence = lock->fence();
    if (LockObserver* now = shared_->observer.load(std::memory_order_acquire)) notify(now, event);
    return lock;
  }

  bool release(std::string_view key, std::string_view token) override {
    validate_key(key);
    return stripe()->release(key, token);
  }

  bool extend(std::string_view key, std::string_view token,
              std::chrono::milliseconds ttl) override {
    validate_key(key);
    validate_ttl(ttl);
    return stripe()->extend(key, token, ttl);
  }

  std::optional<LockInfo> status(std::string_view key) override {
    validate_key(key);
    return store_->status(key);
  }

  std::vector<LockInfo> list(std::string_view prefix) override {
    auto out = store_->list(prefix);
    std::sort(out.begin(), out.end(),
              [](const LockInfo& a, const LockInfo& b) { return a.key < b.key; });
    return out;
  }

  LeaseStore& grant_store() noexcept override { return *store_; }

  std::shared_ptr<detail::LeaseOps> grant_ops() override { return stripe(); }

  Lock adopt_grant(std::string_view key, std::string_view token, std::uint64_t fence,
                   Steady::time_point start, std::chrono::milliseconds ttl,
                   std::shared_ptr<detail::LeaseOps> ops) override {
    return Lock(detail::CoreLockTag{}, std::move(ops), key, token, fence,
                start + ttl - store_->drift(ttl), start, ttl);
  }

  void observe(LockOperation operation, std::string_view key, LockOutcome outcome,
               std::uint64_t fence, std::chrono::nanoseconds latency) noexcept override {
    LockObserver* observer = shared_->observer.load(std::memory_order_acquire);
    if (!observer) return;
    LockEvent event = make_event(operation, store_->backend(), key);
    event.outcome = outcome;
    event.fence = fence;
    event.latency = latency;
    notify(observer, event);
  }

  void set_observer(std::shared_ptr<LockObserver> observer) override {
    std::lock_guard<std::mutex> guard(shared_->mu);
    LockObserver* raw = observer.get();
    auto& kept = shared_->observers;
    if (observer && std::find(kept.begin(), kept.end(), observer) == kept.end()) {
      kept.push_back(std::move(observer));
    }
    shared_->observer.store(raw, std::memory_order_release);
  }

 private:
  static constexpr std::size_t kStripes = 16;
  static constexpr std::size_t kCountsPerChunk = detail::kIndexChunk;
  static constexpr std::size_t kCountChunks = detail::kIndexChunks;

  // This thread's count of Locks; null when it cannot have one (see detail::thread_index): its
  // Locks then hold a reference of their own, from its stripe.
  detail::LockCount* lock_count() noexcept {
    const unsigned i = detail::thread_index();
    if (i == 0) return nullptr;
    if (std::atomic<detail::LockCount*>* chunk =
            counts_[i / kCountsPerChunk].load(std::memory_order_acquire)) {
      if (detail::LockCount* c = chunk[i % kCountsPerChunk].load(std::memory_order_acquire)) {
        return c;
      }
    }
    return make_count(i);
  }

  detail::LockCount* make_count(unsigned i) noexcept {
    try {
      std::lock_guard<std::mutex> guard(counts_mu_);
      auto& slot = counts_[i / kCountsPerChunk];
      std::atomic<detail::LockCount*>* chunk = slot.load(std::memory_order_relaxed);
      if (!chunk) {
        chunk = new std::atomic<detail::LockCount*>[kCountsPerChunk]();
        slot.store(chunk, std::memory_order_release);
      }
      detail::LockCount* c = chunk[i % kCountsPerChunk].load(std::memory_order_relaxed);
      if (!c) {
        c = new detail::LockCount(stripes_[i % kStripes], i);
        chunk[i % kCountsPerChunk].store(c, std::memory_order_release);
      }
      return c;
    } catch (...) {
      return nullptr;
    }
  }

  const std::shared_ptr<Stripe>& stripe() const noexcept {
    return stripes_[thread_number() % kStripes];
  }

  // One attempt without observation. The token is minted and the local clock read before the
  // store call, so valid_until can only be earlier than the store's expiry.
  std::optional<Lock> try_once(std::string_view key, std::chrono::milliseconds ttl) {
    const std::uint64_t hint = clocked_ ? clocked_->prefetch(key) : 0;
    char token_buf[detail::kTokenChars];
    detail::fill_token(token_buf);
    const std::string_view token(token_buf, sizeof(token_buf));
    // Looked up while the store's line is on its way.
    detail::LockCount* const count = lock_count();
    const Steady::time_point start = store_->now();
    std::optional<std::uint64_t> fence;
    try {
      fence = clocked_ ? clocked_->acquire_at(key, hint, token, ttl, start)
                       : store_->acquire(key, token, ttl);
    } catch (const BackendError& e) {
      // The grant may have been applied: take it back with our own token, so that no lease is
      // left that nobody owns, then say so.
      if (e.kind() == ErrorKind::kInDoubt) release_in_doubt(key, token);
      throw;
    }
    if (!fence) return std::nullopt;
    const Steady::time_point valid_until = start + ttl - store_->drift(ttl);
    // Made in place in the caller's optional: no empty optional to clear first.
    if (count) {
      count->add();
      return std::optional<Lock>(std::in_place, detail::CoreLockTag{}, *count, key, token, *fence,
                                 valid_until, start, ttl);
    }
    return std::optional<Lock>(std::in_place, detail::CoreLockTag{}, stripe(), key, token, *fence,
                               valid_until, start, ttl);
  }

  void release_in_doubt(std::string_view key, std::string_view token) noexcept {
    try {
      (void)store_->release(key, token);
    } catch (...) {  // the caller learns kInDoubt either way; the lease then expires by its TTL
    }
  }

  const std::shared_ptr<Shared> shared_;
  LeaseStore* const store_;  // owned by shared_
  // The same store when it can take the core's clock reading (memory:), else null.
  detail::ClockedStore* const clocked_;
  std::array<std::shared_ptr<Stripe>, kStripes> stripes_;
  // Per thread index: the thread's count of Locks, made on its first; chunks made on demand.
  std::array<std::atomic<std::atomic<detail::LockCount*>*>, kCountChunks> counts_{};
  std::mutex counts_mu_;  // serialises making counts and chunks
};

}  // namespace

std::shared_ptr<LockApi> make_lock_api(std::shared_ptr<LeaseStore> store) {
  if (!store) throw std::invalid_argument("store: must not be null");
  return std::make_shared<StoreLockApi>(std::move(store));
}

}  // namespace lockkit
