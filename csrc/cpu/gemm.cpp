// gemm.cpp — single-precision GEMM (Goto's blocking), its register-tile micro-kernel
// (shared with conv2d.cpp's implicit GEMM), and the column sums that give a dense or
// conv layer its bias gradient. A kc×nc panel of op(B) is packed into NR-wide strips;
// op(A) is packed into MR-tall strips or read in place (see gemm_serial); each pair of
// strips is multiplied in an MR×NR register tile (isa.h: 6 rows × 2 or 4 vectors).
#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

static_assert(kGemmMC % MR == 0 && kGemmNC % NR == 0, "blocks must hold whole strips");

void pack_b(const Gemm& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
    const int64_t cols = std::min(NR, nc - jr);
    if (cols < NR) zero_floats(dst, NR * kc);
    if (g.trans_b) {  // B is n×k: element (p, col) at b[col·ldb + p]
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = g.b + (j0 + jr + j) * g.ldb + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p];
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) copy_floats(dst + p * NR, g.b + (p0 + p) * g.ldb + j0 + jr, cols);
    }
  }
}

namespace {

// C[0:lanes] (+)= v, + bias, ReLU. Edge columns use masked moves; full ones plain ones.
static inline void finish(vfloat v, float* c, const float* bias, bool overwrite, bool relu,
                          int64_t lanes) {
  const bool full = lanes == kLanes;
  if (!overwrite) v += full ? load(c) : load_n(c, lanes);
  if (bias) v += full ? load(bias) : load_n(bias, lanes);
  if (relu) v = v > 0.0f ? v : vfloat{};
  if (full) {
    store(c, v);
  } else {
    store_n(c, v, lanes);
  }
}

}  // namespace

namespace {

// The tile with W vectors of B per row. Every loop over it is unrolled, so the MR·W
// accumulators live in registers from start to end; the walk's offset is one register
// added to the MR row pointers.
template <int W>
void tile(int64_t kc, const AWalk& w, const float* b, int64_t ldb, float* c, int64_t ldc,
          int64_t rows, int64_t cols, const Epilogue& e) {
  const float* row[MR];
  vfloat acc[MR][W];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    row[i] = w.row[i];
#pragma GCC unroll 4
    for (int v = 0; v < W; ++v) acc[i][v] = vfloat{};
  }
  for (int64_t k = 0, start = 0; k < kc; start += w.outer_step) {
    const int64_t run = std::min(w.inner, kc - k);
    int64_t at = start;
    for (int64_t q = 0; q < run; ++q, at += w.inner_step, b += ldb) {
      vfloat bv[W];
#pragma GCC unroll 4
      for (int v = 0; v < W; ++v) bv[v] = load(b + v * kLanes);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const vfloat ai = broadcast(row[i][at]);
#pragma GCC unroll 4
        for (int v = 0; v < W; ++v) acc[i][v] += ai * bv[v];
      }
    }
    k += run;
  }
  // The epilogue's flags are copied out first: read through the reference they would
  // be reloaded after every store to C, which might alias them.
  const bool overwrite = e.overwrite, relu = e.relu;
  const float* bias = e.bias;
  if (rows == MR && cols == W * kLanes) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < W; ++v) {
        finish(acc[i][v], c + i * ldc + v * kLanes, bias ? bias + v * kLanes : nullptr,
               overwrite, relu, kLanes);
      }
    }
    return;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= rows) continue;
#pragma GCC unroll 4
    for (int v = 0; v < W; ++v) {
      const int64_t lanes = std::min<int64_t>(kLanes, cols - v * kLanes);
      if (lanes > 0) {
        finish(acc[i][v], c + i * ldc + v * kLanes, bias ? bias + v * kLanes : nullptr,
               overwrite, relu, lanes);
      }
    }
  }
}

}  // namespace

// A strip at most two vectors wide (a 32-channel layer on AVX-512) runs the narrow
// tile, which reads and multiplies only those two vectors of B.
void micro_kernel(int64_t kc, const AWalk& a, const float* b, int64_t ldb, float* c,
                  int64_t ldc, int64_t rows, int64_t cols, const Epilogue& e) {
  if (NV > 2 && cols <= 2 * kLanes) {
    tile<2>(kc, a, b, ldb, c, ldc, rows, cols, e);
  } else {
    tile<NV>(kc, a, b, ldb, c, ldc, rows, cols, e);
  }
}

namespace {

// Rows [row, row + rows) of op(A) from column p0 on, read in place. Row-major A walks
// each row with unit stride, a transposed one (stored k×m) with stride lda; missing rows
// of an edge strip repeat the first (their results are never stored).
AWalk walk_in_place(const Gemm& g, int64_t row, int64_t rows, int64_t p0) {
  AWalk w;
  for (int64_t i = 0; i < MR; ++i) {
    const int64_t r = row + (i < rows ? i : 0);
    w.row[i] = g.trans_a ? g.a + p0 * g.lda + r : g.a + r * g.lda + p0;
  }
  w.inner = INT64_MAX;
  w.inner_step = g.trans_a ? g.lda : 1;
  w.outer_step = 0;
  return w;
}

// op(A)[i0:i0+mc, p0:p0+kc] -> MR-row strips, each stored p-major (MR floats per p).
// Rows past the edge are zero.
void pack_a(const Gemm& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const int64_t rows = std::min(MR, mc - ir);
    if (rows < MR) zero_floats(dst, MR * kc);
    if (g.trans_a) {  // A is k×m: the strip's MR values at each p are contiguous
      const float* src = g.a + p0 * g.lda + i0 + ir;
      for (int64_t p = 0; p < kc; ++p) copy_floats(dst + p * MR, src + p * g.lda, rows);
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        const float* src = g.a + (i0 + ir + i) * g.lda + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p];
      }
    }
  }
}

