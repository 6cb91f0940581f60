// batchnorm.cu — batch normalisation over the last axis of x (rows × channels): the
// training forward, the inference forward and the backward, with cpu/batchnorm.cpp's
// formulas. Blocks of 32 channels × 8 rows: a warp reads 32 consecutive channels of one
// row (128 B), and each thread keeps one channel's per-thread constants in registers.
//
// Reduction order (fixed by rows and channels alone, so the bits never vary, and no
// atomics): a sum over rows is two-stage. Stage 1 cuts rows into row_blocks(rows) slices
// (grid.y); thread (x, y) of a slice sums, in double, rows y, y + 8, … of its channel, and
// thread y = 0 adds the 8 in y order into partial[slice][channel]. Stage 2: one thread per
// channel adds the slices in order. The statistics take two such sums: the mean, then the
// squared deviations from it (x, a few MiB, is read again from L2).
#include <algorithm>
#include <cmath>

#include "cuda/check.h"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

constexpr int kTileChannels = 32;  // threadIdx.x
constexpr int kTileRows = 8;       // threadIdx.y
constexpr int kChannelThreads = 256;  // stage 2: one thread per channel
// Stage 1's slices: at least 64 rows each (8 per thread), at most 256 of them — with
// 32 channels, 256 blocks of 256 threads fill an H200's 132 SMs.
constexpr int64_t kMaxRowBlocks = 256;
constexpr int64_t kMinSliceRows = 64;
// Element-wise kernels: a grid-stride loop over rows past this many blocks.
constexpr int64_t kMaxElementBlocks = 4096;

int64_t row_blocks(int64_t rows) {
  return std::clamp<int64_t>((rows + kMinSliceRows - 1) / kMinSliceRows, 1, kMaxRowBlocks);
}

int64_t channel_tiles(int64_t channels) {
  return (channels + kTileChannels - 1) / kTileChannels;
}

// The workspace: partial[2][kMaxRowBlocks][channels] doubles (two sums at once for the
// backward), the batch mean in double (channels), then the backward's coefficients
// dbeta/rows and dgamma/rows (2·channels floats).
struct Scratch {
  double* partial;
  double* mean;
  float* coef;
};

Scratch scratch(const BatchNormGeometry& g, float* workspace) {
  double* partial = reinterpret_cast<double*>(workspace);
  double* mean = partial + 2 * kMaxRowBlocks * g.channels;
  return {partial, mean, reinterpret_cast<float*>(mean + g.channels)};
}

// What a row adds to a channel's sums: x; (x − mean)² about the double mean;
// dy and dy·(x − mean) about the float mean the forward kept.
enum class Sum { X, SquaredDeviation, Gradient };

template <Sum kind>
__global__ void partial_sums_kernel(int64_t rows, int64_t channels, const float* __restrict__ x,
                                    const float* __restrict__ dy, const double* __restrict__ center,
                                    const float* __restrict__ mean, double* __restrict__ partial) {
  __shared__ double tile[2][kTileRows][kTileChannels];
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kTileChannels + threadIdx.x;
  const int64_t slice = blockIdx.y, slices = gridDim.y;
  const int64_t end = rows * (slice + 1) / slices;
  double first = 0.0, second = 0.0;
  if (ch < channels) {
    for (int64_t r = rows * slice / slices + threadIdx.y; r < end; r += kTileRows) {
      const float v = x[r * channels + ch];
      if constexpr (kind == Sum::X) {
        first += v;
      } else if constexpr (kind == Sum::SquaredDeviation) {
        const double d = v - center[ch];
        first += d * d;
      } else {
        const double d = dy[r * channels + ch];
        first += d;
        second += d * (static_cast<double>(v) - mean[ch]);
      }
    }
  }
  tile[0][threadIdx.y][threadIdx.x] = first;
  tile[1][threadIdx.y][threadIdx.x] = second;
  __syncthreads();
  if (threadIdx.y == 0 && ch < channels) {
    double a = 0.0, b = 0.0;
    for (int i = 0; i < kTileRows; ++i) {
      a += tile[0][i][threadIdx.x];
      b += tile[1][i][threadIdx.x];
    }
    partial[slice * channels + ch] = a;
    partial[(kMaxRowBlocks + slice) * channels + ch] = b;
  }
}

// Stage 2: sum `which` (0 or 1) of channel ch over the slices, in slice order.
__device__ double total(const double* partial, int which, int64_t slices, int64_t channels,
                        int64_t ch) {
  const double* column = partial + which * kMaxRowBlocks * channels + ch;
  double sum = 0.0;
  for (int64_t s = 0; s < slices; ++s) sum += column[s * channels];
  return sum;
}

__global__ void mean_kernel(int64_t rows, int64_t channels, int64_t slices,
                            const double* __restrict__ partial, double* __restrict__ mean) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch < channels) mean[ch] = total(partial, 0, slices, channels, ch) / static_cast<double>(rows);
}

