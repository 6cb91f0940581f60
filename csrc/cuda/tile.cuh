// tile.cuh — the block-tile engine that gemm.cu and conv2d.cu share: a 256-thread block
// forms a 64×64 tile of C = A·B, stepping K by 16 through shared memory, each thread
// holding a 4×4 micro-tile in registers. Operand loaders (plain matrices here, receptive
// fields in conv2d.cu) say how a 16×64 slice of A or B is read; the engine stages it,
// multiplies, and the epilogue writes C (+)= tile, + bias, ReLU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/check.h"

namespace fastnn::cuda::tile {

// Shared memory: two 16 × (64 + 4) float slices, 8.5 KiB a block. Registers: 16
// accumulators, 8 staged loads and the loaders' per-thread state fit the 128 a thread
// may use at two blocks per SM (__launch_bounds__(kThreads, kMinBlocks)). Per k each
// thread reads one float4 of A and one of B from shared memory for 16 FMAs.
constexpr int kBM = 64, kBN = 64, kBK = 16;
constexpr int kTM = 4, kTN = 4;
constexpr int kThreads = (kBM / kTM) * (kBN / kTN);
constexpr int kMinBlocks = 2;
// Staging: a 16×64 slice is 1024 floats, 4 per thread. 16 threads cover one run of 16
// consecutive floats in memory, so a warp reads two 64-byte runs per load.
constexpr int kRun = 16;
constexpr int kLoads = kBK * kBM / kThreads;
// Row padding: keeps float4 reads aligned (68 floats = 272 B) and spreads the
// transposing stores of a k-fast slice over 16 banks (2-way conflicts at most).
constexpr int kPad = 4;
static_assert(kThreads == 256 && kLoads == 4, "the staging maps below assume 256 threads");
static_assert(kBM == kBN && kBK == kRun && kRun * kLoads == kBM, "one staging map serves A and B");

// How a loader's 16 threads walk memory. AlongK: unit stride in k (row-major A, Bᵀ):
// thread t holds k = t % 16 of rows t / 16 + 16·i. AlongMN: unit stride in m or n (Aᵀ,
// row-major B): thread t holds k = t / 16 of rows t % 16 + 16·i. Either way a thread
// reads one k per slice, so a loader decodes k once per slice, and its rows are fixed.
enum class Walk { kAlongK, kAlongMN };

template <Walk W>
__device__ __forceinline__ int slice_k(int t) {
  return W == Walk::kAlongK ? t % kRun : t / kRun;
}

template <Walk W>
__device__ __forceinline__ int slice_row(int t, int i) {
  return (W == Walk::kAlongK ? t / kRun : t % kRun) + kRun * i;
}

// a / b for a >= 0, b > 0, in 32-bit arithmetic when both fit (a 64-bit division is a
// long software routine).
__device__ __forceinline__ int64_t quotient(int64_t a, int64_t b) {
  if (((a | b) >> 31) == 0) return static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
  return a / b;
}

// The slice loaders' interface: `kWalk`, and fetch(v), which reads this thread's kLoads
// values of the current 16×64 slice (zero outside the operand) and moves to the next.

// Element (row, k) at p[row·ld + k]: row-major A (rows = m), or Bᵀ stored n×k (rows = n).
struct UnitK {
  static constexpr Walk kWalk = Walk::kAlongK;
  const float* p;
  int64_t row_offset[kLoads];
  bool row_ok[kLoads];
  int64_t k, k_end;

  __device__ UnitK(const float* p_, int64_t ld, int64_t row0, int64_t rows, int64_t k_begin,
                   int64_t k_end_)
      : p(p_), k(k_begin + slice_k<kWalk>(threadIdx.x)), k_end(k_end_) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int64_t row = row0 + slice_row<kWalk>(threadIdx.x, i);
      row_ok[i] = row < rows;
      row_offset[i] = row * ld;
    }
  }

  __device__ __forceinline__ void fetch(float (&v)[kLoads]) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) v[i] = k < k_end && row_ok[i] ? __ldg(p + row_offset[i] + k) : 0.0f;
    k += kBK;
  }
};

// Element (row, k) at p[k·ld + row]: Aᵀ stored k×m (rows = m), or row-major B (rows = n).
struct UnitMN {
  static constexpr Walk kWalk = Walk::kAlongMN;
  const float* p;
  int64_t ld, row0;
  int rows_ok;  // how many of the thread's rows row0 + 16·i lie inside
  int64_t k, k_end;