AWalk walk_packed(const float* strip) {
  AWalk w;
  for (int64_t i = 0; i < MR; ++i) w.row[i] = strip + i;
  w.inner = INT64_MAX;
  w.inner_step = MR;
  w.outer_step = 0;
  return w;
}

}  // namespace

// One thread's GEMM. K is cut into equal blocks of at most kGemmKC, a function of K
// alone, so every element's sum runs over the same blocks however the caller split M or
// N among threads: the bits do not depend on the thread count.
void gemm_serial(const Gemm& g, float* pack) {
  float* packed_b = pack;
  float* packed_a = pack + kGemmKC * kGemmNC;
  const int64_t k_blocks = (g.k + kGemmKC - 1) / kGemmKC;
  const int64_t k_step = (g.k + k_blocks - 1) / k_blocks;
  for (int64_t j0 = 0; j0 < g.n; j0 += kGemmNC) {
    const int64_t nc = std::min(kGemmNC, g.n - j0);
    // Copying A pays when many B strips reuse it; the seed CNN's dense layers and conv
    // gradients have one or two (64 columns or fewer), and there A is read in place:
    // each of a strip's rows (or columns) is a unit-stride stream the prefetcher follows.
    const bool copy_a = nc >= 4 * NR;
    for (int64_t p0 = 0; p0 < g.k; p0 += k_step) {
      const int64_t kc = std::min(k_step, g.k - p0);
      const bool first = p0 == 0, last = p0 + kc == g.k;
      pack_b(g, p0, kc, j0, nc, packed_b);
      for (int64_t i0 = 0; i0 < g.m; i0 += kGemmMC) {
        const int64_t mc = std::min(kGemmMC, g.m - i0);
        if (copy_a) pack_a(g, i0, mc, p0, kc, packed_a);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const Epilogue e{first && !g.accumulate, last && g.bias ? g.bias + j0 + jr : nullptr,
                           last && g.relu};
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t rows = std::min(MR, mc - ir);
            const AWalk a = copy_a ? walk_packed(packed_a + ir * kc)
                                   : walk_in_place(g, i0 + ir, rows, p0);
            micro_kernel(kc, a, packed_b + jr * kc, NR, g.c + (i0 + ir) * g.ldc + j0 + jr, g.ldc,
                         rows, std::min(NR, nc - jr), e);
          }
        }
      }
    }
  }
}

namespace {

// The sub-problem of rows [i0, i1) of C.
Gemm rows_of(const Gemm& g, int64_t i0, int64_t i1) {
  Gemm s = g;
  s.m = i1 - i0;
  s.a = g.trans_a ? g.a + i0 : g.a + i0 * g.lda;
  s.c = g.c + i0 * g.ldc;
  return s;
}

// The sub-problem of columns [j0, j1) of C.
Gemm cols_of(const Gemm& g, int64_t j0, int64_t j1) {
  Gemm s = g;
  s.n = j1 - j0;
  s.b = g.trans_b ? g.b + j0 * g.ldb : g.b + j0;
  s.c = g.c + j0;
  if (g.bias) s.bias = g.bias + j0;
  return s;
}

}  // namespace

void gemm(const Gemm& g, const Exec& ex) {
  // Split whichever side has more register strips; workers get whole strips.
  const int64_t row_strips = (g.m + MR - 1) / MR, col_strips = (g.n + NR - 1) / NR;
  const bool split_rows = row_strips >= col_strips;
  parallel_for(split_rows ? row_strips : col_strips, ex.threads,
               [&](int64_t begin, int64_t end, int worker) {
                 float* pack = ex.workspace + worker * kGemmPackFloats;
                 if (split_rows) {
                   gemm_serial(rows_of(g, begin * MR, std::min(end * MR, g.m)), pack);
                 } else {
                   gemm_serial(cols_of(g, begin * NR, std::min(end * NR, g.n)), pack);
                 }
               });
}

// out[j] = Σ_i x[i, j], rows summed in order; workers own disjoint column ranges.
void sum_rows(int64_t rows, int64_t cols, const float* x, float* out, const Exec& ex) {
  const int64_t chunks = (cols + kLanes - 1) / kLanes;
  parallel_for(chunks, ex.threads, [&](int64_t begin, int64_t end, int) {
    const int64_t j0 = begin * kLanes, j1 = std::min(end * kLanes, cols);
    zero_floats(out + j0, j1 - j0);
    for (int64_t i = 0; i < rows; ++i) add_floats(out + j0, x + i * cols + j0, j1 - j0);
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
