// conv2d.cu — 2-D convolution, NHWC × HWIO, forward and both gradients, as implicit GEMMs
// on tile.cuh's engine: the loaders below read receptive fields (forward), dy gathered
// per input pixel (data gradient) or transposed windows (filter gradient) straight from
// the tensors, so no im2col matrix is stored. The filter gradient sums the batch in
// fixed chunks of output pixels, then adds the chunks in chunk order.
#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/tile.cuh"

namespace fastnn::cuda {
namespace {

using tile::kBK;
using tile::kBM;
using tile::kBN;
using tile::kLoads;
using tile::Walk;

// The geometry as the kernels use it: every extent fits an int (narrow checks), while
// flat indices and offsets into tensors are int64.
struct Conv {
  int n, h, w, cin, kh, kw, cout, sh, sw, pt, pl, oh, ow;
};

Conv narrow(const Conv2dGeometry& g, const char* op) {
  const int64_t extents[] = {g.n,        g.h,        g.w,       g.cin,      g.kh, g.kw, g.cout,
                             g.stride_h, g.stride_w, g.pad_top, g.pad_left, g.oh, g.ow};
  for (const int64_t e : extents) {
    if (e < 0 || e > 0x7fffffff) throw CudaError(std::string(op) + ": geometry out of range");
  }
  if (g.stride_h < 1 || g.stride_w < 1) throw CudaError(std::string(op) + ": stride below 1");
  auto i = [](int64_t v) { return static_cast<int>(v); };
  return Conv{i(g.n),        i(g.h),        i(g.w),       i(g.cin),      i(g.kh), i(g.kw), i(g.cout),
              i(g.stride_h), i(g.stride_w), i(g.pad_top), i(g.pad_left), i(g.oh), i(g.ow)};
}

// A mixed-radix index (hi, mid, lo), flat = (hi·mid_radix + mid)·lo_radix + lo: (ki, kj, ci)
// of a patch position, (ki, kj, co) of a data-gradient k, (image, oy, ox) of an output
// pixel. Stepping by a slice's 16 costs compares, and divisions only when a digit carries.
// hi is unbounded: past the end it counts on, and the loaders' k < k_end masks it.
struct Digits {
  int hi = 0, mid = 0, lo = 0;

  __device__ void set(int64_t flat, int mid_radix, int lo_radix) {
    const int64_t per_hi = static_cast<int64_t>(mid_radix) * lo_radix;
    const int64_t h = tile::quotient(flat, per_hi), rest = flat - h * per_hi;
    const int64_t m = tile::quotient(rest, lo_radix);
    hi = static_cast<int>(h);
    mid = static_cast<int>(m);
    lo = static_cast<int>(rest - m * lo_radix);
  }

  __device__ __forceinline__ void step(int by, int mid_radix, int lo_radix) {
    lo += by;
    if (lo < lo_radix) return;
    const int carry = lo / lo_radix;
    lo -= carry * lo_radix;
    mid += carry;
    if (mid < mid_radix) return;
    const int carry_hi = mid / mid_radix;
    mid -= carry_hi * mid_radix;
    hi += carry_hi;
  }
};

__device__ __forceinline__ bool inside(int v, int size) {
  return static_cast<unsigned>(v) < static_cast<unsigned>(size);  // 0 <= v < size
}

// ---- forward: y (n·oh·ow × cout) = windows (n·oh·ow × patch) · W (patch × cout) ----

// A: row r = output pixel (image, oy, ox); column k = (ki·kw + kj)·cin + ci holds
// xpad[image, oy·sh + ki, ox·sw + kj, ci] = x[image, oy·sh + ki − pt, ox·sw + kj − pl, ci],
// zero in the padding. Read along k: consecutive ci are contiguous in x.
struct Windows {
  static constexpr Walk kWalk = Walk::kAlongK;
  const float* x;
  const Conv& c;
  int64_t base[kLoads];  // where x[image, iy0, ix0, 0] would be (the window may start in the padding)
  int iy0[kLoads], ix0[kLoads];  // the window's top-left corner in x (may be negative)
  bool row_ok[kLoads];
  Digits tap;  // (ki, kj, ci) of this thread's k
  int64_t k, k_end;

