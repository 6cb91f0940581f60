// gemm.cu — SGEMM on the block-tile engine of tile.cuh (64×64 tiles, K step 16, 4×4 per
// thread), one kernel per transpose combination so each operand is read along its unit
// stride; and sum_rows, the column sums behind a dense layer's bias gradient.
#include <type_traits>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/tile.cuh"

namespace fastnn::cuda {
namespace {

using tile::kBK;
using tile::kBM;
using tile::kBN;

// One block per 64×64 tile of C; consecutive blocks share a row of tiles, so they reuse
// the same A panel from L2. A row-major A is read along k, a transposed one (k×m) along
// m; B likewise (row-major k×n along n, transposed n×k along k).
template <bool kTransA, bool kTransB>
__global__ void __launch_bounds__(tile::kThreads, tile::kMinBlocks)
    gemm_kernel(Gemm g, int64_t tiles_n) {
  using LoadA = std::conditional_t<kTransA, tile::UnitMN, tile::UnitK>;
  using LoadB = std::conditional_t<kTransB, tile::UnitK, tile::UnitMN>;
  const int64_t m0 = blockIdx.x / tiles_n * kBM, n0 = blockIdx.x % tiles_n * kBN;
  LoadA a(g.a, g.lda, m0, g.m, 0, g.k);
  LoadB b(g.b, g.ldb, n0, g.n, 0, g.k);
  float acc[tile::kTM][tile::kTN];
  tile::multiply(a, b, tile::ceil_div(g.k, kBK), acc);
  tile::store(acc, m0, n0, g.m, g.n, tile::Epilogue{g.c, g.ldc, g.accumulate, g.bias, g.relu});
}

// sum_rows: a block takes 32 columns; its 8 lanes of 32 threads each sum every 8th row
// (lane l: rows l, l + 8, …, in order), then lane 0 adds the 8 partials in lane order.
// The split depends on nothing but the shape, so the bits do not change between runs.
constexpr int kSumCols = 32, kSumLanes = 8;

__global__ void sum_rows_kernel(int64_t rows, int64_t cols, const float* __restrict__ x,
                                float* __restrict__ out) {
  __shared__ float partial[kSumLanes][kSumCols];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kSumCols + threadIdx.x;
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t row = threadIdx.y; row < rows; row += kSumLanes) sum += x[row * cols + col];
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = partial[0][threadIdx.x];
    for (int lane = 1; lane < kSumLanes; ++lane) total += partial[lane][threadIdx.x];
    out[col] = total;
  }
}

}  // namespace

// k = 0 still runs the epilogue: the product is zero, so C becomes (C +) bias, ReLU'd.
void gemm(const Gemm& g, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (g.m <= 0 || g.n <= 0) return;
  const int64_t tiles_n = tile::ceil_div(g.n, kBN);
  const unsigned blocks = tile::grid_x(tile::ceil_div(g.m, kBM) * tiles_n, "gemm_kernel");
  if (g.trans_a && g.trans_b) {
    gemm_kernel<true, true><<<blocks, tile::kThreads, 0, stream>>>(g, tiles_n);
  } else if (g.trans_a) {
    gemm_kernel<true, false><<<blocks, tile::kThreads, 0, stream>>>(g, tiles_n);
  } else if (g.trans_b) {
    gemm_kernel<false, true><<<blocks, tile::kThreads, 0, stream>>>(g, tiles_n);
  } else {
    gemm_kernel<false, false><<<blocks, tile::kThreads, 0, stream>>>(g, tiles_n);
  }
  check_launch("gemm_kernel");
}

// rows = 0 still writes zeros: out is the (empty) sum.
void sum_rows(int64_t rows, int64_t cols, const float* x, float* out, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (cols <= 0) return;
  const unsigned blocks = tile::grid_x(tile::ceil_div(cols, kSumCols), "sum_rows_kernel");
  sum_rows_kernel<<<blocks, dim3(kSumCols, kSumLanes), 0, stream>>>(rows, cols, x, out);
  check_launch("sum_rows_kernel");
}

}  // namespace fastnn::cuda
