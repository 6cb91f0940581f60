// gemm.cpp — single-precision GEMM (Goto's blocking) and the column sums that give a
// dense or conv layer its bias gradient. A kc×nc panel of op(B) is packed into NR-wide
// strips; op(A) is packed into MR-tall strips or read in place (see gemm_serial); each
// pair of strips is multiplied in an MR×NR register tile: 6 rows × 2 vectors = 12 accumulators, plus 2
// B vectors and 1 broadcast, fit the 16 vector registers of SSE2 and AVX2.
#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

constexpr int64_t MR = 6;
constexpr int64_t NR = 2 * kLanes;
static_assert(kGemmMC % MR == 0 && kGemmNC % NR == 0, "blocks must hold whole strips");

// MR rows of op(A) from column p0 on: element (i, p) of the strip sits at
// a[i·row_step + p·col_step]. Row-major A steps (lda, 1), a transposed one (1, lda), a
// packed strip (1, MR).
struct AStrip {
  const float* a;
  int64_t row_step, col_step;
};

AStrip strip_of(const Gemm& g, int64_t row, int64_t p0) {
  if (g.trans_a) return {g.a + p0 * g.lda + row, 1, g.lda};  // A is k×m
  return {g.a + row * g.lda + p0, g.lda, 1};
}

// op(A)[i0:i0+mc, p0:p0+kc] -> MR-row strips, each stored p-major (MR floats per p).
// Rows past the edge are zero so the micro-kernel never branches.
void pack_a(const Gemm& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const int64_t rows = std::min(MR, mc - ir);
    if (rows < MR) std::fill(dst, dst + MR * kc, 0.0f);
    if (g.trans_a) {  // A is k×m: the strip's MR values at each p are contiguous
      const float* src = g.a + p0 * g.lda + i0 + ir;
      for (int64_t p = 0; p < kc; ++p) std::copy(src + p * g.lda, src + p * g.lda + rows, dst + p * MR);
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        const float* src = g.a + (i0 + ir + i) * g.lda + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p];
      }
    }
  }
}

// op(B)[p0:p0+kc, j0:j0+nc] -> NR-column strips, each stored p-major (NR floats per p).
void pack_b(const Gemm& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
    const int64_t cols = std::min(NR, nc - jr);
    if (cols < NR) std::fill(dst, dst + NR * kc, 0.0f);
    if (g.trans_b) {  // B is n×k: element (p, col) at b[col·ldb + p]
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = g.b + (j0 + jr + j) * g.ldb + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p];
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = g.b + (p0 + p) * g.ldb + j0 + jr;
        std::copy(src, src + cols, dst + p * NR);
      }
    }
  }
}

struct Epilogue {
  bool overwrite;       // first K block and not accumulating: C = tile, else C += tile
  const float* bias;    // non-null only on the last K block
  bool relu;            // only on the last K block
};

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

// C[rows×cols] (+)= a_strip · b_strip over kc, then the epilogue. Every loop over the
// tile is unrolled, so the 12 accumulators live in registers from start to end.
// The strip comes as three scalars, not an AStrip by value: a 16-byte reload of a
// struct just written as two 8-byte stores stalls store forwarding on every call.
void micro_kernel(int64_t kc, const float* a, int64_t row_step, int64_t col_step,
                  const float* b, float* c, int64_t ldc, int64_t rows, int64_t cols,
                  const Epilogue& e) {
  vfloat acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = vfloat{};
  for (int64_t p = 0; p < kc; ++p, a += col_step, b += NR) {
    const vfloat b0 = load(b), b1 = load(b + kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const vfloat ai = broadcast(a[i * row_step]);
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
  }
  // The epilogue's flags are copied out first: read through the reference they would
  // be reloaded after every store to C, which might alias them.
  const bool overwrite = e.overwrite, relu = e.relu;
  const float* bias0 = e.bias;
  const float* bias1 = e.bias ? e.bias + kLanes : nullptr;
  if (rows == MR && cols == NR) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      finish(acc[i][0], c + i * ldc, bias0, overwrite, relu, kLanes);
      finish(acc[i][1], c + i * ldc + kLanes, bias1, overwrite, relu, kLanes);
    }
    return;
  }
  const int64_t lanes0 = cols < kLanes ? cols : kLanes, lanes1 = cols - lanes0;
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i < rows) {
      finish(acc[i][0], c + i * ldc, bias0, overwrite, relu, lanes0);
      if (lanes1 > 0) finish(acc[i][1], c + i * ldc + kLanes, bias1, overwrite, relu, lanes1);
    }
  }
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
    // Copying A pays when many B strips reuse it; the seed CNN's convs have one or two
    // (cout 32 or 64), and there A is read in place: each of a strip's MR rows (or, for
    // a transposed A, each of its columns) is a unit-stride stream the prefetcher follows.
    const bool copy_a = nc >= 4 * NR;
    for (int64_t p0 = 0; p0 < g.k; p0 += k_step) {
      const int64_t kc = std::min(k_step, g.k - p0);
      const bool first = p0 == 0, last = p0 + kc == g.k;
      pack_b(g, p0, kc, j0, nc, packed_b);
      for (int64_t i0 = 0; i0 < g.m; i0 += kGemmMC) {
        const int64_t mc = std::min(kGemmMC, g.m - i0);
        // Read in place, a strip short of MR rows is still copied (zero-padded) into
        // the last strip of packed_a, so the micro-kernel never branches on the edge.
        const int64_t full_rows = copy_a ? 0 : mc / MR * MR;
        if (full_rows < mc) pack_a(g, i0 + full_rows, mc - full_rows, p0, kc, packed_a);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const Epilogue e{first && !g.accumulate, last && g.bias ? g.bias + j0 + jr : nullptr,
                           last && g.relu};
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const AStrip a = ir < full_rows ? strip_of(g, i0 + ir, p0)
                                            : AStrip{packed_a + (ir - full_rows) * kc, 1, MR};
            micro_kernel(kc, a.a, a.row_step, a.col_step, packed_b + jr * kc, g.c + (i0 + ir) * g.ldc + j0 + jr, g.ldc,
                         std::min(MR, mc - ir), std::min(NR, nc - jr), e);
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
    std::fill(out + j0, out + j1, 0.0f);
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = x + i * cols;
      for (int64_t j = j0; j < j1; ++j) out[j] += row[j];
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
