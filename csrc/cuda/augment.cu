// augment.cu — Keras's random image layers on the GPU (augment.h), the CPU's arithmetic:
// flips, crops and the affine modes (rotation, zoom, translation) form one output element
// per thread (its image's parameters drawn by augment_draw on the spot: a few integer
// hashes, and for rotation a double sincos, cheap beside the memory traffic); contrast runs
// one block per image, each channel's mean a fixed tree of double partial sums (no
// atomics: the same bits every run). The resident variant draws from the stream
// splitmix64(s.stream + iteration), the iteration read from TrainState on the device.
#include <algorithm>
#include <climits>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

using Mode = AugmentStep::Mode;

// The coins' stream: s.stream, or the resident engine's for this iteration.
__device__ uint64_t coin_stream(const AugmentStep& s, const TrainState* state) {
  return state ? splitmix64(s.stream + static_cast<uint64_t>(state->iteration)) : s.stream;
}

__global__ void copy_kernel(int64_t count, const float* x, float* y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    y[i] = x[i];
  }
}

// Output element (image b, row i, column j, channel ch) of flip, crop or an affine mode.
// Index: 32-bit when every offset of x and y fits (64-bit division costs several times as
// much per element).
template <class Index>
__global__ void augment_kernel(AugmentStep s, const float* __restrict__ x, float* __restrict__ y,
                               bool training, const TrainState* __restrict__ state) {
  const uint64_t stream = coin_stream(s, state);
  const Index c = static_cast<Index>(s.c), ow = static_cast<Index>(s.ow);
  const Index w = static_cast<Index>(s.w), h = static_cast<Index>(s.h);
  const Index out_image = static_cast<Index>(s.oh) * ow * c;
  const Index in_image = h * w * c;
  const Index count = static_cast<Index>(s.n) * out_image;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index e = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; e < count;
       e += stride) {
    const Index b = e / out_image, r = e - b * out_image;
    const Index pixel = r / c, ch = r - pixel * c;
    const Index i = pixel / ow, j = pixel - i * ow;
    const float* in = x + b * in_image;
    // Crop's window is one per batch (image 0's coins).
    const AugmentDraw d = augment_draw(s, stream, s.mode == Mode::Crop ? 0 : b, training);
    float value;
    if (s.mode == Mode::Flip) {
      const Index si = d.flip_v ? h - 1 - i : i, sj = d.flip_h ? w - 1 - j : j;
      value = in[(si * w + sj) * c + ch];
    } else if (s.mode == Mode::Crop) {
      const Index top = static_cast<Index>(d.top), left = static_cast<Index>(d.left);
      if (d.crop_h == s.oh && d.crop_w == s.ow) {
        value = in[((top + i) * w + left + j) * c + ch];
      } else {
        const AugmentResizeTap ty = augment_resize_tap(i, s.oh, d.crop_h);
        const AugmentResizeTap tx = augment_resize_tap(j, s.ow, d.crop_w);
        const float* row0 = in + ((top + static_cast<Index>(ty.lo)) * w + left) * c + ch;
        const float* row1 = in + ((top + static_cast<Index>(ty.hi)) * w + left) * c + ch;
        const Index x0 = static_cast<Index>(tx.lo) * c, x1 = static_cast<Index>(tx.hi) * c;
        const float w00 = (1.0f - ty.weight) * (1.0f - tx.weight), w01 = (1.0f - ty.weight) * tx.weight;
        const float w10 = ty.weight * (1.0f - tx.weight), w11 = ty.weight * tx.weight;
        value = w00 * row0[x0] + w01 * row0[x1] + w10 * row1[x0] + w11 * row1[x1];
      }
    } else {  // Rotation, Zoom, Translation
      const double dj = static_cast<double>(j), di = static_cast<double>(i);
      const AugmentTaps t = augment_taps(s, d.m[0] * dj + (d.m[1] * di + d.m[2]),
                                         d.m[3] * dj + (d.m[4] * di + d.m[5]));
      if (s.interpolation == AugmentStep::Interpolation::Nearest) {
        value = t.pixel[0] < 0 ? s.fill_value : in[static_cast<Index>(t.pixel[0]) * c + ch];
      } else {
        value = 0.0f;
        for (int k = 0; k < 4; ++k) {
          value += t.weight[k] *
                   (t.pixel[k] < 0 ? s.fill_value : in[static_cast<Index>(t.pixel[k]) * c + ch]);
        }
      }
    }
    y[e] = value;
  }
}

