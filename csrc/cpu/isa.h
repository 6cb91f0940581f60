// isa.h — included by every kernel file, which CMake compiles once per ISA path with
// FASTNN_ISA set to portable, avx2 or avx512 and that path's -m flags. FASTNN_ISA names
// the namespace, so the three builds of one kernel live side by side in one module.
//
// vfloat is a GCC/Clang vector extension as wide as the path's registers (16, 32, 64
// bytes): arithmetic on it compiles to SSE, AVX2 or AVX-512 instructions, so one
// readable source serves every path. Helpers here are static: no symbol compiled with
// one ISA's flags can be merged into another path by the linker.
#pragma once

#include <cstdint>
#include <cstring>
#include <climits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/workspace.h"
#include "ops.h"

#ifndef FASTNN_ISA
#error "FASTNN_ISA must name the ISA path (portable, avx2, avx512)"
#endif

#if defined(__AVX512F__)
#define FASTNN_VECTOR_BYTES 64
#elif defined(__AVX2__)
#define FASTNN_VECTOR_BYTES 32
#else
#define FASTNN_VECTOR_BYTES 16
#endif

namespace fastnn::cpu::FASTNN_ISA {

typedef float vfloat __attribute__((vector_size(FASTNN_VECTOR_BYTES)));
typedef int32_t vint __attribute__((vector_size(FASTNN_VECTOR_BYTES)));  // a compare's mask
constexpr int kLanes = FASTNN_VECTOR_BYTES / sizeof(float);

static inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}

static inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// The first `lanes` (<= kLanes) elements, for the tail of a row; the other lanes read 0
// and are not written. A whole vector takes a plain move: AVX2's masked moves cost
// several times more on some CPUs (an AMD EPYC here: ReLU 4x slower than the portable
// path's plain moves). A tail uses masked moves on AVX-512 and AVX2 (masked-off lanes
// never touch memory, so a tail at the end of a buffer is safe); the portable path
// copies bytes.
#if defined(__AVX512F__)
static inline __mmask16 lane_mask(int64_t lanes) { return static_cast<__mmask16>((1u << lanes) - 1); }
static inline vfloat load_n(const float* p, int64_t lanes) {
  if (lanes == kLanes) return load(p);
  return reinterpret_cast<vfloat>(_mm512_maskz_loadu_ps(lane_mask(lanes), p));
}
static inline void store_n(float* p, vfloat v, int64_t lanes) {
  if (lanes == kLanes) return store(p, v);
  _mm512_mask_storeu_ps(p, lane_mask(lanes), reinterpret_cast<__m512>(v));
}
static inline vint load_n(const int32_t* p, int64_t lanes) {
  if (lanes == kLanes) return reinterpret_cast<vint>(_mm512_loadu_si512(p));
  return reinterpret_cast<vint>(_mm512_maskz_loadu_epi32(lane_mask(lanes), p));
}
static inline void store_n(int32_t* p, vint v, int64_t lanes) {
  if (lanes == kLanes) return _mm512_storeu_si512(p, reinterpret_cast<__m512i>(v));
  _mm512_mask_storeu_epi32(p, lane_mask(lanes), reinterpret_cast<__m512i>(v));
}
#elif defined(__AVX2__)
static inline __m256i lane_mask(int64_t lanes) {
  const vint iota{0, 1, 2, 3, 4, 5, 6, 7};
  return reinterpret_cast<__m256i>(iota < static_cast<int32_t>(lanes));
}
static inline vfloat load_n(const float* p, int64_t lanes) {
  if (lanes == kLanes) return load(p);
  return reinterpret_cast<vfloat>(_mm256_maskload_ps(p, lane_mask(lanes)));
}
static inline void store_n(float* p, vfloat v, int64_t lanes) {
  if (lanes == kLanes) return store(p, v);
  _mm256_maskstore_ps(p, lane_mask(lanes), reinterpret_cast<__m256>(v));
}
static inline vint load_n(const int32_t* p, int64_t lanes) {
  if (lanes == kLanes) return reinterpret_cast<vint>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return reinterpret_cast<vint>(_mm256_maskload_epi32(p, lane_mask(lanes)));
}
static inline void store_n(int32_t* p, vint v, int64_t lanes) {
  if (lanes == kLanes) {
    return _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i>(v));
  }
  _mm256_maskstore_epi32(p, lane_mask(lanes), reinterpret_cast<__m256i>(v));
}
#else
// Whole vectors take a plain move; only a tail pays for a variable-length copy.
template <class V, class T>
static inline V load_bytes(const T* p, int64_t lanes) {
  V v{};
  std::memcpy(&v, p, lanes == kLanes ? sizeof v : sizeof(T) * lanes);
  return v;
}
template <class V, class T>
static inline void store_bytes(T* p, V v, int64_t lanes) {
  if (lanes == kLanes) {
    std::memcpy(p, &v, sizeof v);
  } else {
    std::memcpy(p, &v, sizeof(T) * lanes);
  }
}
static inline vfloat load_n(const float* p, int64_t lanes) { return load_bytes<vfloat>(p, lanes); }
static inline vint load_n(const int32_t* p, int64_t lanes) { return load_bytes<vint>(p, lanes); }
static inline void store_n(float* p, vfloat v, int64_t lanes) { store_bytes(p, v, lanes); }
static inline void store_n(int32_t* p, vint v, int64_t lanes) { store_bytes(p, v, lanes); }
#endif

