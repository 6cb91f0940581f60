// pool.cu — NHWC pooling: max-pooling with its argmax (window index di·pool_w + dj, first
// maximum in row-major window order wins, as on the CPU) and average pooling, each with
// its gradient gathered per input element: each dx is written once, summed over its
// windows in a fixed order, so there is no zero-fill, no scatter and no atomics. 'same'
// padding clips each window to the input (outside positions are never a maximum and are
// not counted in a mean).
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
  Index h, w, c, pool_h, pool_w, stride_h, stride_w, oh, ow, pad_top, pad_left;
};

template <class Index>
PoolDims<Index> dims(const Pool2dGeometry& g) {
  return {static_cast<Index>(g.h),        static_cast<Index>(g.w),
          static_cast<Index>(g.c),        static_cast<Index>(g.pool_h),
          static_cast<Index>(g.pool_w),   static_cast<Index>(g.stride_h),
          static_cast<Index>(g.stride_w), static_cast<Index>(g.oh),
          static_cast<Index>(g.ow),       static_cast<Index>(g.pad_top),
          static_cast<Index>(g.pad_left)};
}

// The positions [first, last) of window `o` along one axis that lie inside the input (the
// window starts at o·stride − pad), as cpu/pool.cpp's window_inside.
template <class Index>
struct Inside {
  Index first, last;
};

template <class Index>
__device__ Inside<Index> window_inside(Index o, Index stride, Index pad, Index pool, Index size) {
  const Index start = o * stride - pad;
  return {start < 0 ? -start : Index{0}, start + pool > size ? size - start : pool};
}

// The windows [first, last] along one axis that cover padded position `at` (input
// position + pad): window k covers [k·stride, k·stride + pool), and k < out. Empty
// (first > last) where no window reaches.
template <class Index>
__device__ Inside<Index> windows_covering(Index at, Index stride, Index pool, Index out) {
  const Index last = at / stride;
  return {at < pool ? Index{0} : (at - pool) / stride + 1, last < out - 1 ? last : out - 1};
}

// Output or input element i as (img, row, col, ch) of an image of rows × cols pixels.
template <class Index>
struct Pixel {
  Index img, row, col, ch;
};

template <class Index>
__device__ Pixel<Index> pixel_of(Index i, Index rows, Index cols, Index c) {
  const Index ch = i % c;
  Index rest = i / c;
  const Index col = rest % cols;
  rest /= cols;
  return {rest / rows, rest % rows, col, ch};
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
    const Pixel<Index> o = pixel_of(static_cast<Index>(i), d.oh, d.ow, d.c);
    const Inside<Index> rows = window_inside(o.row, d.stride_h, d.pad_top, d.pool_h, d.h);
    const Inside<Index> cols = window_inside(o.col, d.stride_w, d.pad_left, d.pool_w, d.w);
    const float* first = x + ((o.img * d.h + o.row * d.stride_h - d.pad_top + rows.first) * d.w +
                              o.col * d.stride_w - d.pad_left + cols.first) * d.c + o.ch;
    float best = first[0];
    int32_t where = static_cast<int32_t>(rows.first * d.pool_w + cols.first);
    for (Index di = rows.first; di < rows.last; ++di) {
      const float* line = first + (di - rows.first) * d.w * d.c;
      for (Index dj = di == rows.first ? cols.first + 1 : cols.first; dj < cols.last; ++dj) {
        const float v = line[(dj - cols.first) * d.c];
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
    const Pixel<Index> in = pixel_of(static_cast<Index>(i), d.h, d.w, d.c);
    const Index at_h = in.row + d.pad_top, at_w = in.col + d.pad_left;
    const Inside<Index> oys = windows_covering(at_h, d.stride_h, d.pool_h, d.oh);
    const Inside<Index> oxs = windows_covering(at_w, d.stride_w, d.pool_w, d.ow);
    float sum = 0.0f;
    for (Index oy = oys.first; oy <= oys.last; ++oy) {
      const Index di = at_h - oy * d.stride_h;
      const Index row = (in.img * d.oh + oy) * d.ow;
      for (Index ox = oxs.first; ox <= oxs.last; ++ox) {
        const Index at = (row + ox) * d.c + in.ch;
        const int32_t index = static_cast<int32_t>(di * d.pool_w + (at_w - ox * d.stride_w));
        if (argmax[at] == index && (relu_y == nullptr || relu_y[at] > 0.0f)) sum += dy[at];
      }
    }
    dx[i] = sum;
  }
}

// One thread per output: the sum of its window's positions inside the input in row-major
// order, divided by their count (the CPU's order and operations).
template <class Index>
__global__ void avgpool2d_forward_kernel(PoolDims<Index> d, int64_t count,
                                         const float* __restrict__ x, float* __restrict__ y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const Pixel<Index> o = pixel_of(static_cast<Index>(i), d.oh, d.ow, d.c);
    const Inside<Index> rows = window_inside(o.row, d.stride_h, d.pad_top, d.pool_h, d.h);
    const Inside<Index> cols = window_inside(o.col, d.stride_w, d.pad_left, d.pool_w, d.w);
    const float* first = x + ((o.img * d.h + o.row * d.stride_h - d.pad_top + rows.first) * d.w +
                              o.col * d.stride_w - d.pad_left + cols.first) * d.c + o.ch;
    const Index height = rows.last - rows.first, width = cols.last - cols.first;
    float sum = 0.0f;
    for (Index di = 0; di < height; ++di) {
      const float* line = first + di * d.w * d.c;
      for (Index dj = 0; dj < width; ++dj) sum += line[dj * d.c];
    }
    y[i] = sum / static_cast<float>(height * width);
  }
}

