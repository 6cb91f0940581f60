// device.h — the device-side library on the host: __syncthreads and the warp intrinsics
// (switch points of the fiber scheduler), atomics (plain read-modify-writes: only one fiber
// runs at a time), CUDA's math and bit intrinsics, __ldg and friends, and CUDA's min/max.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "fiber.h"

namespace emu {

inline int syncthreads(const char* file, int line, int mode = 0, int predicate = 0) {
  BlockScheduler* s = in_kernel();
  return s ? s->barrier(file, line, mode, predicate) : 0;
}

template <class T>
inline T warp_op(WarpOp op, unsigned mask, T value, int arg = 0, int width = 32) {
  BlockScheduler* s = in_kernel();
  return s ? s->warp(op, mask, value, arg, width) : value;
}

// Stops the launch with `code`, as a trap or a failed device assert would.
[[noreturn]] inline void kernel_fault(cudaError_t code, const std::string& what) {
  BlockScheduler* s = in_kernel();
  if (!s) emu_fatal(what.c_str());
  s->fault(code, what);
}

// Inserted by transform.py at the top of a kernel with __launch_bounds__: a block larger
// than the bound cannot launch ("too many resources requested for launch").
inline void check_launch_bounds(int max_threads, int = 0, int = 0) {
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  if (threads > static_cast<unsigned>(max_threads)) {
    kernel_fault(cudaErrorLaunchOutOfResources,
                 "block of " + std::to_string(threads) + " threads exceeds the kernel's "
                 "__launch_bounds__(" + std::to_string(max_threads) + ")");
  }
}

// `extern __shared__ T name[];` becomes `T* const name = emu::dynamic_shared<T>();` inside a
// function, or a static DynamicShared<T> at namespace scope.
template <class T>
inline T* dynamic_shared() {
  return tl_kernel ? reinterpret_cast<T*>(tl_kernel->dynamic_smem) : nullptr;
}
template <class T>
struct DynamicShared {
  operator T*() const { return dynamic_shared<T>(); }
  T& operator[](size_t i) const { return dynamic_shared<T>()[i]; }
};

}  // namespace emu

// ---- synchronisation --------------------------------------------------------------------
// Macros so each barrier knows its call site: threads meeting at different __syncthreads()
// calls are reported (undefined in CUDA, a common bug in divergent code).
#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) ::emu::syncthreads(__FILE__, __LINE__, 1, (p))
#define __syncthreads_and(p) ::emu::syncthreads(__FILE__, __LINE__, 2, (p))
#define __syncthreads_or(p) ::emu::syncthreads(__FILE__, __LINE__, 3, (p))

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::emu::warp_op(::emu::WarpOp::kSync, mask, 0u);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned) {}
inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
[[noreturn]] inline void __trap() { ::emu::kernel_fault(cudaErrorLaunchFailure, "__trap()"); }
[[noreturn]] inline void __brkpt() { ::emu::kernel_fault(cudaErrorLaunchFailure, "__brkpt()"); }

