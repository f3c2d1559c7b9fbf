// ThreadPool: every index and every element exactly once, chunk alignment, 1-thread pools,
// exceptions reach the caller without deadlock, nested runs, and the dispatch latency (printed).
#include "export/runtime/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace slmc::runtime {
namespace {

TEST(ThreadPool, RunCallsEveryIndexOnce) {
  for (int n_threads : {1, 2, 3, 4}) {
    ThreadPool pool(n_threads);
    EXPECT_EQ(pool.size(), n_threads);
    for (int rep = 0; rep < 200; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n_threads));
      pool.run([&](int i, int n) {
        ASSERT_EQ(n, n_threads);
        hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, CallerIsIndexZero) {
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id seen[2];
  pool.run([&](int i, int) { seen[i] = std::this_thread::get_id(); });
  EXPECT_EQ(seen[0], caller);
  EXPECT_NE(seen[1], caller);
}

TEST(ThreadPool, DefaultSizeIsAllCores) {
  ThreadPool pool(0);
  EXPECT_GE(pool.size(), 1);
}

// Runs split(n, fn) and checks that fn saw every index of [0, n) exactly once, in non-empty
// chunks; returns the chunks.
template <class Split>
std::vector<std::pair<int64_t, int64_t>> covered_once(int64_t n, Split split) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  split(n, [&](int64_t b, int64_t e) {
    EXPECT_LT(b, e);
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    chunks.emplace_back(b, e);
  });
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
  return chunks;
}

TEST(ThreadPool, ParallelForCoversRangeOnceWithAlignment) {
  for (int n_threads : {1, 2, 3, 4})
    for (int64_t align : {1, 16, 32})
      for (int64_t n : {0, 1, 5, 16, 17, 33, 1000, 4096, 14336}) {
        ThreadPool pool(n_threads);
        const auto chunks = covered_once(n, [&](int64_t len, const auto& fn) {
          pool.parallel_for(len, align, fn);
        });
        ASSERT_LE(chunks.size(), static_cast<size_t>(n_threads));
        for (const auto& c : chunks) {
          EXPECT_EQ(c.first % align, 0) << "chunk begin " << c.first;
          if (c.second != n) {
            EXPECT_EQ(c.second % align, 0) << "chunk end " << c.second;
          }
        }
      }
}

TEST(ThreadPool, ParallelForDynamicCoversRangeOnceInChunks) {
  for (int n_threads : {1, 2, 3, 4})
    for (int64_t chunk : {1, 16, 100})
      for (int64_t n : {0, 1, 5, 16, 17, 33, 1000, 4096}) {
        ThreadPool pool(n_threads);
        const auto chunks = covered_once(n, [&](int64_t len, const auto& fn) {
          pool.parallel_for_dynamic(len, chunk, fn);
        });
        EXPECT_EQ(static_cast<int64_t>(chunks.size()), (n + chunk - 1) / chunk);
        for (const auto& c : chunks) {
          EXPECT_EQ(c.first % chunk, 0) << "chunk begin " << c.first;
          EXPECT_TRUE(c.second == n || c.second - c.first == chunk) << "chunk end " << c.second;
        }
      }
  // Exceptions reach the caller and the pool stays usable; nested calls run serially.
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for_dynamic(
                   1000, 10, [](int64_t b, int64_t) { if (b == 500) throw std::logic_error("x"); }),
               std::logic_error);
  std::atomic<int64_t> sum{0};
  pool.run([&](int, int) {
    pool.parallel_for_dynamic(100, 7, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  });
  EXPECT_EQ(sum.load(), 200);
}

TEST(ThreadPool, ExceptionsReachTheCaller) {
  for (int n_threads : {1, 2, 3}) {
    ThreadPool pool(n_threads);
    for (int thrower = 0; thrower < n_threads; ++thrower) {
      std::atomic<int> finished{0};
      try {
        pool.run([&](int i, int) {
          if (i == thrower) throw std::runtime_error("job " + std::to_string(i));
          finished.fetch_add(1);
        });
        ADD_FAILURE() << "no exception";
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "job " + std::to_string(thrower));
      }
      EXPECT_EQ(finished.load(), n_threads - 1);  // the other threads still ran
      // The pool is still usable.
      std::atomic<int> ok{0};
      pool.run([&](int, int) { ok.fetch_add(1); });
      EXPECT_EQ(ok.load(), n_threads);
    }
    // Every thread throws: the lowest index wins.
    try {
      pool.run([](int i, int) { throw std::runtime_error(std::to_string(i)); });
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "0");
    }
    EXPECT_THROW(pool.parallel_for(1000, 1, [](int64_t, int64_t) { throw std::logic_error("x"); }),
                 std::logic_error);
  }
}

TEST(ThreadPool, NestedRunIsSerialNotDeadlocked) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run([&](int, int) { pool.run([&](int, int) { inner.fetch_add(1); }); });
  EXPECT_EQ(inner.load(), 4);
}

TEST(ThreadPool, SurvivesSleepAndManyJobs) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 3; ++rep) {
    // Let the worker go to sleep on the condition variable, then wake it.
    std::this_thread::sleep_for(std::chrono::microseconds(3 * ThreadPool::kSpinMicros));
    for (int i = 0; i < 20000; ++i) pool.run([&](int t, int) { sum.fetch_add(t + 1); });
  }
  EXPECT_EQ(sum.load(), 3 * 20000 * 3);
}

TEST(ThreadPool, ConcurrentCallersAreSerialized) {
  ThreadPool pool(2);
  std::atomic<int> total{0};
  auto hammer = [&] {
    for (int i = 0; i < 2000; ++i) pool.run([&](int, int) { total.fetch_add(1); });
  };
  std::thread a(hammer), b(hammer);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 2000 * 2);
}

// Not an assertion (the machine is shared): prints the cost of an empty run() for the report.
TEST(ThreadPool, DispatchLatency) {
  for (int n_threads : {1, 2}) {
    ThreadPool pool(n_threads);
    const int kRuns = 20000;
    for (int i = 0; i < 1000; ++i) pool.run([](int, int) {});
    std::vector<double> per_batch;
    for (int batch = 0; batch < 5; ++batch) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kRuns; ++i) pool.run([](int, int) {});
      const auto t1 = std::chrono::steady_clock::now();
      per_batch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / kRuns);
    }
    std::sort(per_batch.begin(), per_batch.end());
    std::printf("ThreadPool(%d): empty run() %.3f us (median of 5 x %d)\n", n_threads, per_batch[2],
                kRuns);
  }
}

}  // namespace
}  // namespace slmc::runtime