  __device__ Windows(const float* x_, const Conv& c_, int64_t m0, int64_t m, int64_t k_end_)
      : x(x_), c(c_), k(tile::slice_k<kWalk>(threadIdx.x)), k_end(k_end_) {
    const int64_t pixels = static_cast<int64_t>(c.oh) * c.ow;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int64_t row = m0 + tile::slice_row<kWalk>(threadIdx.x, i);
      row_ok[i] = row < m;
      const int64_t r = row_ok[i] ? row : m - 1;  // rows past the end decode the last one
      const int64_t img = tile::quotient(r, pixels), rest = r - img * pixels;
      const int oy = static_cast<int>(tile::quotient(rest, c.ow));
      const int ox = static_cast<int>(rest - static_cast<int64_t>(oy) * c.ow);
      iy0[i] = oy * c.sh - c.pt;
      ix0[i] = ox * c.sw - c.pl;
      base[i] = ((img * c.h + iy0[i]) * c.w + ix0[i]) * c.cin;
    }
    if (k_end > 0) tap.set(k, c.kw, c.cin);  // an empty K has zero radices
  }

  // Element (row, k) is x[base + (ki·w + kj)·cin + ci] = x[image, iy0 + ki, ix0 + kj, ci].
  __device__ __forceinline__ void fetch(float (&v)[kLoads]) {
    const bool k_ok = k < k_end;
    const int64_t at = (static_cast<int64_t>(tap.hi) * c.w + tap.mid) * c.cin + tap.lo;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const bool in_x = inside(iy0[i] + tap.hi, c.h) && inside(ix0[i] + tap.mid, c.w);
      v[i] = k_ok && row_ok[i] && in_x ? __ldg(x + base[i] + at) : 0.0f;
    }
    k += kBK;
    tap.step(kBK, c.kw, c.cin);
  }
};

__global__ void __launch_bounds__(tile::kThreads, tile::kMinBlocks)
    conv2d_forward_kernel(Conv c, const float* __restrict__ x, const float* __restrict__ w,
                          const float* __restrict__ bias, bool relu, float* __restrict__ y,
                          int64_t tiles_n) {
  const int64_t m = static_cast<int64_t>(c.n) * c.oh * c.ow;
  const int64_t patch = static_cast<int64_t>(c.kh) * c.kw * c.cin;
  const int64_t m0 = blockIdx.x / tiles_n * kBM, n0 = blockIdx.x % tiles_n * kBN;
  Windows a(x, c, m0, m, patch);
  tile::UnitMN b(w, c.cout, n0, c.cout, 0, patch);  // W[k, co] at w[k·cout + co]
  float acc[tile::kTM][tile::kTN];
  tile::multiply(a, b, tile::ceil_div(patch, kBK), acc);
  tile::store(acc, m0, n0, m, c.cout, tile::Epilogue{y, c.cout, false, bias, relu});
}

// ---- data gradient: dx (n·h·w × cin) = gathered dy (n·h·w × kh·kw·cout) · W' -------

// A: row = input pixel (image, ih, iw); column k = (ki·kw + kj)·cout + co holds
// dy[image, oy, ox, co] for the oy, ox with oy·sh + ki − pt = ih and ox·sw + kj − pl = iw,
// zero when they are not integers inside the output. Write ypad = ih + pt = yq·sh + yr and
// ki = kq·sh + kr (0 <= yr, kr < sh): ypad − ki = (yq − kq)·sh + (yr − kr) is a multiple of
// sh exactly when yr = kr, and then oy = yq − kq. Likewise along x. Read along k (co).
struct Gather {
  static constexpr Walk kWalk = Walk::kAlongK;
  const float* dy;
  const Conv& c;
  int64_t base[kLoads];  // where dy[image, yq, xq, 0] would be
  int yq[kLoads], xq[kLoads];
  int phase[kLoads];  // yr·sw + xr; −1 for rows past the end, which then match no k
  Digits tap;  // (ki, kj, co) of this thread's k
  int64_t k, k_end;

