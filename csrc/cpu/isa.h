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
constexpr int kLanes = FASTNN_VECTOR_BYTES / sizeof(float);

static inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}

static inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// x − (+0) is x for every x (−0 included), so this folds to a plain broadcast; x + 0
// would not (−0 + 0 = +0) and costs an add on the FMA ports.
static inline vfloat broadcast(float x) { return x - vfloat{}; }

// The kernels of this path (one file per op family); kernel_table.cpp lists them.
void gemm(const Gemm& g, const Exec& ex);
void gemm_serial(const Gemm& g, float* pack);  // one thread, kGemmPackFloats of scratch
void sum_rows(int64_t rows, int64_t cols, const float* x, float* out, const Exec& ex);
void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w,
                    const float* bias, bool relu, float* y, const Exec& ex);
void conv2d_backward_data(const Conv2dGeometry& g, const float* w, const float* dy,
                          float* dx, const Exec& ex);
void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                            float* dw, float* db, const Exec& ex);
void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       const Exec& ex);
void maxpool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                        float* dx, const Exec& ex);
void relu_forward(int64_t count, const float* x, float* y, const Exec& ex);
void relu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   const Exec& ex);
void dropout_forward(int64_t count, const float* x, float* y, float* mask,
                     const DropoutStep& step, const Exec& ex);
void softmax(int64_t n, int64_t classes, const float* logits, float* probs, const Exec& ex);
double softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                             const int32_t* labels, float* dlogits, const Exec& ex);
void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, const Exec& ex);
void sgd_update(int64_t count, float* param, const float* grad, float* velocity,
                const SgdStep& step, const Exec& ex);

extern const CpuKernels kernels;

}  // namespace fastnn::cpu::FASTNN_ISA