// Contrast, one block per image (grid-stride over the batch): per channel, each thread sums
// its pixels (strided by the block) in double, a fixed tree adds the block's partial sums,
// then y = clip((x − mean)·factor + mean, value_range). kGridThreads is a power of 2.
__global__ void contrast_kernel(AugmentStep s, const float* __restrict__ x, float* __restrict__ y,
                                const TrainState* __restrict__ state) {
  __shared__ double partial[kGridThreads];
  const uint64_t stream = coin_stream(s, state);
  const int64_t pixels = s.h * s.w, c = s.c;
  const int tid = static_cast<int>(threadIdx.x);
  for (int64_t b = blockIdx.x; b < s.n; b += gridDim.x) {
    const float factor = static_cast<float>(augment_draw(s, stream, b, true).contrast);
    const float* in = x + b * pixels * c;
    float* out = y + b * pixels * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      double sum = 0.0;
      for (int64_t p = tid; p < pixels; p += blockDim.x) sum += in[p * c + ch];
      partial[tid] = sum;
      __syncthreads();
      for (int half = kGridThreads / 2; half > 0; half /= 2) {
        if (tid < half) partial[tid] += partial[tid + half];
        __syncthreads();
      }
      const float mean = static_cast<float>(partial[0] / static_cast<double>(pixels));
      __syncthreads();  // every thread has read partial[0] before the next channel's sums
      for (int64_t p = tid; p < pixels; p += blockDim.x) {
        const float v = (in[p * c + ch] - mean) * factor + mean;
        out[p * c + ch] = v < s.value_lo ? s.value_lo : (v > s.value_hi ? s.value_hi : v);
      }
    }
  }
}

void launch(const AugmentStep& s, const float* x, float* y, bool training,
            const TrainState* state, cudaStream_t stream) {
  if (s.n <= 0 || s.c <= 0 || s.oh <= 0 || s.ow <= 0) return;
  const int64_t in_count = s.n * s.h * s.w * s.c, out_count = s.n * s.oh * s.ow * s.c;
  if (!training && s.mode != Mode::Crop) {  // inference: the identity
    copy_kernel<<<grid_blocks(in_count), kGridThreads, 0, stream>>>(in_count, x, y);
    check_launch("augment copy_kernel");
    return;
  }
  if (s.mode == Mode::Contrast) {
    const int blocks = static_cast<int>(std::min<int64_t>(s.n, kMaxGridBlocks));
    contrast_kernel<<<blocks, kGridThreads, 0, stream>>>(s, x, y, state);
    check_launch("augment contrast_kernel");
    return;
  }
  if (std::max(in_count, out_count) < INT_MAX - static_cast<int64_t>(kGridThreads) * kMaxGridBlocks) {
    augment_kernel<int32_t><<<grid_blocks(out_count), kGridThreads, 0, stream>>>(s, x, y, training,
                                                                               state);
  } else {
    augment_kernel<int64_t><<<grid_blocks(out_count), kGridThreads, 0, stream>>>(s, x, y, training,
                                                                               state);
  }
  check_launch("augment_kernel");
}

}  // namespace

void augment(const AugmentStep& s, const float* x, float* y, bool training, const Exec& ex) {
  launch(s, x, y, training, nullptr, stream_of(ex));
}

void augment_resident(const AugmentStep& s, const float* x, float* y, const TrainState* state,
                      cudaStream_t stream) {
  launch(s, x, y, true, state, stream);
}

}  // namespace fastnn::cuda
