// threads.cpp — the worker pool behind parallel_for. Workers sleep on a condition
// variable between jobs; a job is one function pointer plus context, run once per slice.
// One job runs at a time (a mutex serialises concurrent callers from Python threads).
#include "cpu/threads.h"

#include <sched.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace fastnn {
namespace {

thread_local bool inside_job = false;

class Pool {
 public:
  void run(int64_t n, int workers, RangeFn fn, void* context) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    ensure_workers(workers - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = fn;
      context_ = context;
      n_ = n;
      parts_ = workers;
      pending_ = workers - 1;
      ++generation_;
    }
    wake_.notify_all();
    run_slice(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
  }

 private:
  void run_slice(int t) {
    inside_job = true;
    fn_(context_, slice_begin(n_, parts_, t), slice_begin(n_, parts_, t + 1), t);
    inside_job = false;
  }

  // Workers are created on demand and never destroyed: the pool lives for the process.
  void ensure_workers(int count) {
    while (static_cast<int>(threads_.size()) < count) {
      const int index = static_cast<int>(threads_.size()) + 1;
      // The worker starts from the generation before the job about to be posted, so
      // it cannot miss that job however late the OS starts it.
      const uint64_t seen = generation_;
      threads_.emplace_back([this, index, seen] { worker_loop(index, seen); });
      threads_.back().detach();
    }
  }

  void worker_loop(int index, uint64_t seen) {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= parts_) continue;
      lock.unlock();
      run_slice(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  uint64_t generation_ = 0;
  RangeFn fn_ = nullptr;
  void* context_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  int pending_ = 0;
};

Pool& pool() {
  static Pool* instance = new Pool();  // leaked on purpose: workers outlive static teardown
  return *instance;
}

int& configured_threads() {
  static int threads = max_threads();
  return threads;
}

}  // namespace

int max_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int get_num_threads() { return configured_threads(); }

void set_num_threads(int n) {
  if (n < 1) fail("num_threads must be >= 1, got ", n);
  if (n > 1024) fail("num_threads must be <= 1024, got ", n);
  configured_threads() = n;
}

void parallel_for_impl(int64_t n, int workers, RangeFn fn, void* context) {
  if (n <= 0) return;
  workers = static_cast<int>(std::min<int64_t>(std::max(workers, 1), n));
  if (workers == 1 || inside_job) {
    fn(context, 0, n, 0);
    return;
  }
  pool().run(n, workers, fn, context);
}

}  // namespace fastnn