// ---- warp intrinsics: every lane named in the mask must arrive before any reads ------------
template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  return ::emu::warp_op(::emu::WarpOp::kShflIdx, mask, var, src_lane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::emu::warp_op(::emu::WarpOp::kShflUp, mask, var, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::emu::warp_op(::emu::WarpOp::kShflDown, mask, var, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  return ::emu::warp_op(::emu::WarpOp::kShflXor, mask, var, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::emu::warp_op(::emu::WarpOp::kBallot, mask, static_cast<unsigned>(predicate != 0));
}
inline int __any_sync(unsigned mask, int predicate) {
  return static_cast<int>(::emu::warp_op(::emu::WarpOp::kAny, mask, predicate != 0 ? 1u : 0u));
}
inline int __all_sync(unsigned mask, int predicate) {
  return static_cast<int>(::emu::warp_op(::emu::WarpOp::kAll, mask, predicate != 0 ? 1u : 0u));
}
inline int __uni_sync(unsigned mask, int predicate) {
  return static_cast<int>(::emu::warp_op(::emu::WarpOp::kUni, mask, predicate != 0 ? 1u : 0u));
}
#define EMU_WARP_REDUCE(name, T, op)                                             \
  inline T name(unsigned mask, T value) {                                       \
    const unsigned bits = static_cast<unsigned>(value);                         \
    return static_cast<T>(::emu::warp_op(::emu::WarpOp::op, mask, bits));       \
  }
EMU_WARP_REDUCE(__reduce_add_sync, unsigned, kReduceAdd)
EMU_WARP_REDUCE(__reduce_add_sync, int, kReduceAdd)
EMU_WARP_REDUCE(__reduce_min_sync, unsigned, kReduceMinU)
EMU_WARP_REDUCE(__reduce_min_sync, int, kReduceMinS)
EMU_WARP_REDUCE(__reduce_max_sync, unsigned, kReduceMaxU)
EMU_WARP_REDUCE(__reduce_max_sync, int, kReduceMaxS)
EMU_WARP_REDUCE(__reduce_and_sync, unsigned, kReduceAnd)
EMU_WARP_REDUCE(__reduce_or_sync, unsigned, kReduceOr)
EMU_WARP_REDUCE(__reduce_xor_sync, unsigned, kReduceXor)
#undef EMU_WARP_REDUCE
template <class T>
inline unsigned __match_any_sync(unsigned mask, T value) {
  return ::emu::warp_op(::emu::WarpOp::kMatchAny, mask, value);
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred) {
  const unsigned r = ::emu::warp_op(::emu::WarpOp::kMatchAll, mask, value);
  *pred = r != 0;
  return r;
}
// The lanes that have not exited; a GPU reports the converged subset, which may be fewer.
inline unsigned __activemask() {
  ::emu::BlockScheduler* s = ::emu::in_kernel();
  return s ? s->live_lanes() : 1u;
}

// ---- atomics: one fiber runs at a time, so a plain read-modify-write is atomic -------------
#define EMU_ATOMIC(name, T, expr)                                                           \
  inline T name(T* address, T val) {                                                       \
    const T old = *address;                                                                \
    *address = (expr);                                                                     \
    return old;                                                                            \
  }                                                                                        \
  inline T name##_block(T* address, T val) { return name(address, val); }                  \
  inline T name##_system(T* address, T val) { return name(address, val); }
#define EMU_ATOMIC_INTS(name, expr)                  \
  EMU_ATOMIC(name, int, expr)                        \
  EMU_ATOMIC(name, unsigned int, expr)               \
  EMU_ATOMIC(name, unsigned long long, expr)
EMU_ATOMIC_INTS(atomicAdd, old + val)
EMU_ATOMIC(atomicAdd, float, old + val)
EMU_ATOMIC(atomicAdd, double, old + val)
EMU_ATOMIC(atomicSub, int, old - val)
EMU_ATOMIC(atomicSub, unsigned int, old - val)
EMU_ATOMIC_INTS(atomicExch, val)
EMU_ATOMIC(atomicExch, float, val)
EMU_ATOMIC_INTS(atomicMin, val < old ? val : old)
EMU_ATOMIC(atomicMin, long long, val < old ? val : old)
EMU_ATOMIC_INTS(atomicMax, val > old ? val : old)
EMU_ATOMIC(atomicMax, long long, val > old ? val : old)
EMU_ATOMIC_INTS(atomicAnd, old & val)
EMU_ATOMIC_INTS(atomicOr, old | val)
EMU_ATOMIC_INTS(atomicXor, old ^ val)
EMU_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1)
EMU_ATOMIC(atomicDec, unsigned int, (old == 0 || old > val) ? val : old - 1)
#undef EMU_ATOMIC_INTS
#undef EMU_ATOMIC
#define EMU_ATOMIC_CAS(T)                                                                   \
  inline T atomicCAS(T* address, T compare, T val) {                                       \
    const T old = *address;                                                                \
    if (old == compare) *address = val;                                                    \
    return old;                                                                            \
  }                                                                                        \
  inline T atomicCAS_block(T* a, T c, T v) { return atomicCAS(a, c, v); }                  \
  inline T atomicCAS_system(T* a, T c, T v) { return atomicCAS(a, c, v); }
EMU_ATOMIC_CAS(int)
EMU_ATOMIC_CAS(unsigned int)
EMU_ATOMIC_CAS(unsigned long long)
EMU_ATOMIC_CAS(unsigned short)
#undef EMU_ATOMIC_CAS

// ---- loads and stores with cache hints: plain accesses here ---------------------------------
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---- math: <cmath> provides expf, log1pf, sqrtf, fmaf, fmaxf, ... as on the device. The
// fast intrinsics are computed exactly here (a GPU's are approximate: tolerances still apply).
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / std::cbrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) { *s = std::sin(x); *c = std::cos(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __frsqrt_rn(float a) { return 1.0f / std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float2int_rd(float x) { return static_cast<int>(std::floor(x)); }
inline int __float2int_ru(float x) { return static_cast<int>(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return static_cast<unsigned>(std::nearbyint(x)); }
inline unsigned __float2uint_rz(float x) { return static_cast<unsigned>(x); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }
inline int __double2int_rn(double x) { return static_cast<int>(std::nearbyint(x)); }
inline long long __float2ll_rn(float x) { return static_cast<long long>(std::nearbyint(x)); }
inline long long __double2ll_rn(double x) { return static_cast<long long>(std::nearbyint(x)); }
template <class To, class From>
inline To emu_bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "same size");
  To r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
inline int __float_as_int(float x) { return emu_bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return emu_bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return emu_bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return emu_bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return emu_bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return emu_bit_cast<double>(x); }

// ---- integer intrinsics ---------------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= ((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFFu) << (8 * i);
  return r;
}
inline int __mul24(int x, int y) {  // the low 24 bits of each, sign-extended
  const long long a = static_cast<long long>(static_cast<unsigned>(x) << 8) >> 8;
  const long long b = static_cast<long long>(static_cast<unsigned>(y) << 8) >> 8;
  return static_cast<int>(a * b);
}
inline unsigned __umul24(unsigned x, unsigned y) { return (x & 0xFFFFFFu) * (y & 0xFFFFFFu); }
inline int __mulhi(int x, int y) { return static_cast<int>((static_cast<long long>(x) * y) >> 32); }
inline unsigned __umulhi(unsigned x, unsigned y) {
  return static_cast<unsigned>((static_cast<unsigned long long>(x) * y) >> 32);
}
inline long long __mul64hi(long long x, long long y) {
  return static_cast<long long>((static_cast<__int128>(x) * y) >> 64);
}
inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(x) * y) >> 64);
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31));
}
inline int __hadd(int x, int y) { return static_cast<int>((static_cast<long long>(x) + y) >> 1); }
inline int __rhadd(int x, int y) { return static_cast<int>((static_cast<long long>(x) + y + 1) >> 1); }
inline unsigned __sad(int x, int y, unsigned z) {
  return z + static_cast<unsigned>(x > y ? x - y : y - x);
}

