// A fixed pool of worker threads for splitting rows of a matmul across cores. The calling thread
// takes part, so a pool of N threads runs N-way. Workers spin briefly, then sleep, between jobs:
// decode issues thousands of small jobs per second.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace slmc::runtime {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads <= 0: all cores
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) on every thread (the caller is index 0) and waits for all.
  // If calls throw, every thread still finishes its call and the first exception (lowest thread
  // index) is rethrown here. A run() issued from inside a job runs all indices serially on the
  // calling thread; concurrent run() calls from different threads are serialized.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into size() contiguous chunks, each a multiple of `align` (except the last),
  // and calls fn(begin, end) for each non-empty chunk in parallel.
  void parallel_for(int64_t n, int64_t align, const std::function<void(int64_t, int64_t)>& fn);

  // Splits [0, n) into chunks of `chunk` items (the last one shorter) that the threads claim in
  // order from a shared counter, calling fn(begin, end) once per chunk. The caller starts on the
  // first chunk while the workers wake up, and a thread slowed by a busy core takes fewer chunks.
  // One chunk (or a 1-thread pool) runs serially on the caller with no dispatch.
  void parallel_for_dynamic(int64_t n, int64_t chunk,
                            const std::function<void(int64_t, int64_t)>& fn);

  // How long an idle worker polls for the next job before it sleeps on the condition variable.
  static constexpr int64_t kSpinMicros = 200;

 private:
  void worker(int index);
  void run_one(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  // The dispatch state the caller writes and the workers poll shares one cache line, so a
  // worker's first miss brings both the new generation and the job; the completion counter the
  // workers write and the caller polls has a line of its own.
  alignas(64) std::atomic<uint64_t> generation_{0};  // bumped once per run()
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<bool> stop_{false};
  alignas(64) std::atomic<int> pending_{0};   // workers still running the current job
  std::atomic<bool> failed_{false};           // some thread stored an exception in errors_
  alignas(64) std::atomic<int> sleeping_{0};  // workers blocked (or about to block) on cv_
  std::mutex mu_;                             // guards the sleep/wake handshake
  std::condition_variable cv_;
  std::mutex run_mu_;                       // one run() at a time
  std::vector<std::exception_ptr> errors_;  // per thread, for the current job
};

}  // namespace slmc::runtime
