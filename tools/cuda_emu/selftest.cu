// selftest.cu — checks the emulator against CUDA's documented behaviour: launch limits and
// their error codes, barriers and warp intrinsics (results, divergence and deadlock
// reports), memory checks, stream capture and graph replay, events. Built and run by
// `build.sh --selftest`; prints each failed check and exits non-zero if any failed.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
      ++failures;                                                              \
    }                                                                          \
  } while (0)
#define CHECK_ERR(call, code)                                                  \
  do {                                                                         \
    const cudaError_t got_ = (call);                                           \
    if (got_ != (code)) {                                                      \
      std::printf("FAIL %s:%d: %s gave %s, expected %s\n", __FILE__, __LINE__, \
                  #call, cudaGetErrorName(got_), #code);                       \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

// ---- kernels -----------------------------------------------------------------------------

__global__ void fill(float* out, int n, float value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value + i;
}

__global__ void __launch_bounds__(128) bounded(int* out) { out[threadIdx.x] = 1; }

// Block sum through shared memory: a tree of __syncthreads.
__global__ void block_sum(const float* in, float* out) {
  __shared__ float partial[256];
  partial[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
  __syncthreads();
  for (int half = 128; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// Warp intrinsics on lane-dependent values; each thread writes what it got.
__global__ void warp_ops(int* out) {
  const int lane = threadIdx.x % 32;
  int sum = lane;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  out[threadIdx.x * 8 + 0] = sum;                                        // 496 everywhere
  out[threadIdx.x * 8 + 1] = __shfl_down_sync(0xffffffffu, lane, 3);     // lane + 3, or lane
  out[threadIdx.x * 8 + 2] = __shfl_up_sync(0xffffffffu, lane, 2);       // lane − 2, or lane
  out[threadIdx.x * 8 + 3] = __shfl_sync(0xffffffffu, lane * 10, 5, 8);  // 10·(segment + 5)
  out[threadIdx.x * 8 + 4] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
  const double d = __shfl_xor_sync(0xffffffffu, lane + 0.5, 1);          // 64-bit values
  out[threadIdx.x * 8 + 5] = static_cast<int>(d * 2);
  int half = -1;  // divergent halves, each with its own mask: legal
  if (lane < 16) {
    half = __shfl_sync(0x0000ffffu, lane, 0);
  } else {
    half = __shfl_sync(0xffff0000u, lane, 16);
  }
  out[threadIdx.x * 8 + 6] = half;
  out[threadIdx.x * 8 + 7] = __syncthreads_count(lane < 4);
}

__global__ void divergent_barrier(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// Lanes 0–15 reach a full-mask shuffle whose other lanes wait at a barrier: a hang on a GPU.
__global__ void warp_deadlock(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x < 16) {
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  }
  __syncthreads();
  out[threadIdx.x] = v;
}

// Half the warp shuffles while the other half votes, all with the full mask.
__global__ void mismatched_intrinsics(int* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
  } else {
    out[threadIdx.x] = static_cast<int>(__ballot_sync(0xffffffffu, 1));
  }
}

// Threads that exit early do not hold back a barrier (as on sm_70+).
__global__ void early_exit(int* out) {
  if (threadIdx.x >= 40) return;
  __shared__ int seen[64];
  seen[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = seen[(threadIdx.x + 1) % 40];
}

// Reads shared memory nobody wrote in this block: NaN, as uninitialised memory should be.
__global__ void stale_shared(float* out) {
  __shared__ float s[32];
  if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

__global__ void dynamic_shared(float* out, int n) {
  extern __shared__ float buffer[];
  buffer[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = buffer[n - 1 - threadIdx.x];
}

__global__ void atomics(int* counter, float* total, unsigned* maximum) {
  atomicAdd(counter, 1);
  atomicAdd(total, 0.5f);
  atomicMax(maximum, threadIdx.x + blockIdx.x * 100u);
}

__global__ void add_one(float* data, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] += 1.0f;
}

template <class T, int kScale>
__global__ void scaled(T* data, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) data[i] = static_cast<T>(i * kScale);
}

// ---- tests ---------------------------------------------------------------------------------

static void test_launch_checks() {
  float* d = nullptr;
  CHECK_ERR(cudaMalloc(&d, 1024 * sizeof(float)), cudaSuccess);
  cudaGetLastError();
  fill<<<1, 1025>>>(d, 1024, 0.0f);
  CHECK_ERR(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);  // peek keeps it
  CHECK_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);  // read once, then clear
  fill<<<dim3(1, 65536), 32>>>(d, 1024, 0.0f);
  CHECK_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);
  fill<<<0, 32>>>(d, 1024, 0.0f);
  CHECK_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);
  fill<<<1, dim3(2, 2, 65)>>>(d, 1024, 0.0f);
  CHECK_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);
  dynamic_shared<<<1, 32, 48 * 1024 + 4>>>(d, 32);
  CHECK_ERR(cudaGetLastError(), cudaErrorInvalidValue);
  CHECK_ERR(cudaFuncSetAttribute(dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024),
            cudaSuccess);
  dynamic_shared<<<1, 32, 48 * 1024 + 4>>>(d, 32);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  int* flags = nullptr;
  CHECK_ERR(cudaMalloc(&flags, 256 * sizeof(int)), cudaSuccess);
  bounded<<<1, 256>>>(flags);
  CHECK_ERR(cudaGetLastError(), cudaErrorLaunchOutOfResources);
  bounded<<<1, 128>>>(flags);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  // A refused launch does not run: the buffer keeps its fresh NaN fill.
  std::vector<float> host(1024);
  fill<<<1, 2048>>>(d, 1024, 0.0f);
  cudaGetLastError();
  CHECK_ERR(cudaMemcpy(host.data(), d, 4096, cudaMemcpyDeviceToHost), cudaSuccess);
  CHECK(std::isnan(host[40]));
  fill<<<4, 256>>>(d, 1024, 3.0f);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  CHECK_ERR(cudaMemcpy(host.data(), d, 4096, cudaMemcpyDeviceToHost), cudaSuccess);
  CHECK(host[0] == 3.0f && host[1023] == 1026.0f);
  // A multi-line launch of a template kernel; "fill<<<1, 1>>>(d, 0, 0)" in a string or a
  // comment (like this one: fill<<<1, 1>>>(d, 0, 0.0f);) is left alone by transform.py.
  const char* text = "fill<<<1, 1>>>(d, 0, 0)";
  CHECK(std::strlen(text) == 23);
  scaled<float, 3>
      <<<1, 64>>>(
          d, 100);
  CHECK_ERR(cudaMemcpy(host.data(), d, 400, cudaMemcpyDeviceToHost), cudaSuccess);
  CHECK(host[99] == 297.0f);
  cudaFree(d);
  cudaFree(flags);
}

static void test_launch_kernel_api() {
  float* d = nullptr;
  cudaMalloc(&d, 64 * sizeof(float));
  int n = 64;
  float value = 2.0f;
  void* args[] = {&d, &n, &value};
  CHECK_ERR(cudaLaunchKernel(fill, dim3(1), dim3(64), args, 0, nullptr), cudaSuccess);
  float host[64];
  cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost);
  CHECK(host[63] == 65.0f);
  CHECK_ERR(cudaLaunchKernel(fill, dim3(1), dim3(2048), args, 0, nullptr), cudaErrorInvalidConfiguration);
  cudaGetLastError();
  cudaFree(d);
}

static void test_barriers_and_warps() {
  const int blocks = 3;
  std::vector<float> in(blocks * 256);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7);
  float *d_in, *d_out;
  cudaMalloc(&d_in, in.size() * sizeof(float));
  cudaMalloc(&d_out, blocks * sizeof(float));
  cudaMemcpy(d_in, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice);
  block_sum<<<blocks, 256>>>(d_in, d_out);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  float out[blocks];
  cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost);
  for (int b = 0; b < blocks; ++b) {
    float expected = 0;
    for (int t = 0; t < 256; ++t) expected += in[b * 256 + t];
    CHECK(out[b] == expected);
  }

  int* d_warp;
  cudaMalloc(&d_warp, 64 * 8 * sizeof(int));
  warp_ops<<<1, 64>>>(d_warp);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  std::vector<int> w(64 * 8);
  cudaMemcpy(w.data(), d_warp, w.size() * sizeof(int), cudaMemcpyDeviceToHost);
  unsigned ballot = 0;
  for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    CHECK(w[t * 8 + 0] == 496);
    CHECK(w[t * 8 + 1] == (lane + 3 < 32 ? lane + 3 : lane));
    CHECK(w[t * 8 + 2] == (lane >= 2 ? lane - 2 : lane));
    CHECK(w[t * 8 + 3] == 10 * (lane / 8 * 8 + 5));
    CHECK(static_cast<unsigned>(w[t * 8 + 4]) == ballot);
    CHECK(w[t * 8 + 5] == 2 * (lane ^ 1) + 1);
    CHECK(w[t * 8 + 6] == (lane < 16 ? 0 : 16));
    CHECK(w[t * 8 + 7] == 8);  // lanes 0–3 of both warps
  }

  int* d_flags;
  cudaMalloc(&d_flags, 64 * sizeof(int));
  divergent_barrier<<<1, 64>>>(d_flags);
  CHECK_ERR(cudaGetLastError(), cudaErrorLaunchFailure);
  warp_deadlock<<<1, 32>>>(d_flags);
  CHECK_ERR(cudaGetLastError(), cudaErrorLaunchFailure);
  mismatched_intrinsics<<<1, 32>>>(d_flags);
  CHECK_ERR(cudaGetLastError(), cudaErrorLaunchFailure);
  early_exit<<<1, 64>>>(d_flags);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  int ee[40];
  cudaMemcpy(ee, d_flags, sizeof ee, cudaMemcpyDeviceToHost);
  CHECK(ee[0] == 1 && ee[39] == 0);

  float* d_stale;
  cudaMalloc(&d_stale, 2 * 32 * sizeof(float));
  stale_shared<<<2, 32>>>(d_stale);
  float stale[64];
  cudaMemcpy(stale, d_stale, sizeof stale, cudaMemcpyDeviceToHost);
  CHECK(stale[0] == 1.0f && std::isnan(stale[32]));

  dynamic_shared<<<1, 32, 32 * sizeof(float)>>>(d_stale, 32);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  cudaMemcpy(stale, d_stale, 32 * sizeof(float), cudaMemcpyDeviceToHost);
  CHECK(stale[0] == 31.0f && stale[31] == 0.0f);

  int* counter;
  float* total;
  unsigned* maximum;
  cudaMalloc(&counter, sizeof(int));
  cudaMalloc(&total, sizeof(float));
  cudaMalloc(&maximum, sizeof(unsigned));
  cudaMemset(counter, 0, sizeof(int));
  cudaMemset(total, 0, sizeof(float));
  cudaMemset(maximum, 0, sizeof(unsigned));
  atomics<<<3, 50>>>(counter, total, maximum);
  int c;
  float t;
  unsigned m;
  cudaMemcpy(&c, counter, sizeof c, cudaMemcpyDeviceToHost);
  cudaMemcpy(&t, total, sizeof t, cudaMemcpyDeviceToHost);
  cudaMemcpy(&m, maximum, sizeof m, cudaMemcpyDeviceToHost);
  CHECK(c == 150 && t == 75.0f && m == 249);
  for (void* p : {static_cast<void*>(d_in), static_cast<void*>(d_out), static_cast<void*>(d_warp),
                  static_cast<void*>(d_flags), static_cast<void*>(d_stale), static_cast<void*>(counter),
                  static_cast<void*>(total), static_cast<void*>(maximum)}) {
    CHECK_ERR(cudaFree(p), cudaSuccess);
  }
}

