// pool.cu — NHWC max-pooling ('valid' padding) with its argmax (window index di·pool_w +
// dj, first maximum in row-major window order wins, as on the CPU), and its gradient
// gathered per input element: each dx is written once, summed over its windows in a fixed
// order, so there is no zero-fill, no scatter and no atomics.
#include <algorithm>
#include <climits>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

// The geometry in the index type of the launch: 32-bit when every input and output offset
// fits, since 64-bit division costs several times as much per element.
template <class Index>
struct PoolDims {
  Index h, w, c, pool_h, pool_w, stride_h, stride_w, oh, ow;
};

template <class Index>
PoolDims<Index> dims(const Pool2dGeometry& g) {
  return {static_cast<Index>(g.h),        static_cast<Index>(g.w),
          static_cast<Index>(g.c),        static_cast<Index>(g.pool_h),
          static_cast<Index>(g.pool_w),   static_cast<Index>(g.stride_h),
          static_cast<Index>(g.stride_w), static_cast<Index>(g.oh),
          static_cast<Index>(g.ow)};
}

// One thread per output (img, oy, ox, ch), channel innermost: a warp reads a contiguous
// run of channels at every window position.
template <class Index>
__global__ void maxpool2d_forward_kernel(PoolDims<Index> d, int64_t count,
                                         const float* __restrict__ x, float* __restrict__ y,
                                         int32_t* __restrict__ argmax) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const Index out = static_cast<Index>(i);
    const Index ch = out % d.c;
    Index rest = out / d.c;
    const Index ox = rest % d.ow;
    rest /= d.ow;
    const Index oy = rest % d.oh;
    const Index img = rest / d.oh;
    const float* corner =
        x + ((img * d.h + oy * d.stride_h) * d.w + ox * d.stride_w) * d.c + ch;
    float best = corner[0];
    int32_t where = 0;
    for (Index di = 0; di < d.pool_h; ++di) {
      for (Index dj = di == 0 ? 1 : 0; dj < d.pool_w; ++dj) {
        const float v = corner[(di * d.w + dj) * d.c];
        if (v > best) {  // strict: a tie keeps the earlier position
          best = v;
          where = static_cast<int32_t>(di * d.pool_w + dj);
        }
      }
    }
    y[i] = best;
    argmax[i] = where;
  }
}

// The first window (along one axis) that covers input position `at`: windows k cover
// [k·stride, k·stride + pool), so k >= ceil((at − pool + 1) / stride), clamped at 0.
template <class Index>
__device__ Index first_window(Index at, Index pool, Index stride) {
  return at < pool ? 0 : (at - pool + stride) / stride;
}

// The last window that covers `at`: k <= floor(at / stride), and k < out.
template <class Index>
__device__ Index last_window(Index at, Index stride, Index out) {
  const Index k = at / stride;
  return k < out - 1 ? k : out - 1;
}

// One thread per input (img, ih, iw, ch): the sum of dy over the windows whose argmax is
// this element (and, with relu_y, whose y > 0), taken in ascending (oy, ox) order — the
// order in which the CPU's overlapping path adds them. An empty range (a row or column
// that no window covers) leaves 0.
template <class Index>
__global__ void maxpool2d_backward_kernel(PoolDims<Index> d, int64_t count,
                                          const float* __restrict__ dy,
                                          const int32_t* __restrict__ argmax,
                                          const float* __restrict__ relu_y,
                                          float* __restrict__ dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const Index in = static_cast<Index>(i);
    const Index ch = in % d.c;
    Index rest = in / d.c;
    const Index iw = rest % d.w;
    rest /= d.w;
    const Index ih = rest % d.h;
    const Index img = rest / d.h;
    const Index oy_end = last_window(ih, d.stride_h, d.oh);
    const Index ox_begin = first_window(iw, d.pool_w, d.stride_w);
    const Index ox_end = last_window(iw, d.stride_w, d.ow);
    float sum = 0.0f;
    for (Index oy = first_window(ih, d.pool_h, d.stride_h); oy <= oy_end; ++oy) {
      const Index di = ih - oy * d.stride_h;
      const Index row = (img * d.oh + oy) * d.ow;
      for (Index ox = ox_begin; ox <= ox_end; ++ox) {
        const Index at = (row + ox) * d.c + ch;
        const int32_t index = static_cast<int32_t>(di * d.pool_w + (iw - ox * d.stride_w));
        if (argmax[at] == index && (relu_y == nullptr || relu_y[at] > 0.0f)) sum += dy[at];
      }
    }
    dx[i] = sum;
  }
}

template <class Index>
void launch_forward(const Pool2dGeometry& g, int64_t outputs, const float* x, float* y,
                    int32_t* argmax, cudaStream_t stream) {
  maxpool2d_forward_kernel<Index>
      <<<grid_blocks(outputs), kGridThreads, 0, stream>>>(dims<Index>(g), outputs, x, y, argmax);
  check_launch("maxpool2d_forward_kernel");
}

template <class Index>
void launch_backward(const Pool2dGeometry& g, int64_t inputs, const float* dy,
                     const int32_t* argmax, const float* relu_y, float* dx,
                     cudaStream_t stream) {
  maxpool2d_backward_kernel<Index><<<grid_blocks(inputs), kGridThreads, 0, stream>>>(
      dims<Index>(g), inputs, dy, argmax, relu_y, dx);
  check_launch("maxpool2d_backward_kernel");
}

// Every offset either kernel forms is below the larger of the two element counts, and
// first_window forms at most size + stride along each axis.
bool fits_int32(const Pool2dGeometry& g) {
  return std::max(g.n * g.h * g.w * g.c, g.n * g.oh * g.ow * g.c) <= INT32_MAX &&
         g.h + g.stride_h <= INT32_MAX && g.w + g.stride_w <= INT32_MAX;
}

}  // namespace

void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  const int64_t outputs = g.n * g.oh * g.ow * g.c;
  if (outputs <= 0) return;
  if (fits_int32(g)) {
    launch_forward<int32_t>(g, outputs, x, y, argmax, stream);
  } else {
    launch_forward<int64_t>(g, outputs, x, y, argmax, stream);
  }
}

void maxpool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                        const float* relu_y, float* dx, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  const int64_t inputs = g.n * g.h * g.w * g.c;
  if (inputs <= 0) return;
  if (fits_int32(g)) {
    launch_backward<int32_t>(g, inputs, dy, argmax, relu_y, dx, stream);
  } else {
    launch_backward<int64_t>(g, inputs, dy, argmax, relu_y, dx, stream);
  }
}

}  // namespace fastnn::cuda

// ---- STUBS (temporary) ----
#include "common.h"
namespace fastnn::cuda {

void avgpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, const Exec& ex) {
  fail("avgpool2d_forward: not implemented yet (a stub being replaced in this change)");
}
void avgpool2d_backward(const Pool2dGeometry& g, const float* dy, float* dx, const Exec& ex) {
  fail("avgpool2d_backward: not implemented yet (a stub being replaced in this change)");
}

}  // namespace fastnn::cuda
