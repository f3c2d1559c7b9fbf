// Dispatch protocol. run() publishes the job pointer, sets pending_ = N - 1 and bumps generation_
// (release). Workers poll generation_ (acquire) for up to kSpinMicros, then sleep on cv_. The
// sleep/wake handshake cannot lose a wake-up: a worker increments sleeping_ and re-checks
// generation_ under mu_ before it blocks, and run() bumps generation_ before it reads sleeping_
// (both sequentially consistent), so either the worker sees the new generation or run() sees the
// sleeper and notifies under mu_. When nobody sleeps, run() touches no mutex and no syscall.
#include "export/runtime/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLMC_PAUSE() _mm_pause()
#else
#define SLMC_PAUSE() std::this_thread::yield()
#endif

namespace slmc::runtime {

namespace {

thread_local bool tls_in_job = false;  // inside a pool job (nested run() goes serial)

// Polls spin with pause (~25 ns each on Sapphire Rapids) for about 25 us, then poll with
// sched_yield: on a loaded machine a spinning thread must not hold the core its peer needs.
constexpr int kPurePauses = 1024;

class InJob {
 public:
  InJob() : prev_(tls_in_job) { tls_in_job = true; }
  ~InJob() { tls_in_job = prev_; }

 private:
  bool prev_;
};

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  n_threads_ = n_threads > 0 ? n_threads : 1;
  errors_.resize(static_cast<size_t>(n_threads_));
  threads_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::run_one(int index) {
  try {
    InJob in_job;
    (*job_)(index, n_threads_);
  } catch (...) {
    errors_[static_cast<size_t>(index)] = std::current_exception();
    failed_.store(true, std::memory_order_relaxed);  // published by the pending_ decrement
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Poll (pause, then yield so a thread sharing this core can run), then sleep.
    const auto spin_until =
        std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && !stop_.load(std::memory_order_relaxed); ++i) {
      if (i < kPurePauses) {
        SLMC_PAUSE();
      } else {
        std::this_thread::yield();
        if ((i & 15) == 0 && std::chrono::steady_clock::now() > spin_until) break;
      }
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen && !stop_.load()) {
      std::unique_lock<std::mutex> lock(mu_);
      sleeping_.fetch_add(1);
      cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      sleeping_.fetch_sub(1);
      gen = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = gen;
    run_one(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1 || tls_in_job) {
    // Serial: a nested run() would otherwise wait for workers busy running its parent.
    std::exception_ptr first;
    for (int i = 0; i < n_threads_; ++i) {
      try {
        InJob in_job;
        fn(i, n_threads_);
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: see the protocol above
  if (sleeping_.load() > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
  }
  run_one(0);
  // Wait for the workers. Jobs are short during decode, so poll; yield once the wait gets long.
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
    if (i < kPurePauses) {
      SLMC_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
  if (failed_.load(std::memory_order_relaxed)) {
    std::exception_ptr first;
    for (std::exception_ptr& e : errors_) {
      if (e && !first) first = e;
      e = nullptr;
    }
    failed_.store(false, std::memory_order_relaxed);
    std::rethrow_exception(first);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t align,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  const int64_t per = (n + n_threads_ - 1) / n_threads_;
  const int64_t chunk = (per + align - 1) / align * align;
  if (chunk >= n) {  // one chunk: no dispatch
    fn(0, n);
    return;
  }
  run([&](int i, int) {
    const int64_t begin = chunk * i;
    const int64_t end = begin + chunk < n ? begin + chunk : n;
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::parallel_for_dynamic(int64_t n, int64_t chunk,
                                      const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (chunk < 1) chunk = 1;
  if (chunk >= n || n_threads_ == 1 || tls_in_job) {
    for (int64_t b = 0; b < n; b += chunk) fn(b, b + chunk < n ? b + chunk : n);
    return;
  }
  alignas(64) std::atomic<int64_t> next{0};
  run([&](int, int) {
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) return;
      fn(b, b + chunk < n ? b + chunk : n);
    }
  });
}

}  // namespace slmc::runtime