// ---- min/max: CUDA's overload set (crt/math_functions.hpp), so that calls which compile
// (or are ambiguous) with nvcc do the same here. Mixed signedness converts to unsigned;
// floating point follows fminf/fmaxf (a NaN loses).
namespace emu {
template <class R, class A, class B>
inline R min_of(A a, B b) {
  if constexpr (std::is_floating_point_v<R>) return std::fmin(R(a), R(b));
  return R(b) < R(a) ? R(b) : R(a);
}
template <class R, class A, class B>
inline R max_of(A a, B b) {
  if constexpr (std::is_floating_point_v<R>) return std::fmax(R(a), R(b));
  return R(b) > R(a) ? R(b) : R(a);
}
}  // namespace emu
#define EMU_MINMAX(R, A, B)                                                     \
  inline R min(A a, B b) { return ::emu::min_of<R>(a, b); }                     \
  inline R max(A a, B b) { return ::emu::max_of<R>(a, b); }
EMU_MINMAX(int, int, int)
EMU_MINMAX(unsigned, unsigned, unsigned)
EMU_MINMAX(unsigned, int, unsigned)
EMU_MINMAX(unsigned, unsigned, int)
EMU_MINMAX(long, long, long)
EMU_MINMAX(unsigned long, unsigned long, unsigned long)
EMU_MINMAX(unsigned long, long, unsigned long)
EMU_MINMAX(unsigned long, unsigned long, long)
EMU_MINMAX(long long, long long, long long)
EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
EMU_MINMAX(unsigned long long, long long, unsigned long long)
EMU_MINMAX(unsigned long long, unsigned long long, long long)
EMU_MINMAX(float, float, float)
EMU_MINMAX(double, double, double)
EMU_MINMAX(double, float, double)
EMU_MINMAX(double, double, float)
#undef EMU_MINMAX
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
