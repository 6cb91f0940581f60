// threads.h — a fixed pool of worker threads and parallel_for over a static partition.
// The range [0, n) is cut into `workers` contiguous slices of near-equal size, slice t
// always goes to worker t: the same call splits work the same way every time.
#pragma once

#include <cstdint>
#include <type_traits>

namespace fastnn {

int max_threads();             // cores this process may run on
int get_num_threads();         // the thread count kernels are given
void set_num_threads(int n);   // 1 <= n; grows the pool if needed

using RangeFn = void (*)(void* context, int64_t begin, int64_t end, int worker);
void parallel_for_impl(int64_t n, int workers, RangeFn fn, void* context);

// Runs f(begin, end, worker) for min(workers, n) slices of [0, n); worker 0 is the
// calling thread. Nested calls run serially. static: each ISA's translation unit gets
// its own copy (no cross-ISA symbol merging).
template <class F>
static inline void parallel_for(int64_t n, int workers, F&& f) {
  using Fn = typename std::remove_reference<F>::type;
  parallel_for_impl(
      n, workers,
      [](void* context, int64_t begin, int64_t end, int worker) {
        (*static_cast<Fn*>(context))(begin, end, worker);
      },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Element-wise loops: body(begin, end) over [0, count) in blocks of `block` elements,
// so that small arrays stay on one thread (waking one costs microseconds).
template <class F>
static inline void parallel_for_blocks(int64_t count, int64_t block, int workers, F&& body) {
  parallel_for((count + block - 1) / block, workers, [&](int64_t begin, int64_t end, int) {
    body(begin * block, end * block < count ? end * block : count);
  });
}

// The bounds of slice `t` when [0, n) is cut into `parts` slices.
static inline int64_t slice_begin(int64_t n, int parts, int t) { return n * t / parts; }

}  // namespace fastnn