// Runs inside an im2col row (kw·cin floats, only 3 in a first layer): whole vectors,
// then a scalar tail. Not a call to memmove, which costs more than a short copy, nor a
// masked store, which the load of the next run cannot get past until it retires.
static inline void copy_floats(float* dst, const float* src, int64_t count) {
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) store(dst + i, load(src + i));
  for (; i < count; ++i) dst[i] = src[i];
}

static inline void zero_floats(float* dst, int64_t count) {
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) store(dst + i, vfloat{});
  for (; i < count; ++i) dst[i] = 0.0f;
}

// dst[i] += src[i]
static inline void add_floats(float* dst, const float* src, int64_t count) {
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) store(dst + i, load(dst + i) + load(src + i));
  for (; i < count; ++i) dst[i] += src[i];
}

// body(i, lanes) for i = begin, begin + kLanes, ...: lanes is kLanes but at the tail.
template <class F>
static inline void for_each_vector(int64_t begin, int64_t end, F&& body) {
  for (int64_t i = begin; i < end; i += kLanes) body(i, end - i < kLanes ? end - i : kLanes);
}

// x − (+0) is x for every x (−0 included), so this folds to a plain broadcast; x + 0
// would not (−0 + 0 = +0) and costs an add on the FMA ports.
static inline vfloat broadcast(float x) { return x - vfloat{}; }

// ---- GEMM building blocks, shared by gemm.cpp and conv2d.cpp's implicit GEMM --------

// The register tile: MR rows of A times NV vectors (NR columns) of B, MR·NV
// accumulators plus NV B vectors and a broadcast: 6×2 → 15 of the 16 registers of SSE2
// and AVX2; 6×4 → 29 of AVX-512's 32, which halves the B loads per multiply-add.
constexpr int64_t MR = 6;
#if defined(__AVX512F__)
constexpr int64_t NV = 4;
#else
constexpr int64_t NV = 2;
#endif
constexpr int64_t NR = NV * kLanes;

// Where the MR rows of an A strip lie: element k of row i, with k = o·inner + q and
// q < inner, sits at row[i][o·outer_step + q·inner_step]. A matrix row is one run
// (inner = ∞); an implicit-GEMM convolution walks the rows of a receptive field
// (forward) or of an output image (filter gradient) without building im2col.
struct AWalk {
  const float* row[MR];
  int64_t inner, inner_step, outer_step;
};

struct Epilogue {
  bool overwrite;     // C = tile (first K block, not accumulating), else C += tile
  const float* bias;  // added once the sum is complete (last K block), or null
  bool relu;          // likewise
};

// C[rows×cols] (+)= A strip (MR×kc, rows valid) · B strip (kc×cols, row k at b + k·ldb;
// a packed strip has ldb = NR). Whole vectors of B are read: up to 2 when cols <= 2
// vectors, else NV, and those reads must stay inside the buffer.
void micro_kernel(int64_t kc, const AWalk& a, const float* b, int64_t ldb, float* c,
                  int64_t ldc, int64_t rows, int64_t cols, const Epilogue& e);

// Whether a row-major k×n matrix with row stride n can be the B operand as it is, strip
// jr at b + jr with ldb = n: every strip is exactly as wide as the vectors the
// micro-kernel reads (n a multiple of NR, or n = 2 vectors for the narrow tile).
static inline bool rows_are_strips(int64_t n) { return n % NR == 0 || n == 2 * kLanes; }
// op(B)[p0:p0+kc, j0:j0+nc] -> NR-column strips, each stored p-major (NR floats per p);
// columns past the edge are zero.
void pack_b(const Gemm& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst);

// The kernels of this path, one file per op family (ops.h's FASTNN_KERNELS), and the
// single-threaded GEMM the convolutions call on each worker's share.
#define FASTNN_DECLARE_KERNEL(name, params) void name params;
FASTNN_KERNELS(FASTNN_DECLARE_KERNEL)
#undef FASTNN_DECLARE_KERNEL
void gemm_serial(const Gemm& g, float* pack);  // one thread, kGemmPackFloats of scratch

extern const Kernels kernels;

}  // namespace fastnn::cpu::FASTNN_ISA