// One thread per input: the sum of dy · (1/count) over the windows that cover it, in
// ascending (oy, ox) order (the CPU's).
template <class Index>
__global__ void avgpool2d_backward_kernel(PoolDims<Index> d, int64_t count,
                                          const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const Pixel<Index> in = pixel_of(static_cast<Index>(i), d.h, d.w, d.c);
    const Inside<Index> oys = windows_covering(in.row + d.pad_top, d.stride_h, d.pool_h, d.oh);
    const Inside<Index> oxs = windows_covering(in.col + d.pad_left, d.stride_w, d.pool_w, d.ow);
    float sum = 0.0f;
    for (Index oy = oys.first; oy <= oys.last; ++oy) {
      const Inside<Index> rows = window_inside(oy, d.stride_h, d.pad_top, d.pool_h, d.h);
      const float* dy_row = dy + (in.img * d.oh + oy) * d.ow * d.c + in.ch;
      for (Index ox = oxs.first; ox <= oxs.last; ++ox) {
        const Inside<Index> cols = window_inside(ox, d.stride_w, d.pad_left, d.pool_w, d.w);
        sum += dy_row[ox * d.c] *
               (1.0f / static_cast<float>((rows.last - rows.first) * (cols.last - cols.first)));
      }
    }
    dx[i] = sum;
  }
}

// Every offset a kernel forms is below the larger of the two element counts, and a window
// position (padded) below size + pool + stride along each axis.
bool fits_int32(const Pool2dGeometry& g) {
  return std::max(g.n * g.h * g.w * g.c, g.n * g.oh * g.ow * g.c) <= INT32_MAX &&
         g.h + g.pool_h + g.stride_h <= INT32_MAX && g.w + g.pool_w + g.stride_w <= INT32_MAX;
}

// launch(Index{}) with Index = int32_t where every offset fits, else int64_t.
template <class F>
void with_index(const Pool2dGeometry& g, F&& launch) {
  if (fits_int32(g)) {
    launch(int32_t{});
  } else {
    launch(int64_t{});
  }
}

}  // namespace

void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       const Exec& ex) {
  const int64_t outputs = g.n * g.oh * g.ow * g.c;
  if (outputs <= 0) return;
  with_index(g, [&](auto index) {
    using Index = decltype(index);
    maxpool2d_forward_kernel<Index><<<grid_blocks(outputs), kGridThreads, 0, stream_of(ex)>>>(
        dims<Index>(g), outputs, x, y, argmax);
  });
  check_launch("maxpool2d_forward_kernel");
}

void maxpool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                        const float* relu_y, float* dx, const Exec& ex) {
  const int64_t inputs = g.n * g.h * g.w * g.c;
  if (inputs <= 0) return;
  with_index(g, [&](auto index) {
    using Index = decltype(index);
    maxpool2d_backward_kernel<Index><<<grid_blocks(inputs), kGridThreads, 0, stream_of(ex)>>>(
        dims<Index>(g), inputs, dy, argmax, relu_y, dx);
  });
  check_launch("maxpool2d_backward_kernel");
}

void avgpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, const Exec& ex) {
  const int64_t outputs = g.n * g.oh * g.ow * g.c;
  if (outputs <= 0) return;
  with_index(g, [&](auto index) {
    using Index = decltype(index);
    avgpool2d_forward_kernel<Index><<<grid_blocks(outputs), kGridThreads, 0, stream_of(ex)>>>(
        dims<Index>(g), outputs, x, y);
  });
  check_launch("avgpool2d_forward_kernel");
}

void avgpool2d_backward(const Pool2dGeometry& g, const float* dy, float* dx, const Exec& ex) {
  const int64_t inputs = g.n * g.h * g.w * g.c;
  if (inputs <= 0) return;
  with_index(g, [&](auto index) {
    using Index = decltype(index);
    avgpool2d_backward_kernel<Index><<<grid_blocks(inputs), kGridThreads, 0, stream_of(ex)>>>(
        dims<Index>(g), inputs, dy, dx);
  });
  check_launch("avgpool2d_backward_kernel");
}

}  // namespace fastnn::cuda