// The biased variance, inv_std, and the moving statistics' update, in double.
__global__ void statistics_kernel(BatchNormGeometry g, int64_t slices,
                                  const double* __restrict__ partial,
                                  const double* __restrict__ batch_mean, float* __restrict__ mean,
                                  float* __restrict__ inv_std, float* __restrict__ moving_mean,
                                  float* __restrict__ moving_variance) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch >= g.channels) return;
  const double m = batch_mean[ch];
  const double variance =
      total(partial, 0, slices, g.channels, ch) / static_cast<double>(g.rows);
  const double momentum = g.momentum, rest = 1.0 - momentum;
  mean[ch] = static_cast<float>(m);
  inv_std[ch] = static_cast<float>(1.0 / sqrt(variance + static_cast<double>(g.epsilon)));
  moving_mean[ch] = static_cast<float>(moving_mean[ch] * momentum + m * rest);
  moving_variance[ch] = static_cast<float>(moving_variance[ch] * momentum + variance * rest);
}

__global__ void gradient_sums_kernel(int64_t rows, int64_t channels, int64_t slices,
                                     const double* __restrict__ partial,
                                     const float* __restrict__ inv_std, float* __restrict__ dgamma,
                                     float* __restrict__ dbeta, float* __restrict__ coef) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch >= channels) return;
  const double sum_dy = total(partial, 0, slices, channels, ch);
  const double sum_dy_xhat = total(partial, 1, slices, channels, ch) * inv_std[ch];
  if (dbeta) dbeta[ch] = static_cast<float>(sum_dy);
  if (dgamma) dgamma[ch] = static_cast<float>(sum_dy_xhat);
  coef[ch] = static_cast<float>(sum_dy / static_cast<double>(rows));
  coef[channels + ch] = static_cast<float>(sum_dy_xhat / static_cast<double>(rows));
}

// The rows this thread takes in the element-wise kernels (grid-stride over grid.y).
struct RowWalk {
  int64_t first, step;
};

__device__ RowWalk row_walk() {
  return {static_cast<int64_t>(blockIdx.y) * kTileRows + threadIdx.y,
          static_cast<int64_t>(gridDim.y) * kTileRows};
}

// y = (x − center)·scale + offset down one channel's rows.
__device__ void normalize_column(int64_t rows, int64_t channels, int64_t ch,
                                 const float* __restrict__ x, float* __restrict__ y, float center,
                                 float scale, float offset) {
  const RowWalk walk = row_walk();
  for (int64_t r = walk.first; r < rows; r += walk.step) {
    y[r * channels + ch] = (x[r * channels + ch] - center) * scale + offset;
  }
}

__global__ void normalize_kernel(int64_t rows, int64_t channels, const float* __restrict__ x,
                                 const float* __restrict__ mean, const float* __restrict__ inv_std,
                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                 float* __restrict__ y) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kTileChannels + threadIdx.x;
  if (ch >= channels) return;
  normalize_column(rows, channels, ch, x, y, mean[ch],
                   inv_std[ch] * (gamma ? gamma[ch] : 1.0f), beta ? beta[ch] : 0.0f);
}

__global__ void inference_kernel(BatchNormGeometry g, const float* __restrict__ x,
                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                 const float* __restrict__ moving_mean,
                                 const float* __restrict__ moving_variance, float* __restrict__ y) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kTileChannels + threadIdx.x;
  if (ch >= g.channels) return;
  const double gain = gamma ? gamma[ch] : 1.0;
  const float scale = static_cast<float>(
      gain / sqrt(static_cast<double>(moving_variance[ch]) + static_cast<double>(g.epsilon)));
  normalize_column(g.rows, g.channels, ch, x, y, moving_mean[ch], scale, beta ? beta[ch] : 0.0f);
}

// dx = gamma·inv_std·(dy − dbeta/rows − xhat·dgamma/rows), xhat = (x − mean)·inv_std.
__global__ void input_gradient_kernel(int64_t rows, int64_t channels, const float* __restrict__ x,
                                      const float* __restrict__ gamma,
                                      const float* __restrict__ mean,
                                      const float* __restrict__ inv_std,
                                      const float* __restrict__ dy, const float* __restrict__ coef,
                                      float* __restrict__ dx) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kTileChannels + threadIdx.x;
  if (ch >= channels) return;
  const float center = mean[ch], inv = inv_std[ch];
  const float gain = inv * (gamma ? gamma[ch] : 1.0f);
  const float dbeta_row = coef[ch], dgamma_row = coef[channels + ch];
  const RowWalk walk = row_walk();
  for (int64_t r = walk.first; r < rows; r += walk.step) {
    const int64_t at = r * channels + ch;
    const float xhat = (x[at] - center) * inv;
    dx[at] = gain * ((dy[at] - dbeta_row) - xhat * dgamma_row);
  }
}

dim3 tile_threads() { return dim3(kTileChannels, kTileRows); }

dim3 element_grid(const BatchNormGeometry& g) {
  const int64_t tiles = channel_tiles(g.channels);
  const int64_t row_tiles = (g.rows + kTileRows - 1) / kTileRows;
  const int64_t cap = std::max<int64_t>(1, kMaxElementBlocks / tiles);
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(row_tiles, cap)));
}