  __device__ Gather(const float* dy_, const Conv& c_, int64_t m0, int64_t m, int64_t k_end_)
      : dy(dy_), c(c_), k(tile::slice_k<kWalk>(threadIdx.x)), k_end(k_end_) {
    const int64_t pixels = static_cast<int64_t>(c.h) * c.w;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int64_t row = m0 + tile::slice_row<kWalk>(threadIdx.x, i);
      const int64_t r = row < m ? row : m - 1;  // rows past the end decode the last one
      const int64_t img = tile::quotient(r, pixels), rest = r - img * pixels;
      const int ih = static_cast<int>(tile::quotient(rest, c.w));
      const int iw = static_cast<int>(rest - static_cast<int64_t>(ih) * c.w);
      const int ypad = ih + c.pt, xpad = iw + c.pl;
      yq[i] = ypad / c.sh;
      xq[i] = xpad / c.sw;
      const int yr = ypad - yq[i] * c.sh, xr = xpad - xq[i] * c.sw;
      phase[i] = row < m ? yr * c.sw + xr : -1;
      base[i] = ((img * c.oh + yq[i]) * c.ow + xq[i]) * c.cout;
    }
    if (k_end > 0) tap.set(k, c.kw, c.cout);  // an empty K has zero radices
  }

  // Element (row, k) is dy[base − (kq·ow + jq)·cout + co] = dy[image, yq − kq, xq − jq, co].
  __device__ __forceinline__ void fetch(float (&v)[kLoads]) {
    const bool k_ok = k < k_end;
    const int kq = tap.hi / c.sh, kr = tap.hi - kq * c.sh;
    const int jq = tap.mid / c.sw, jr = tap.mid - jq * c.sw;
    const int k_phase = kr * c.sw + jr;
    const int64_t at = tap.lo - (static_cast<int64_t>(kq) * c.ow + jq) * c.cout;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const bool in_dy = phase[i] == k_phase && inside(yq[i] - kq, c.oh) && inside(xq[i] - jq, c.ow);
      v[i] = k_ok && in_dy ? __ldg(dy + base[i] + at) : 0.0f;
    }
    k += kBK;
    tap.step(kBK, c.kw, c.cout);
  }
};

// B: row ci, column k = (ki·kw + kj)·cout + co holds w[ki, kj, ci, co]; read along co.
struct FilterRows {
  static constexpr Walk kWalk = Walk::kAlongK;
  const float* w;
  const Conv& c;
  int ci[kLoads];
  Digits tap;  // (ki, kj, co) of this thread's k
  int64_t k, k_end;

  __device__ FilterRows(const float* w_, const Conv& c_, int64_t n0, int64_t k_end_)
      : w(w_), c(c_), k(tile::slice_k<kWalk>(threadIdx.x)), k_end(k_end_) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) ci[i] = static_cast<int>(n0) + tile::slice_row<kWalk>(threadIdx.x, i);
    if (k_end > 0) tap.set(k, c.kw, c.cout);
  }

  __device__ __forceinline__ void fetch(float (&v)[kLoads]) {
    const bool k_ok = k < k_end;
    const int64_t tap_base = static_cast<int64_t>(tap.hi * c.kw + tap.mid) * c.cin;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      v[i] = k_ok && ci[i] < c.cin ? __ldg(w + (tap_base + ci[i]) * c.cout + tap.lo) : 0.0f;
    }
    k += kBK;
    tap.step(kBK, c.kw, c.cout);
  }
};

__global__ void __launch_bounds__(tile::kThreads, tile::kMinBlocks)
    conv2d_backward_data_kernel(Conv c, const float* __restrict__ w,
                                const float* __restrict__ dy, float* __restrict__ dx,
                                int64_t tiles_n) {
  const int64_t m = static_cast<int64_t>(c.n) * c.h * c.w;
  const int64_t taps = static_cast<int64_t>(c.kh) * c.kw * c.cout;
  const int64_t m0 = blockIdx.x / tiles_n * kBM, n0 = blockIdx.x % tiles_n * kBN;
  Gather a(dy, c, m0, m, taps);
  FilterRows b(w, c, n0, taps);
  float acc[tile::kTM][tile::kTN];
  tile::multiply(a, b, tile::ceil_div(taps, kBK), acc);
  tile::store(acc, m0, n0, m, c.cin, tile::Epilogue{dx, c.cin, false, nullptr, false});
}

// ---- filter gradient: [dW; db] (patch + 1 × cout) = [windowsᵀ; 1ᵀ] · dy, per chunk --

// A: row q = patch position (ki, kj, ci), or q = patch, a row of ones whose product with
// dy is db; column k = output pixel r = (image, oy, ox) holds xpad[image, oy·sh + ki,
// ox·sw + kj, ci] (1 in the ones row). Read along q: consecutive ci are contiguous in x.
struct WindowsT {
  static constexpr Walk kWalk = Walk::kAlongMN;
  const float* x;
  const Conv& c;
  int64_t offset[kLoads];  // (ki·w + kj)·cin + ci: the row's place in a window
  int ki[kLoads], kj[kLoads];
  bool tap_ok[kLoads], ones[kLoads];
  Digits pixel;  // (image, oy, ox) of this thread's k
  int64_t k, k_end;