static void test_memory() {
  float* d = nullptr;
  CHECK_ERR(cudaMalloc(&d, 10 * sizeof(float)), cudaSuccess);
  float host[16] = {};
  CHECK_ERR(cudaMemcpy(host, d, 10 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  CHECK(std::isnan(host[0]) && std::isnan(host[9]));  // fresh device memory reads as NaN
  CHECK_ERR(cudaMemcpy(d, host, 11 * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  CHECK_ERR(cudaMemcpy(host, d, 4, cudaMemcpyHostToDevice), cudaErrorInvalidValue);  // reversed
  CHECK_ERR(cudaMemset(d + 5, 0, 6 * sizeof(float)), cudaErrorInvalidValue);
  CHECK_ERR(cudaMemset(d, 0, 10 * sizeof(float)), cudaSuccess);
  size_t free_bytes, total_bytes;
  CHECK_ERR(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  CHECK(total_bytes - free_bytes >= 40);
  fill<<<1, 10>>>(host, 10, 0.0f);  // a pageable host pointer as a kernel argument
  CHECK_ERR(cudaGetLastError(), cudaErrorIllegalAddress);
  float* pinned = nullptr;
  CHECK_ERR(cudaMallocHost(&pinned, 10 * sizeof(float)), cudaSuccess);
  fill<<<1, 10>>>(pinned, 10, 0.0f);  // pinned memory is mapped: fine
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  CHECK(pinned[9] == 9.0f);
  CHECK_ERR(cudaFreeHost(pinned), cudaSuccess);
  CHECK_ERR(cudaFree(d), cudaSuccess);
  CHECK_ERR(cudaFree(d), cudaErrorInvalidValue);  // double free
  CHECK_ERR(cudaFree(nullptr), cudaSuccess);
  void* empty = reinterpret_cast<void*>(1);
  CHECK_ERR(cudaMalloc(&empty, 0), cudaSuccess);
  CHECK(empty == nullptr);
}

static void test_capture() {
  cudaGetLastError();
  cudaStream_t s, side;
  CHECK_ERR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  CHECK_ERR(cudaStreamCreate(&side), cudaSuccess);
  const int n = 300;
  float* d;
  cudaMalloc(&d, n * sizeof(float));
  float* host;
  cudaMallocHost(&host, n * sizeof(float));

  // Recorded, not run: memory is untouched until the graph is launched.
  CHECK_ERR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cudaStreamCaptureStatus status;
  CHECK_ERR(cudaStreamIsCapturing(s, &status), cudaSuccess);
  CHECK(status == cudaStreamCaptureStatusActive);
  CHECK_ERR(cudaMemsetAsync(d, 0, n * sizeof(float), s), cudaSuccess);
  add_one<<<(n + 127) / 128, 128, 0, s>>>(d, n);
  CHECK_ERR(cudaGetLastError(), cudaSuccess);
  CHECK_ERR(cudaMemcpyAsync(host, d, n * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  CHECK(std::isnan(host[0]));
  cudaGraph_t graph;
  CHECK_ERR(cudaStreamEndCapture(s, &graph), cudaSuccess);
  size_t nodes = 0;
  CHECK_ERR(cudaGraphGetNodes(graph, nullptr, &nodes), cudaSuccess);
  CHECK(nodes == 3);
  cudaGraphExec_t exec;
  CHECK_ERR(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  CHECK_ERR(cudaGraphLaunch(exec, s), cudaSuccess);
  CHECK_ERR(cudaStreamSynchronize(s), cudaSuccess);
  CHECK(host[0] == 1.0f && host[n - 1] == 1.0f);
  CHECK_ERR(cudaGraphLaunch(exec, s), cudaSuccess);
  CHECK(host[0] == 1.0f);  // the memset is part of the graph

  // Classic mistakes inside a captured region.
  CHECK_ERR(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  void* extra;
  CHECK_ERR(cudaMalloc(&extra, 16), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t bad;
  CHECK_ERR(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  CHECK(bad == nullptr);
  CHECK_ERR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  CHECK_ERR(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  CHECK_ERR(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  CHECK_ERR(cudaStreamBeginCapture(side, cudaStreamCaptureModeRelaxed), cudaSuccess);
  add_one<<<1, 32>>>(d, n);  // forgot the stream: legacy stream while a blocking one captures
  CHECK_ERR(cudaGetLastError(), cudaErrorStreamCaptureImplicit);
  CHECK_ERR(cudaStreamEndCapture(side, &bad), cudaErrorStreamCaptureInvalidated);
  CHECK_ERR(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal),
            cudaErrorStreamCaptureUnsupported);
  cudaGetLastError();

  // Fork and join through events; an unjoined fork fails the capture.
  cudaEvent_t fork, join;
  cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&join, cudaEventDisableTiming);
  CHECK_ERR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cudaEventRecord(fork, s);
  CHECK_ERR(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
  add_one<<<(n + 127) / 128, 128, 0, side>>>(d, n);
  cudaEventRecord(join, side);
  CHECK_ERR(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
  CHECK_ERR(cudaStreamEndCapture(s, &graph), cudaSuccess);
  CHECK_ERR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cudaEventRecord(fork, s);
  cudaStreamWaitEvent(side, fork, 0);
  add_one<<<1, 32, 0, side>>>(d, n);
  CHECK_ERR(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureUnjoined);
  CHECK_ERR(cudaStreamIsCapturing(side, &status), cudaSuccess);
  CHECK(status == cudaStreamCaptureStatusNone);

  // A graph replays the buffers it captured: freeing one first is caught at replay.
  float* temp;
  cudaMalloc(&temp, n * sizeof(float));
  CHECK_ERR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  add_one<<<(n + 127) / 128, 128, 0, s>>>(temp, n);
  cudaGraph_t g2;
  CHECK_ERR(cudaStreamEndCapture(s, &g2), cudaSuccess);
  cudaGraphExec_t e2;
  CHECK_ERR(cudaGraphInstantiate(&e2, g2, 0), cudaSuccess);
  cudaFree(temp);
  CHECK_ERR(cudaGraphLaunch(e2, s), cudaErrorIllegalAddress);

  cudaEvent_t a, b;
  CHECK_ERR(cudaEventCreate(&a), cudaSuccess);
  CHECK_ERR(cudaEventCreate(&b), cudaSuccess);
  float ms = -1;
  CHECK_ERR(cudaEventElapsedTime(&ms, a, b), cudaErrorInvalidResourceHandle);  // not recorded
  cudaEventRecord(a, s);
  add_one<<<1, 32, 0, s>>>(d, n);
  cudaEventRecord(b, s);
  CHECK_ERR(cudaEventSynchronize(b), cudaSuccess);
  CHECK_ERR(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  CHECK(ms >= 0.0f);
  CHECK_ERR(cudaEventElapsedTime(&ms, fork, join), cudaErrorInvalidResourceHandle);  // no timing

  for (cudaEvent_t e : {fork, join, a, b}) CHECK_ERR(cudaEventDestroy(e), cudaSuccess);
  CHECK_ERR(cudaGraphExecDestroy(exec), cudaSuccess);
  CHECK_ERR(cudaGraphExecDestroy(e2), cudaSuccess);
  CHECK_ERR(cudaGraphDestroy(graph), cudaSuccess);
  CHECK_ERR(cudaGraphDestroy(g2), cudaSuccess);
  CHECK_ERR(cudaStreamDestroy(side), cudaSuccess);
  CHECK_ERR(cudaStreamDestroy(s), cudaSuccess);
  add_one<<<1, 32, 0, s>>>(d, n);  // a destroyed stream
  CHECK_ERR(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  cudaFree(d);
  cudaFreeHost(host);
}

static void test_device() {
  int count = 0;
  CHECK_ERR(cudaGetDeviceCount(&count), cudaSuccess);
  CHECK(count == 1);
  cudaDeviceProp prop;
  CHECK_ERR(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  CHECK(std::strcmp(prop.name, "fastnn CUDA emulator") == 0);
  CHECK(prop.multiProcessorCount == 132 && prop.warpSize == 32 && prop.major == 9);
  int smem = 0;
  CHECK_ERR(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
  CHECK(smem == 227 * 1024);
  CHECK_ERR(cudaSetDevice(1), cudaErrorInvalidDevice);
  CHECK(std::strcmp(cudaGetErrorString(cudaErrorInvalidConfiguration), "invalid configuration argument") == 0);
  CHECK(std::strcmp(cudaGetErrorName(cudaErrorStreamCaptureImplicit), "cudaErrorStreamCaptureImplicit") == 0);
  // CUDA's min/max overloads.
  CHECK(min(int64_t{3}, int64_t{-2}) == -2 && max(2.0f, 3.0f) == 3.0f && min(5u, 7) == 5u);
  cudaGetLastError();
}

int main() {
  test_device();
  test_launch_checks();
  test_launch_kernel_api();
  test_barriers_and_warps();
  test_memory();
  test_capture();
  if (failures) {
    std::printf("cuda_emu selftest: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("cuda_emu selftest: all checks passed\n");
  return 0;
}