int channel_blocks(int64_t channels) {
  return static_cast<int>((channels + kChannelThreads - 1) / kChannelThreads);
}

template <Sum kind>
void partial_sums(const BatchNormGeometry& g, const float* x, const float* dy,
                  const double* center, const float* mean, double* partial,
                  cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(channel_tiles(g.channels)),
                  static_cast<unsigned>(row_blocks(g.rows)));
  partial_sums_kernel<kind><<<grid, tile_threads(), 0, stream>>>(g.rows, g.channels, x, dy,
                                                                center, mean, partial);
  check_launch("batchnorm partial_sums_kernel");
}

}  // namespace

int64_t batchnorm_workspace(const BatchNormGeometry& g, int /*threads*/) {
  return 2 * (2 * kMaxRowBlocks * g.channels + g.channels) + 2 * g.channels;
}

void batchnorm_forward_training(const BatchNormGeometry& g, const float* x, const float* gamma,
                                const float* beta, float* y, float* mean, float* inv_std,
                                float* moving_mean, float* moving_variance, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  const Scratch s = scratch(g, ex.workspace);
  const int64_t slices = row_blocks(g.rows);
  partial_sums<Sum::X>(g, x, nullptr, nullptr, nullptr, s.partial, stream);
  mean_kernel<<<channel_blocks(g.channels), kChannelThreads, 0, stream>>>(
      g.rows, g.channels, slices, s.partial, s.mean);
  check_launch("batchnorm mean_kernel");
  partial_sums<Sum::SquaredDeviation>(g, x, nullptr, s.mean, nullptr, s.partial, stream);
  statistics_kernel<<<channel_blocks(g.channels), kChannelThreads, 0, stream>>>(
      g, slices, s.partial, s.mean, mean, inv_std, moving_mean, moving_variance);
  check_launch("batchnorm statistics_kernel");
  normalize_kernel<<<element_grid(g), tile_threads(), 0, stream>>>(g.rows, g.channels, x, mean,
                                                                   inv_std, gamma, beta, y);
  check_launch("batchnorm normalize_kernel");
}

void batchnorm_inference(const BatchNormGeometry& g, const float* x, const float* gamma,
                         const float* beta, const float* moving_mean,
                         const float* moving_variance, float* y, const Exec& ex) {
  inference_kernel<<<element_grid(g), tile_threads(), 0, stream_of(ex)>>>(
      g, x, gamma, beta, moving_mean, moving_variance, y);
  check_launch("batchnorm inference_kernel");
}

namespace {

// One thread per kernel element (and the first g.channels threads also the bias), with
// the CPU's scale: gamma / sqrt(moving_variance + epsilon) in double, rounded once.
__global__ void fold_kernel(BatchNormGeometry g, const float* kernel, const float* bias,
                            const float* gamma, const float* beta, const float* moving_mean,
                            const float* moving_variance, float* folded_kernel,
                            float* folded_bias) {
  const int64_t count = g.rows * g.channels;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const int64_t ch = i % g.channels;
    const double gain = gamma ? gamma[ch] : 1.0;
    const float scale = static_cast<float>(gain / sqrt(moving_variance[ch] + g.epsilon));
    folded_kernel[i] = kernel[i] * scale;
    if (i < g.channels) {
      folded_bias[ch] = ((bias ? bias[ch] : 0.0f) - moving_mean[ch]) * scale + (beta ? beta[ch] : 0.0f);
    }
  }
}

}  // namespace

void batchnorm_fold(const BatchNormGeometry& g, const float* kernel, const float* bias,
                    const float* gamma, const float* beta, const float* moving_mean,
                    const float* moving_variance, float* folded_kernel, float* folded_bias,
                    const Exec& ex) {
  const int64_t count = g.rows * g.channels;
  if (count <= 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((count + 255) / 256, 4096));
  fold_kernel<<<blocks, 256, 0, stream_of(ex)>>>(g, kernel, bias, gamma, beta, moving_mean,
                                                 moving_variance, folded_kernel, folded_bias);
  check_launch("batchnorm fold_kernel");
}

void batchnorm_backward(const BatchNormGeometry& g, const float* x, const float* gamma,
                        const float* mean, const float* inv_std, const float* dy, float* dx,
                        float* dgamma, float* dbeta, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  const Scratch s = scratch(g, ex.workspace);
  partial_sums<Sum::Gradient>(g, x, dy, nullptr, mean, s.partial, stream);
  gradient_sums_kernel<<<channel_blocks(g.channels), kChannelThreads, 0, stream>>>(
      g.rows, g.channels, row_blocks(g.rows), s.partial, inv_std, dgamma, dbeta, s.coef);
  check_launch("batchnorm gradient_sums_kernel");
  if (!dx) return;
  input_gradient_kernel<<<element_grid(g), tile_threads(), 0, stream>>>(
      g.rows, g.channels, x, gamma, mean, inv_std, dy, s.coef, dx);
  check_launch("batchnorm input_gradient_kernel");
}

}  // namespace fastnn::cuda