  __device__ WindowsT(const float* x_, const Conv& c_, int64_t m0, int64_t patch,
                      int64_t k_begin, int64_t k_end_)
      : x(x_), c(c_), k(k_begin + tile::slice_k<kWalk>(threadIdx.x)), k_end(k_end_) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int64_t q = m0 + tile::slice_row<kWalk>(threadIdx.x, i);
      tap_ok[i] = q < patch;
      ones[i] = q == patch;
      Digits d;
      if (tap_ok[i]) d.set(q, c.kw, c.cin);
      ki[i] = d.hi;
      kj[i] = d.mid;
      offset[i] = (static_cast<int64_t>(d.hi) * c.w + d.mid) * c.cin + d.lo;
    }
    if (k_begin < k_end) pixel.set(k, c.oh, c.ow);
  }

  __device__ __forceinline__ void fetch(float (&v)[kLoads]) {
    const bool k_ok = k < k_end;
    const int iy0 = pixel.mid * c.sh - c.pt, ix0 = pixel.lo * c.sw - c.pl;
    const int64_t base = static_cast<int64_t>(pixel.hi) * c.h * c.w * c.cin +
                         (static_cast<int64_t>(iy0) * c.w + ix0) * c.cin;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const bool in_x = tap_ok[i] && inside(iy0 + ki[i], c.h) && inside(ix0 + kj[i], c.w);
      v[i] = !k_ok ? 0.0f : ones[i] ? 1.0f : in_x ? __ldg(x + base + offset[i]) : 0.0f;
    }
    k += kBK;
    pixel.step(kBK, c.oh, c.ow);
  }
};

// Pass 1: block (tile, chunk) writes its chunk's partial [dW; db] tile into
// workspace[chunk], summing the chunk's pixels in order.
__global__ void __launch_bounds__(tile::kThreads, tile::kMinBlocks)
    conv2d_filter_partial_kernel(Conv c, const float* __restrict__ x,
                                 const float* __restrict__ dy, float* __restrict__ workspace,
                                 int64_t tiles_n, int64_t chunk_pixels) {
  const int64_t pixels = static_cast<int64_t>(c.n) * c.oh * c.ow;
  const int64_t patch = static_cast<int64_t>(c.kh) * c.kw * c.cin, rows = patch + 1;
  const int64_t m0 = blockIdx.x / tiles_n * kBM, n0 = blockIdx.x % tiles_n * kBN;
  const int64_t r_begin = blockIdx.y * chunk_pixels;
  const int64_t r_end = min(r_begin + chunk_pixels, pixels);
  WindowsT a(x, c, m0, patch, r_begin, r_end);
  tile::UnitMN b(dy, c.cout, n0, c.cout, r_begin, r_end);  // dy[r, co] at dy[r·cout + co]
  float acc[tile::kTM][tile::kTN];
  tile::multiply(a, b, tile::ceil_div(r_end - r_begin, kBK), acc);
  float* part = workspace + blockIdx.y * rows * c.cout;
  tile::store(acc, m0, n0, rows, c.cout, tile::Epilogue{part, c.cout, false, nullptr, false});
}

// Pass 2: one thread per output adds the chunks' partials in chunk order (to what dW and
// db hold when accumulating); the first patch·cout outputs are dW (HWIO order), the last
// cout are db.
__global__ void conv2d_filter_sum_kernel(int64_t chunks, int64_t outputs, int64_t dw_count,
                                         const float* __restrict__ workspace, bool accumulate,
                                         float* __restrict__ dw, float* __restrict__ db) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= outputs) return;
  float sum = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += workspace[chunk * outputs + i];
  float* out = i < dw_count ? dw + i : db + (i - dw_count);
  *out = accumulate ? *out + sum : sum;
}

constexpr int kSumThreads = 256;

// The filter gradient's split of the n·oh·ow output pixels into chunks. It depends on
// the geometry alone, never on the device, so the summation order (and the bits) are the
// same on every GPU. About 1024 blocks keep a large GPU busy; more than 64 chunks would
// cost workspace and pass-2 reads for no gain; a chunk of under 256 pixels (16 K steps)
// would spend as long in its prologue and epilogue as in its sums.
constexpr int64_t kTargetBlocks = 1024, kMaxChunks = 64, kMinChunkPixels = 256;

