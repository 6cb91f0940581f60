// threads.cpp — the worker pool behind parallel_for. A job is one function pointer plus
// context, run once per slice. Between jobs a worker first spins for a short while
// (a training step runs some 30 jobs back to back, and waking a sleeping thread costs
// tens of microseconds), then sleeps on a condition variable. One job runs at a time
// (a mutex serialises concurrent callers from Python threads).
#include "cpu/threads.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace fastnn {
namespace {

thread_local bool inside_job = false;

// How long an idle thread polls before it sleeps: longer than the gaps between the
// jobs of one training step, short enough to cost nothing noticeable between steps.
constexpr auto kSpin = std::chrono::microseconds(200);

static inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls until done() holds or kSpin passes; returns done().
template <class Done>
bool spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 63 && std::chrono::steady_clock::now() > deadline) return done();
  }
}

class Pool {
 public:
  void run(int64_t n, int workers, RangeFn fn, void* context) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    ensure_workers(workers - 1);
    fn_ = fn;
    context_ = context;
    n_ = n;
    pending_.store(workers - 1, std::memory_order_relaxed);
    {
      // Published under the mutex, so a worker that checked `posted_` and is about to
      // wait cannot miss the notify; the release store hands over the fields above.
      std::lock_guard<std::mutex> lock(mutex_);
      const uint64_t job = (posted_.load(std::memory_order_relaxed) >> 16) + 1;
      posted_.store(job << 16 | static_cast<uint64_t>(workers), std::memory_order_release);
    }
    wake_.notify_all();
    run_slice(0);
    const auto finished = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(finished)) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, finished);
    }
  }

 private:
  void run_slice(int t) {
    inside_job = true;
    const int parts = static_cast<int>(posted_.load(std::memory_order_relaxed) & 0xFFFF);
    fn_(context_, slice_begin(n_, parts, t), slice_begin(n_, parts, t + 1), t);
    inside_job = false;
  }

  // Workers are created on demand and never destroyed: the pool lives for the process.
  void ensure_workers(int count) {
    while (static_cast<int>(threads_.size()) < count) {
      const int index = static_cast<int>(threads_.size()) + 1;
      // The worker starts from the job before the one about to be posted, so
      // it cannot miss that job however late the OS starts it.
      const uint64_t seen = posted_.load(std::memory_order_relaxed);
      threads_.emplace_back([this, index, seen] { worker_loop(index, seen); });
      threads_.back().detach();
    }
  }

  void worker_loop(int index, uint64_t seen) {
    for (;;) {
      const auto posted = [&] { return posted_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(posted)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, posted);
      }
      // One load gives the job and its slice count together: a worker left out of one
      // job may wake only after the next was posted, and must not mix the two up.
      seen = posted_.load(std::memory_order_acquire);
      if (index >= static_cast<int>(seen & 0xFFFF)) continue;
      run_slice(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // as above: the caller may be about to wait
        done_.notify_one();
      }
    }
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> posted_{0};  // job number << 16 | its slice count
  std::atomic<int> pending_{0};      // slices of the current job not yet finished
  RangeFn fn_ = nullptr;
  void* context_ = nullptr;
  int64_t n_ = 0;
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