  __device__ UnitMN(const float* p_, int64_t ld_, int64_t first_row, int64_t rows,
                    int64_t k_begin, int64_t k_end_)
      : p(p_), ld(ld_), row0(first_row + slice_row<kWalk>(threadIdx.x, 0)),
        k(k_begin + slice_k<kWalk>(threadIdx.x)), k_end(k_end_) {
    const int64_t inside = row0 >= rows ? 0 : (rows - row0 + kRun - 1) / kRun;
    rows_ok = static_cast<int>(inside < kLoads ? inside : kLoads);
  }

  __device__ __forceinline__ void fetch(float (&v)[kLoads]) {
    const int64_t at = k * ld + row0;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) v[i] = k < k_end && i < rows_ok ? __ldg(p + at + kRun * i) : 0.0f;
    k += kBK;
  }
};

// acc = Σ over `steps` slices of A-slice · B-slice, k ascending: each element's sum runs
// in one fixed order. Every thread of the block must call it (it synchronises).
// The next slice's global loads are issued before the current one is multiplied, so
// their latency hides behind the FMAs.
template <class LoadA, class LoadB>
__device__ __forceinline__ void multiply(LoadA& a, LoadB& b, int64_t steps,
                                         float (&acc)[kTM][kTN]) {
  __shared__ __align__(16) float sa[kBK][kBM + kPad];
  __shared__ __align__(16) float sb[kBK][kBN + kPad];
  const int t = threadIdx.x;
  const int row = t / (kBN / kTN) * kTM, col = t % (kBN / kTN) * kTN;
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) acc[i][j] = 0.0f;
  }
  float va[kLoads], vb[kLoads];
  if (steps > 0) {
    a.fetch(va);
    b.fetch(vb);
  }
  for (int64_t s = 0; s < steps; ++s) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      sa[slice_k<LoadA::kWalk>(t)][slice_row<LoadA::kWalk>(t, i)] = va[i];
      sb[slice_k<LoadB::kWalk>(t)][slice_row<LoadB::kWalk>(t, i)] = vb[i];
    }
    __syncthreads();
    if (s + 1 < steps) {
      a.fetch(va);
      b.fetch(vb);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a4 = *reinterpret_cast<const float4*>(&sa[kk][row]);
      const float4 b4 = *reinterpret_cast<const float4*>(&sb[kk][col]);
      const float av[kTM] = {a4.x, a4.y, a4.z, a4.w};
      const float bv[kTN] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int i = 0; i < kTM; ++i) {
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();  // the slice is read by all before the next one overwrites it
  }
}

// What happens to the finished sums: c[row·ldc + col] = (c + acc if accumulate) + bias[col],
// then ReLU (v > 0 ? v : +0, as the CPU does; NaN becomes 0).
struct Epilogue {
  float* c;
  int64_t ldc;
  bool accumulate;
  const float* bias;
  bool relu;
};

// Writes the block's tile at (m0, n0) of an m×n C, skipping elements outside it.
__device__ __forceinline__ void store(const float (&acc)[kTM][kTN], int64_t m0, int64_t n0,
                                      int64_t m, int64_t n, const Epilogue& e) {
  const int t = threadIdx.x;
  const int64_t row0 = m0 + t / (kBN / kTN) * kTM, col0 = n0 + t % (kBN / kTN) * kTN;
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const int64_t row = row0 + i;
    if (row >= m) break;
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t col = col0 + j;
      if (col >= n) break;
      float* out = e.c + row * e.ldc + col;
      float v = acc[i][j];
      if (e.accumulate) v += *out;
      if (e.bias) v += __ldg(e.bias + col);
      if (e.relu) v = v > 0.0f ? v : 0.0f;
      *out = v;
    }
  }
}

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A 1-D grid of `blocks`: gridDim.x allows 2³¹ − 1, beyond which the launch would fail.
inline unsigned grid_x(int64_t blocks, const char* kernel) {
  if (blocks > 0x7fffffff) {
    throw CudaError(std::string(kernel) + ": " + std::to_string(blocks) + " blocks exceed the grid limit");
  }
  return static_cast<unsigned>(blocks);
}

}  // namespace fastnn::cuda::tile