struct FilterSplit {
  int64_t chunks, chunk_pixels;
};

// The chunks asked for. It never falls as the batch grows (both bounds rise with the
// pixel count), and the split below uses at most this many, so it sizes the workspace
// for every batch up to g.n: the split itself is not monotone (a 200-image batch can
// need more chunks than a 256-image one), which once overran the workspace.
int64_t filter_chunks_wanted(const Conv2dGeometry& g) {
  const int64_t pixels = g.n * g.oh * g.ow;
  if (pixels <= 0 || g.cout <= 0) return 0;
  const int64_t tiles = tile::ceil_div(g.patch() + 1, kBM) * tile::ceil_div(g.cout, kBN);
  const int64_t chunks = std::clamp<int64_t>(tile::ceil_div(kTargetBlocks, tiles), 1, kMaxChunks);
  return std::min(chunks, tile::ceil_div(pixels, kMinChunkPixels));
}

FilterSplit filter_split(const Conv2dGeometry& g) {
  const int64_t pixels = g.n * g.oh * g.ow, chunks = filter_chunks_wanted(g);
  if (chunks == 0) return {0, 0};
  // Whole K steps per chunk; rounding up may leave fewer chunks, never an empty one.
  const int64_t chunk_pixels = tile::ceil_div(tile::ceil_div(pixels, chunks), kBK) * kBK;
  return {tile::ceil_div(pixels, chunk_pixels), chunk_pixels};
}

}  // namespace

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                    bool relu, float* y, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  const int64_t m = g.n * g.oh * g.ow;
  if (m <= 0 || g.cout <= 0) return;
  const Conv c = narrow(g, "conv2d_forward");
  const int64_t tiles_n = tile::ceil_div(g.cout, kBN);
  const unsigned blocks = tile::grid_x(tile::ceil_div(m, kBM) * tiles_n, "conv2d_forward_kernel");
  conv2d_forward_kernel<<<blocks, tile::kThreads, 0, stream>>>(c, x, w, bias, relu, y, tiles_n);
  check_launch("conv2d_forward_kernel");
}

void conv2d_backward_data(const Conv2dGeometry& g, const float* w, const float* dy, float* dx,
                          const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  const int64_t m = g.n * g.h * g.w;
  if (m <= 0 || g.cin <= 0) return;
  const Conv c = narrow(g, "conv2d_backward_data");
  const int64_t tiles_n = tile::ceil_div(g.cin, kBN);
  const unsigned blocks =
      tile::grid_x(tile::ceil_div(m, kBM) * tiles_n, "conv2d_backward_data_kernel");
  conv2d_backward_data_kernel<<<blocks, tile::kThreads, 0, stream>>>(c, w, dy, dx, tiles_n);
  check_launch("conv2d_backward_data_kernel");
}

int64_t conv2d_workspace(const Conv2dGeometry& g, int) {
  return filter_chunks_wanted(g) * (g.patch() + 1) * g.cout;
}

// An empty batch still writes dw = 0 and db = 0 (pass 2 over no chunks).
void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                            float* dw, float* db, bool accumulate, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  float* workspace = ex.workspace;
  if (g.cout <= 0) return;
  const Conv c = narrow(g, "conv2d_backward_filter");
  const FilterSplit split = filter_split(g);
  const int64_t rows = g.patch() + 1, outputs = rows * g.cout;
  if (split.chunks > 0) {
    const int64_t tiles_n = tile::ceil_div(g.cout, kBN);
    const dim3 grid(tile::grid_x(tile::ceil_div(rows, kBM) * tiles_n, "conv2d_filter_partial_kernel"),
                    static_cast<unsigned>(split.chunks));
    conv2d_filter_partial_kernel<<<grid, tile::kThreads, 0, stream>>>(c, x, dy, workspace, tiles_n,
                                                                      split.chunk_pixels);
    check_launch("conv2d_filter_partial_kernel");
  }
  const unsigned blocks =
      tile::grid_x(tile::ceil_div(outputs, kSumThreads), "conv2d_filter_sum_kernel");
  conv2d_filter_sum_kernel<<<blocks, kSumThreads, 0, stream>>>(split.chunks, outputs,
                                                               outputs - g.cout, workspace, accumulate,
                                                               dw, db);
  check_launch("conv2d_filter_sum_kernel");
}

}  // namespace fastnn::cuda
