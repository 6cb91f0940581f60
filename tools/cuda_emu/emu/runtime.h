// runtime.h — the CUDA runtime API on the host: device memory (NaN-filled, range-checked),
// streams and events (work runs at once, in issue order), stream capture into graphs that
// replay their recorded operations, launch-configuration checks with CUDA's error codes,
// and emu::launch, which transform.py puts where the source had kernel<<<...>>>(...).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "device.h"
#include "types.h"

namespace emu {

// ---- options (environment, read once) --------------------------------------------------------

struct Options {
  int devices = 1;           // FASTNN_EMU_DEVICES=0: a machine without a GPU
  bool old_driver = false;   // FASTNN_EMU_DEVICES=old-driver: a driver too old for the runtime
  long fail_graph_launch = 0;  // FASTNN_EMU_FAIL_GRAPH_LAUNCH=N: the Nth cudaGraphLaunch fails
  bool reverse = false;      // FASTNN_EMU_ORDER=reverse: blocks and threads in reverse order
  bool abort_on_error = false;  // FASTNN_EMU_ABORT=1: abort() at the first diagnosed error
  bool quiet = false;        // FASTNN_EMU_QUIET=1: no diagnostics on stderr
  size_t memory_bytes = size_t{140} << 30;  // FASTNN_EMU_MEMORY_MB: device memory size
};

inline const Options& options() {
  static const Options o = [] {
    Options r;
    auto env = [](const char* name) -> const char* {
      const char* v = std::getenv(name);
      return v && *v ? v : nullptr;
    };
    if (const char* v = env("FASTNN_EMU_DEVICES")) {
      r.old_driver = std::strcmp(v, "old-driver") == 0;
      r.devices = !r.old_driver && std::atoi(v) > 0 ? 1 : 0;
    }
    if (const char* v = env("FASTNN_EMU_FAIL_GRAPH_LAUNCH")) r.fail_graph_launch = std::atol(v);
    if (const char* v = env("FASTNN_EMU_ORDER")) r.reverse = std::strcmp(v, "reverse") == 0;
    if (const char* v = env("FASTNN_EMU_ABORT")) r.abort_on_error = std::strcmp(v, "0") != 0;
    if (const char* v = env("FASTNN_EMU_QUIET")) r.quiet = std::strcmp(v, "0") != 0;
    if (const char* v = env("FASTNN_EMU_MEMORY_MB")) {
      r.memory_bytes = static_cast<size_t>(std::atoll(v)) << 20;
    }
    return r;
  }();
  return o;
}

// A CUDA error code alone says little ("invalid argument"), so every error the emulator
// detects beyond plain argument checks is explained on stderr.
inline void diagnose(const std::string& message) {
  if (!options().quiet) std::fprintf(stderr, "cuda_emu: %s\n", message.c_str());
  if (options().abort_on_error) std::abort();
}

inline std::string pointer_text(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// ---- memory ------------------------------------------------------------------------------------

enum class MemKind { kDevice, kPinned, kRegistered, kSymbol };

struct Allocation {
  size_t bytes;
  MemKind kind;
};

struct Capture;

}  // namespace emu

// The handle types' structs (global, as cuda_runtime_api.h declares them).
struct CUstream_st {
  unsigned flags = 0;
  int priority = 0;
  std::shared_ptr<emu::Capture> capture;  // the capture this stream records into, if any
  uint64_t captured_ops = 0;              // operations recorded since it joined the capture
  uint64_t joined_ops = 0;                // how many of them another stream has waited for
};

struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  double time_ms = 0.0;
  std::shared_ptr<emu::Capture> capture;  // set when last recorded in a capturing stream
  CUstream_st* source = nullptr;
  uint64_t snapshot = 0;  // source->captured_ops when recorded
};

// A recorded operation: run now, or when the graph holding it is launched.
struct CUgraphNode_st {
  virtual ~CUgraphNode_st() = default;
  virtual cudaError_t run() = 0;
  virtual std::shared_ptr<CUgraphNode_st> clone() const = 0;
  // cudaGraphExecUpdate: take `other`'s parameters if it is the same kind of operation.
  virtual bool update_from(const CUgraphNode_st& other) = 0;
};

struct CUgraph_st {
  std::vector<std::shared_ptr<CUgraphNode_st>> nodes;
};

struct CUgraphExec_st {
  std::vector<std::shared_ptr<CUgraphNode_st>> nodes;
};

namespace emu {

struct Capture {
  CUgraph_st* graph = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id owner;
  bool invalidated = false;
  CUstream_st* origin = nullptr;
  unsigned long long id = 0;
  std::vector<CUstream_st*> members;  // origin first, then streams forked into it
};

struct Device {
  std::recursive_mutex mutex;
  std::map<uintptr_t, Allocation> blocks;  // every allocation, by start address
  size_t device_bytes = 0;
  std::set<CUstream_st*> streams;
  std::set<CUevent_st*> events;
  std::set<CUgraph_st*> graphs;
  std::set<CUgraphExec_st*> execs;
  std::vector<std::shared_ptr<Capture>> captures;  // active ones
  std::map<const void*, int> max_dynamic_smem;     // cudaFuncSetAttribute, per kernel
  CUstream_st legacy_stream, per_thread_stream;
  unsigned long long next_capture_id = 1;
  const std::chrono::steady_clock::time_point epoch = std::chrono::steady_clock::now();
};

// Never destroyed: DeviceBuffer destructors in static objects may still call cudaFree.
inline Device& device() {
  static Device* d = new Device();
  return *d;
}

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                   device().epoch)
      .count();
}

inline thread_local cudaError_t tl_last_error = cudaSuccess;
inline thread_local cudaStreamCaptureMode tl_capture_mode = cudaStreamCaptureModeGlobal;

// Every API call's result passes through here: a failure becomes the last error.
inline cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) tl_last_error = e;
  return e;
}

constexpr size_t kSharedPerBlock = 48 * 1024;        // without an opt-in
constexpr size_t kSharedPerBlockOptin = 227 * 1024;  // H100/H200
constexpr size_t kSharedPerSM = 228 * 1024;

// The allocation holding [p, p + bytes), if there is one (bytes = 0: p may be its end).
inline const std::pair<const uintptr_t, Allocation>* find_allocation(const void* p, size_t bytes) {
  auto& blocks = device().blocks;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = blocks.upper_bound(a);
  if (it == blocks.begin()) return nullptr;
  --it;
  const uintptr_t end = it->first + it->second.bytes;
  if (a > end || (bytes > 0 && a == end) || bytes > end - a) return nullptr;
  return &*it;
}

// Why [p, p + bytes) is not inside one allocation of `kind`, or "" when it is.
inline std::string range_problem(const void* p, size_t bytes, bool want_device) {
  auto& blocks = device().blocks;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = blocks.upper_bound(a);
  const std::pair<const uintptr_t, Allocation>* holder = nullptr;
  if (it != blocks.begin()) {
    --it;
    if (a < it->first + it->second.bytes) holder = &*it;
  }
  const bool is_device = holder && holder->second.kind == MemKind::kDevice;
  if (!want_device) return is_device ? "is device memory" : "";
  if (!holder) {
    return "is not device memory (no cudaMalloc allocation holds it: freed, or a host pointer)";
  }
  if (!is_device) return "is pinned host memory, not device memory";
  const size_t offset = a - holder->first;
  if (bytes > holder->second.bytes - offset) {
    return "runs past its allocation: " + std::to_string(bytes) + " bytes from offset " +
           std::to_string(offset) + " of a " + std::to_string(holder->second.bytes) + "-byte block";
  }
  return "";
}

// ---- streams and capture -----------------------------------------------------------------

inline bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

inline cudaError_t resolve_stream(cudaStream_t handle, CUstream_st** out, const char* api) {
  Device& d = device();
  if (is_legacy(handle)) {
    *out = &d.legacy_stream;
  } else if (handle == cudaStreamPerThread) {
    *out = &d.per_thread_stream;
  } else if (d.streams.count(handle)) {
    *out = handle;
  } else {
    diagnose(std::string(api) + ": stream " + pointer_text(handle) +
             " was destroyed or never created");
    return cudaErrorInvalidResourceHandle;
  }
  return cudaSuccess;
}

inline void end_capture_membership(Capture& c) {
  for (CUstream_st* s : c.members) {
    s->capture.reset();
    s->captured_ops = s->joined_ops = 0;
  }
  c.members.clear();
  auto& all = device().captures;
  all.erase(std::remove_if(all.begin(), all.end(),
                           [&](const std::shared_ptr<Capture>& p) { return p.get() == &c; }),
            all.end());
}

// "Potentially unsafe" calls (allocation, synchronisation) are refused during a capture
// that is not relaxed — this thread's own, or any thread's global-mode one — and the
// refusal invalidates that capture, as CUDA does. A cudaMalloc or cudaStreamSynchronize
// inside a captured region is the classic mistake this catches.
inline cudaError_t check_unsafe_call(const char* api) {
  for (auto& c : device().captures) {
    const bool blocks = c->mode == cudaStreamCaptureModeGlobal ||
                        (c->mode == cudaStreamCaptureModeThreadLocal &&
                         c->owner == std::this_thread::get_id());
    if (!blocks) continue;
    c->invalidated = true;
    diagnose(std::string(api) + " during stream capture (capture " + std::to_string(c->id) +
             "): not permitted while a stream captures; the capture is invalidated");
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

// The legacy default stream synchronises with every blocking stream, so it cannot be used
// while one of them captures (a launch that forgot its stream argument, for instance).
inline cudaError_t check_legacy_use(const char* api) {
  for (auto& c : device().captures) {
    for (CUstream_st* s : c->members) {
      if (s->flags & cudaStreamNonBlocking) continue;
      c->invalidated = true;
      diagnose(std::string(api) + " on the legacy default stream while a blocking stream "
               "captures (capture " + std::to_string(c->id) + "); the capture is invalidated");
      return cudaErrorStreamCaptureImplicit;
    }
  }
  return cudaSuccess;
}

// Runs `node` now, or appends it to the capture `stream` records into.
inline cudaError_t submit(cudaStream_t stream, std::shared_ptr<CUgraphNode_st> node,
                          const char* api) {
  CUstream_st* s = nullptr;
  if (cudaError_t e = resolve_stream(stream, &s, api)) return e;
  if (s->capture) {
    if (s->capture->invalidated) return cudaErrorStreamCaptureInvalidated;
    s->capture->graph->nodes.push_back(std::move(node));
    ++s->captured_ops;
    return cudaSuccess;
  }
  if (s == &device().legacy_stream) {
    if (cudaError_t e = check_legacy_use(api)) return e;
  }
  return node->run();
}

// ---- recorded operations -------------------------------------------------------------------

inline cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                              const char* api) {
  if (bytes == 0) return cudaSuccess;
  bool dst_dev = false, src_dev = false;
  switch (kind) {
    case cudaMemcpyHostToHost: break;
    case cudaMemcpyHostToDevice: dst_dev = true; break;
    case cudaMemcpyDeviceToHost: src_dev = true; break;
    case cudaMemcpyDeviceToDevice: dst_dev = src_dev = true; break;
    case cudaMemcpyDefault: {
      // The direction follows from the pointers (unified addressing); ranges still count.
      const auto* d = find_allocation(dst, 1);
      const auto* s = find_allocation(src, 1);
      dst_dev = d && d->second.kind == MemKind::kDevice;
      src_dev = s && s->second.kind == MemKind::kDevice;
      break;
    }
    default:
      diagnose(std::string(api) + ": kind " + std::to_string(kind) + " is not a cudaMemcpyKind");
      return cudaErrorInvalidMemcpyDirection;
  }
  const std::string d = range_problem(dst, bytes, dst_dev), s = range_problem(src, bytes, src_dev);
  if (d.empty() && s.empty()) return cudaSuccess;
  diagnose(std::string(api) + " of " + std::to_string(bytes) + " bytes" +
           (d.empty() ? "" : ": destination " + pointer_text(dst) + " " + d) +
           (s.empty() ? "" : ": source " + pointer_text(src) + " " + s));
  return cudaErrorInvalidValue;
}

struct CopyNode final : CUgraphNode_st {
  void* dst;
  const void* src;
  size_t bytes;
  cudaMemcpyKind kind;
  const char* api;
  CopyNode(void* d, const void* s, size_t n, cudaMemcpyKind k, const char* a)
      : dst(d), src(s), bytes(n), kind(k), api(a) {}
  cudaError_t run() override {
    // Checked again at replay: a graph may outlive the buffers it was captured with.
    if (cudaError_t e = check_copy(dst, src, bytes, kind, api)) return e;
    if (bytes) std::memcpy(dst, src, bytes);
    return cudaSuccess;
  }
  std::shared_ptr<CUgraphNode_st> clone() const override { return std::make_shared<CopyNode>(*this); }
  bool update_from(const CUgraphNode_st& other) override {
    const auto* o = dynamic_cast<const CopyNode*>(&other);
    if (o) *this = *o;
    return o != nullptr;
  }
};

struct SetNode final : CUgraphNode_st {
  void* dst;
  int value;
  size_t bytes;
  const char* api;
  SetNode(void* d, int v, size_t n, const char* a) : dst(d), value(v), bytes(n), api(a) {}
  cudaError_t run() override {
    if (bytes == 0) return cudaSuccess;
    const std::string problem = range_problem(dst, bytes, true);
    if (!problem.empty()) {
      diagnose(std::string(api) + " of " + std::to_string(bytes) + " bytes: " +
               pointer_text(dst) + " " + problem);
      return cudaErrorInvalidValue;
    }
    std::memset(dst, value, bytes);
    return cudaSuccess;
  }
  std::shared_ptr<CUgraphNode_st> clone() const override { return std::make_shared<SetNode>(*this); }
  bool update_from(const CUgraphNode_st& other) override {
    const auto* o = dynamic_cast<const SetNode*>(&other);
    if (o) *this = *o;
    return o != nullptr;
  }
};

struct HostFnNode final : CUgraphNode_st {
  cudaHostFn_t fn;
  void* data;
  HostFnNode(cudaHostFn_t f, void* d) : fn(f), data(d) {}
  cudaError_t run() override {
    fn(data);
    return cudaSuccess;
  }
  std::shared_ptr<CUgraphNode_st> clone() const override { return std::make_shared<HostFnNode>(*this); }
  bool update_from(const CUgraphNode_st& other) override {
    const auto* o = dynamic_cast<const HostFnNode*>(&other);
    if (o) *this = *o;
    return o != nullptr;
  }
};

struct EventRecordNode final : CUgraphNode_st {
  CUevent_st* event;
  explicit EventRecordNode(CUevent_st* e) : event(e) {}
  cudaError_t run() override {
    if (!device().events.count(event)) {
      diagnose("graph replay: an event record node's event " + pointer_text(event) +
               " was destroyed after capture");
      return cudaErrorInvalidResourceHandle;
    }
    event->recorded = true;
    event->time_ms = now_ms();
    event->capture.reset();
    return cudaSuccess;
  }
  std::shared_ptr<CUgraphNode_st> clone() const override {
    return std::make_shared<EventRecordNode>(*this);
  }
  bool update_from(const CUgraphNode_st& other) override {
    const auto* o = dynamic_cast<const EventRecordNode*>(&other);
    if (o) *this = *o;
    return o != nullptr;
  }
};

// A graph launched into a capturing stream: its nodes become one node of the new graph.
struct ChildGraphNode final : CUgraphNode_st {
  std::vector<std::shared_ptr<CUgraphNode_st>> nodes;
  cudaError_t run() override {
    for (auto& n : nodes) {
      if (cudaError_t e = n->run()) return e;
    }
    return cudaSuccess;
  }
  std::shared_ptr<CUgraphNode_st> clone() const override {
    auto c = std::make_shared<ChildGraphNode>();
    for (auto& n : nodes) c->nodes.push_back(n->clone());
    return c;
  }
  bool update_from(const CUgraphNode_st&) override { return false; }
};

// ---- kernels -----------------------------------------------------------------------------

inline int max_dynamic_smem(const void* kernel) {
  auto& m = device().max_dynamic_smem;
  auto it = m.find(kernel);
  return it == m.end() ? static_cast<int>(kSharedPerBlock) : it->second;
}

inline std::string launch_text(const char* name, dim3 g, dim3 b, size_t smem) {
  return std::string(name) + "<<<(" + std::to_string(g.x) + "," + std::to_string(g.y) + "," +
         std::to_string(g.z) + "), (" + std::to_string(b.x) + "," + std::to_string(b.y) + "," +
         std::to_string(b.z) + "), " + std::to_string(smem) + ">>>";
}

// The checks CUDA makes before a launch runs; a failing launch does nothing.
inline cudaError_t validate_launch(const char* name, const void* kernel, dim3 grid, dim3 block,
                                   size_t smem) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  std::string problem;
  cudaError_t code = cudaErrorInvalidConfiguration;
  if (threads == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024) {
    problem = "block of " + std::to_string(threads) + " threads: at most 1024 (x, y <= 1024, "
              "z <= 64), none zero";
  } else if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
             grid.y > 65535 || grid.z > 65535) {
    problem = "grid outside CUDA's limits (x in [1, 2^31 - 1], y and z in [1, 65535])";
  } else if (smem > static_cast<size_t>(max_dynamic_smem(kernel))) {
    code = cudaErrorInvalidValue;  // the driver answers CUDA_ERROR_INVALID_VALUE here
    problem = std::to_string(smem) + " bytes of dynamic shared memory exceed the kernel's " +
              std::to_string(max_dynamic_smem(kernel)) +
              " (above 48 KiB needs cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))";
  }
  if (problem.empty()) return cudaSuccess;
  diagnose("launch of " + launch_text(name, grid, block, smem) + " refused: " + problem);
  return code;
}

#ifdef EMU_ASAN
// A sanitizer report knows the source line, not the CUDA thread: add it before exiting.
inline void report_kernel_position() {
  if (const KernelContext* k = tl_kernel) {
    std::fprintf(stderr,
                 "cuda_emu: the error above happened in kernel %s, block (%u,%u,%u), "
                 "thread (%u,%u,%u)\n",
                 k->name, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y,
                 threadIdx.z);
  }
}
#endif

// Runs a validated launch: block after block, each on the fiber scheduler.
inline cudaError_t run_grid(const char* name, const void* kernel, dim3 grid, dim3 block,
                            size_t smem, void (*body)(void*), void* ctx) {
  if (in_kernel()) {
    diagnose(std::string("kernel ") + name + " launched from device code: dynamic parallelism "
             "is not emulated");
    return cudaErrorNotSupported;
  }
#ifdef EMU_ASAN
  static const bool hooked = (__sanitizer_set_death_callback(&report_kernel_position), true);
  (void)hooked;
#endif
  KernelContext k;
  k.name = name;
  k.grid = grid;
  k.block = block;
  // Dynamic shared memory gets exactly the bytes asked for, so ASan sees an overrun.
  std::unique_ptr<unsigned char, void (*)(void*)> dynamic(
      static_cast<unsigned char*>(std::malloc(smem ? smem : 1)), std::free);
  k.dynamic_smem = smem ? dynamic.get() : nullptr;
  k.dynamic_bytes = smem;
  KernelContext* outer = tl_kernel;
  tl_kernel = &k;
  const dim3 outer_grid = gridDim, outer_block = blockDim;
  const uint3 outer_idx = blockIdx;
  gridDim = grid;
  blockDim = block;
  BlockScheduler& scheduler = BlockScheduler::for_this_thread();
  const unsigned threads = block.x * block.y * block.z;
  const unsigned long long blocks = 1ull * grid.x * grid.y * grid.z;
  const bool reverse = options().reverse;
  const size_t shared_limit = max_dynamic_smem(kernel) > static_cast<int>(kSharedPerBlock)
                                  ? kSharedPerBlockOptin
                                  : kSharedPerBlock;
  cudaError_t result = cudaSuccess;
  for (unsigned long long n = 0; n < blocks && result == cudaSuccess; ++n) {
    const unsigned long long b = reverse ? blocks - 1 - n : n;
    blockIdx = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                     static_cast<unsigned>(b / grid.x / grid.y)};
    k.fresh_shared.clear();
    k.static_bytes = 0;
    if (smem) std::memset(k.dynamic_smem, 0xFF, smem);
    result = scheduler.run_block(threads, body, ctx, reverse);
    std::string where = "block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) +
                        "," + std::to_string(blockIdx.z) + ") ";
    if (result != cudaSuccess) {
      diagnose("kernel " + launch_text(name, grid, block, smem) + " " + where +
               scheduler.fault_message());
    } else if (k.static_bytes > kSharedPerBlock || k.static_bytes + smem > shared_limit) {
      result = cudaErrorInvalidValue;
      diagnose("kernel " + launch_text(name, grid, block, smem) + ": " +
               std::to_string(k.static_bytes) + " bytes of static plus " + std::to_string(smem) +
               " of dynamic shared memory exceed the " + std::to_string(shared_limit) +
               " a block may have");
    }
  }
  gridDim = outer_grid;
  blockDim = outer_block;
  blockIdx = outer_idx;
  tl_kernel = outer;
  return result;
}

// A kernel pointer argument must point into memory the device can reach: a device
// allocation, pinned or registered host memory, or a symbol. A pageable host pointer (or a
// freed buffer) would fault on a GPU; here it would silently work, so it is refused.
inline cudaError_t check_pointer_arg(const char* name, size_t index, const void* p) {
  if (p == nullptr || find_allocation(p, 0)) return cudaSuccess;
  diagnose("kernel " + std::string(name) + ": argument " + std::to_string(index) + " (" +
           pointer_text(p) + ") points to memory the device cannot access (pageable host "
           "memory, or a freed buffer)");
  return cudaErrorIllegalAddress;
}

template <class... P>
struct KernelNode final : CUgraphNode_st {
  const char* name;
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  std::tuple<std::decay_t<P>...> args;  // copied at launch, as CUDA copies parameters

  template <class Tuple>
  KernelNode(const char* n, void (*k)(P...), dim3 g, dim3 b, size_t s, Tuple&& a)
      : name(n), kernel(k), grid(g), block(b), smem(s), args(std::forward<Tuple>(a)) {}

  cudaError_t run() override {
    if (cudaError_t e = check_pointers(std::index_sequence_for<P...>{})) return e;
    return run_grid(name, reinterpret_cast<const void*>(kernel), grid, block, smem, &invoke, this);
  }
  std::shared_ptr<CUgraphNode_st> clone() const override {
    return std::make_shared<KernelNode>(*this);
  }
  bool update_from(const CUgraphNode_st& other) override {
    const auto* o = dynamic_cast<const KernelNode*>(&other);
    if (!o || o->kernel != kernel) return false;
    *this = *o;
    return true;
  }

 private:
  static void invoke(void* self) {
    auto& n = *static_cast<KernelNode*>(self);
    std::apply(n.kernel, n.args);
  }
  template <size_t... I>
  cudaError_t check_pointers(std::index_sequence<I...>) const {
    cudaError_t e = cudaSuccess;
    auto one = [&](size_t index, const auto& value) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (std::is_pointer_v<T>) {
        if (e == cudaSuccess) e = check_pointer_arg(name, index, value);
      }
    };
    (one(I, std::get<I>(args)), ...);
    return e;
  }
};

// The launch configuration of kernel<<<grid, block, smem, stream>>>.
struct LaunchConfig {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr)
      : grid(g), block(b), smem(s), stream(st) {}
};

inline bool no_device() { return options().devices == 0; }

// kernel<<<config>>>(args...): validate, then run (or record, in a capturing stream). The
// source's launch statement ignores the result, as with a real launch: cudaGetLastError
// tells what happened. Execution is synchronous, so a fault inside the kernel is the
// launch's error as well.
template <class... P, class... A>
inline cudaError_t launch(const LaunchConfig& config, const char* name, void (*kernel)(P...),
                          A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A),
                "kernel launched with a different number of arguments than it declares "
                "(default arguments of kernels are not emulated)");
  std::lock_guard<std::recursive_mutex> lock(device().mutex);
  if (no_device()) return record(cudaErrorNoDevice);
  const void* id = reinterpret_cast<const void*>(kernel);
  if (cudaError_t e = validate_launch(name, id, config.grid, config.block, config.smem)) {
    return record(e);
  }
  auto node = std::make_shared<KernelNode<P...>>(
      name, kernel, config.grid, config.block, config.smem,
      std::tuple<std::decay_t<P>...>(std::forward<A>(args)...));
  return record(submit(config.stream, std::move(node), name));
}

// cudaLaunchKernel's void** arguments, unpacked by the kernel's parameter types.
template <class... P, size_t... I>
inline cudaError_t launch_from_pointers(void (*kernel)(P...), dim3 grid, dim3 block, void** args,
                                        size_t smem, cudaStream_t stream,
                                        std::index_sequence<I...>) {
  return launch(LaunchConfig(grid, block, smem, stream), "cudaLaunchKernel", kernel,
                *static_cast<std::decay_t<P>*>(args[I])...);
}

}  // namespace emu

// ==== the runtime API =========================================================================

#define EMU_API_BEGIN std::lock_guard<std::recursive_mutex> emu_api_lock(::emu::device().mutex)
#define EMU_REQUIRE_DEVICE \
  if (::emu::no_device()) return ::emu::record(cudaErrorNoDevice)

// ---- errors -------------------------------------------------------------------------------------

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::tl_last_error;
  emu::tl_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::tl_last_error; }

inline const char* cudaGetErrorName(cudaError_t error) {
#define EMU_ERROR_NAME(name, value) \
  case name: return #name;
  switch (error) {
    EMU_CUDA_ERRORS(EMU_ERROR_NAME)
    default: return "cudaErrorUnknown";
  }
#undef EMU_ERROR_NAME
}

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureMerge:
      return "operation would result in a merge of separate capture sequences";
    case cudaErrorStreamCaptureUnmatched: return "capture was not ended in the same stream as it began";
    case cudaErrorStreamCaptureUnjoined: return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation:
      return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent:
      return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    case cudaErrorGraphExecUpdateFailure:
      return "the graph update was not performed because it included changes which violated "
             "constraints specific to instantiated graph update";
    default: return cudaGetErrorName(error);
  }
}

// ---- device -----------------------------------------------------------------------------------

inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = emu::options().devices;
  if (emu::options().old_driver) return emu::record(cudaErrorInsufficientDriver);
  return emu::record(*count ? cudaSuccess : cudaErrorNoDevice);
}

inline cudaError_t cudaSetDevice(int device) {
  EMU_REQUIRE_DEVICE;
  return emu::record(device == 0 ? cudaSuccess : cudaErrorInvalidDevice);
}

inline cudaError_t cudaGetDevice(int* device) {
  EMU_REQUIRE_DEVICE;
  *device = 0;
  return cudaSuccess;
}

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  EMU_REQUIRE_DEVICE;
  if (device != 0) return emu::record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "fastnn CUDA emulator");
  prop->totalGlobalMem = emu::options().memory_bytes;
  prop->sharedMemPerBlock = emu::kSharedPerBlock;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->texturePitchAlignment = 32;
  prop->multiProcessorCount = 132;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->asyncEngineCount = 3;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 6144;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->persistingL2CacheMaxSize = 78643200;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->streamPrioritiesSupported = 1;
  prop->globalL1CacheSupported = 1;
  prop->localL1CacheSupported = 1;
  prop->sharedMemPerMultiprocessor = emu::kSharedPerSM;
  prop->regsPerMultiprocessor = 65536;
  prop->managedMemory = 1;
  prop->computePreemptionSupported = 1;
  prop->cooperativeLaunch = 1;
  prop->sharedMemPerBlockOptin = emu::kSharedPerBlockOptin;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->reservedSharedMemPerBlock = 1024;
  prop->hostRegisterSupported = 1;
  prop->memoryPoolsSupported = 1;
  prop->clusterLaunch = 1;
  return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrTotalConstantMemory: *value = static_cast<int>(p.totalConstMem); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrClockRate: *value = 1980000; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrCanMapHostMemory: *value = 1; break;
    case cudaDevAttrConcurrentKernels: *value = 1; break;
    case cudaDevAttrPciBusId: *value = 0; break;
    case cudaDevAttrMemoryClockRate: *value = 2619000; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrAsyncEngineCount: *value = p.asyncEngineCount; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *value = static_cast<int>(p.sharedMemPerMultiprocessor);
      break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = p.regsPerMultiprocessor; break;
    case cudaDevAttrCooperativeLaunch: *value = 1; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(p.sharedMemPerBlockOptin);
      break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = p.maxBlocksPerMultiProcessor; break;
    case cudaDevAttrReservedSharedMemoryPerBlock:
      *value = static_cast<int>(p.reservedSharedMemPerBlock);
      break;
    case cudaDevAttrMemoryPoolsSupported: *value = 1; break;
    default: return emu::record(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

inline cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = CUDART_VERSION;
  return cudaSuccess;
}

inline cudaError_t cudaDriverGetVersion(int* version) {
  *version = emu::no_device() ? 0 : CUDART_VERSION;
  return cudaSuccess;
}

inline cudaError_t cudaDeviceSynchronize() {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  // Synchronising the device while any stream captures is invalid, whatever the mode.
  auto& captures = emu::device().captures;
  if (!captures.empty()) {
    for (auto& c : captures) c->invalidated = true;
    emu::diagnose("cudaDeviceSynchronize during stream capture; the capture is invalidated");
    return emu::record(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

inline cudaError_t cudaDeviceReset() {
  EMU_API_BEGIN;
  emu::Device& d = emu::device();
  for (auto& [address, block] : d.blocks) {
    if (block.kind == emu::MemKind::kDevice || block.kind == emu::MemKind::kPinned) {
      std::free(reinterpret_cast<void*>(address));
    }
  }
  d.blocks.clear();
  d.device_bytes = 0;
  d.max_dynamic_smem.clear();
  return cudaSuccess;
}

inline cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
  if (least) *least = 0;
  if (greatest) *greatest = -5;
  return cudaSuccess;
}

// ---- kernels' attributes --------------------------------------------------------------------

inline cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > emu::kSharedPerBlockOptin) {
      emu::diagnose("cudaFuncSetAttribute: " + std::to_string(value) +
                    " bytes of dynamic shared memory exceed the device's opt-in maximum of " +
                    std::to_string(emu::kSharedPerBlockOptin));
      return emu::record(cudaErrorInvalidValue);
    }
    emu::device().max_dynamic_smem[func] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) {
    return emu::record(value >= -1 && value <= 100 ? cudaSuccess : cudaErrorInvalidValue);
  }
  return emu::record(cudaErrorInvalidValue);
}
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->numRegs = 32;
  attr->ptxVersion = attr->binaryVersion = 90;
  attr->maxDynamicSharedSizeBytes = emu::max_dynamic_smem(func);
  attr->preferredShmemCarveout = -1;
  return cudaSuccess;
}
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* func) {
  return cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(func));
}

template <class T>
inline cudaError_t cudaFuncSetCacheConfig(T*, cudaFuncCache) {
  return cudaSuccess;
}

// Limited by threads, blocks and shared memory per SM; registers are not modelled.
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*,
                                                                 int block_size,
                                                                 size_t dynamic_smem) {
  EMU_REQUIRE_DEVICE;
  if (block_size <= 0 || block_size > 1024) {
    *blocks = 0;
    return cudaSuccess;
  }
  const int warps = (block_size + 31) / 32;
  int n = std::min(32, 64 / warps);
  const size_t per_block = dynamic_smem + 1024;  // the driver reserves 1 KiB per block
  n = std::min<int>(n, static_cast<int>(emu::kSharedPerSM / per_block));
  *blocks = n;
  return cudaSuccess;
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, T* func,
                                                                 int block_size,
                                                                 size_t dynamic_smem) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      blocks, reinterpret_cast<const void*>(func), block_size, dynamic_smem);
}

template <class... P>
inline cudaError_t cudaLaunchKernel(void (*func)(P...), dim3 grid, dim3 block, void** args,
                                    size_t smem = 0, cudaStream_t stream = nullptr) {
  return emu::launch_from_pointers(func, grid, block, args, smem, stream,
                                   std::index_sequence_for<P...>{});
}

// ---- memory -------------------------------------------------------------------------------------

namespace emu {

// Device (and pinned) memory: malloc'd, so ASan guards its ends; filled with 0xFF bytes, a
// NaN in every float and double, so a kernel that reads what nothing wrote yields NaN.
inline cudaError_t allocate(void** ptr, size_t bytes, MemKind kind, const char* api) {
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  Device& d = device();
  if (kind == MemKind::kDevice && bytes > options().memory_bytes - d.device_bytes) {
    return cudaErrorMemoryAllocation;
  }
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0) {
    diagnose(std::string(api) + ": the host could not provide " + std::to_string(bytes) + " bytes");
    return cudaErrorMemoryAllocation;
  }
  std::memset(p, 0xFF, bytes);
  d.blocks[reinterpret_cast<uintptr_t>(p)] = Allocation{bytes, kind};
  if (kind == MemKind::kDevice) d.device_bytes += bytes;
  *ptr = p;
  return cudaSuccess;
}

inline cudaError_t release(void* ptr, MemKind kind, const char* api) {
  if (ptr == nullptr) return cudaSuccess;
  Device& d = device();
  auto it = d.blocks.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == d.blocks.end() || it->second.kind != kind) {
    diagnose(std::string(api) + "(" + pointer_text(ptr) + "): not a pointer that " +
             (kind == MemKind::kDevice ? "cudaMalloc" : "cudaMallocHost/cudaHostAlloc") +
             " returned, or freed already");
    return cudaErrorInvalidValue;
  }
  if (kind == MemKind::kDevice) d.device_bytes -= it->second.bytes;
  d.blocks.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

}  // namespace emu

inline cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_unsafe_call("cudaMalloc")) return emu::record(e);
  return emu::record(emu::allocate(ptr, bytes, emu::MemKind::kDevice, "cudaMalloc"));
}
template <class T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}

inline cudaError_t cudaFree(void* ptr) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (ptr) {
    if (cudaError_t e = emu::check_unsafe_call("cudaFree")) return emu::record(e);
  }
  return emu::record(emu::release(ptr, emu::MemKind::kDevice, "cudaFree"));
}

inline cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_unsafe_call("cudaMallocHost")) return emu::record(e);
  return emu::record(emu::allocate(ptr, bytes, emu::MemKind::kPinned, "cudaMallocHost"));
}
template <class T>
inline cudaError_t cudaMallocHost(T** ptr, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(ptr), bytes);
}

inline cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags) {
  if (flags & ~0x7u) return emu::record(cudaErrorInvalidValue);
  return cudaMallocHost(ptr, bytes);
}
template <class T>
inline cudaError_t cudaHostAlloc(T** ptr, size_t bytes, unsigned int flags) {
  return cudaHostAlloc(reinterpret_cast<void**>(ptr), bytes, flags);
}

inline cudaError_t cudaFreeHost(void* ptr) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (ptr) {
    if (cudaError_t e = emu::check_unsafe_call("cudaFreeHost")) return emu::record(e);
  }
  return emu::record(emu::release(ptr, emu::MemKind::kPinned, "cudaFreeHost"));
}

inline cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned int) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (!ptr || bytes == 0 || emu::find_allocation(ptr, 1)) {
    return emu::record(ptr && bytes ? cudaErrorHostMemoryAlreadyRegistered : cudaErrorInvalidValue);
  }
  emu::device().blocks[reinterpret_cast<uintptr_t>(ptr)] =
      emu::Allocation{bytes, emu::MemKind::kRegistered};
  return cudaSuccess;
}

inline cudaError_t cudaHostUnregister(void* ptr) {
  EMU_API_BEGIN;
  auto& blocks = emu::device().blocks;
  auto it = blocks.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == blocks.end() || it->second.kind != emu::MemKind::kRegistered) {
    return emu::record(cudaErrorHostMemoryNotRegistered);
  }
  blocks.erase(it);
  return cudaSuccess;
}

inline cudaError_t cudaHostGetDevicePointer(void** device_ptr, void* host_ptr, unsigned int) {
  EMU_API_BEGIN;
  const auto* a = emu::find_allocation(host_ptr, 1);
  if (!a || a->second.kind == emu::MemKind::kDevice) return emu::record(cudaErrorInvalidValue);
  *device_ptr = host_ptr;
  return cudaSuccess;
}

inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  *total_bytes = emu::options().memory_bytes;
  *free_bytes = *total_bytes - emu::device().device_bytes;
  return cudaSuccess;
}

inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  EMU_API_BEGIN;
  std::memset(attr, 0, sizeof *attr);
  const auto* a = emu::find_allocation(ptr, 1);
  void* p = const_cast<void*>(ptr);
  if (a && a->second.kind == emu::MemKind::kDevice) {
    attr->type = cudaMemoryTypeDevice;
    attr->devicePointer = p;
  } else if (a) {
    attr->type = cudaMemoryTypeHost;
    attr->devicePointer = attr->hostPointer = p;
  } else {
    attr->type = cudaMemoryTypeUnregistered;
    attr->device = -2;
  }
  return cudaSuccess;
}

inline cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaMallocAsync")) return emu::record(e);
  if (s->capture) {
    emu::diagnose("cudaMallocAsync in a capturing stream: graph memory nodes are not emulated");
    return emu::record(cudaErrorNotSupported);
  }
  return emu::record(emu::allocate(ptr, bytes, emu::MemKind::kDevice, "cudaMallocAsync"));
}
template <class T>
inline cudaError_t cudaMallocAsync(T** ptr, size_t bytes, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void**>(ptr), bytes, stream);
}

inline cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaFreeAsync")) return emu::record(e);
  if (s->capture) {
    emu::diagnose("cudaFreeAsync in a capturing stream: graph memory nodes are not emulated");
    return emu::record(cudaErrorNotSupported);
  }
  return emu::record(emu::release(ptr, emu::MemKind::kDevice, "cudaFreeAsync"));
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_unsafe_call("cudaMemcpy")) return emu::record(e);
  if (cudaError_t e = emu::check_legacy_use("cudaMemcpy")) return emu::record(e);
  return emu::record(emu::CopyNode(dst, src, bytes, kind, "cudaMemcpy").run());
}

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_copy(dst, src, bytes, kind, "cudaMemcpyAsync")) {
    return emu::record(e);
  }
  return emu::record(emu::submit(
      stream, std::make_shared<emu::CopyNode>(dst, src, bytes, kind, "cudaMemcpyAsync"),
      "cudaMemcpyAsync"));
}

// 2-D copies as `height` row copies, each checked.
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                                     size_t width, size_t height, cudaMemcpyKind kind,
                                     cudaStream_t stream = nullptr) {
  EMU_API_BEGIN;
  if (width > dpitch || width > spitch) return emu::record(cudaErrorInvalidPitchValue);
  for (size_t r = 0; r < height; ++r) {
    if (cudaError_t e = cudaMemcpyAsync(static_cast<char*>(dst) + r * dpitch,
                                        static_cast<const char*>(src) + r * spitch, width, kind,
                                        stream)) {
      return e;
    }
  }
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch,
                                size_t width, size_t height, cudaMemcpyKind kind) {
  EMU_API_BEGIN;
  if (cudaError_t e = emu::check_unsafe_call("cudaMemcpy2D")) return emu::record(e);
  if (cudaError_t e = emu::check_legacy_use("cudaMemcpy2D")) return emu::record(e);
  return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
}

inline cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_unsafe_call("cudaMemset")) return emu::record(e);
  if (cudaError_t e = emu::check_legacy_use("cudaMemset")) return emu::record(e);
  return emu::record(emu::SetNode(dst, value, bytes, "cudaMemset").run());
}

inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes,
                                   cudaStream_t stream = nullptr) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  const std::string problem = bytes ? emu::range_problem(dst, bytes, true) : "";
  if (!problem.empty()) {
    emu::diagnose("cudaMemsetAsync of " + std::to_string(bytes) + " bytes: " +
                  emu::pointer_text(dst) + " " + problem);
    return emu::record(cudaErrorInvalidValue);
  }
  return emu::record(emu::submit(
      stream, std::make_shared<emu::SetNode>(dst, value, bytes, "cudaMemsetAsync"),
      "cudaMemsetAsync"));
}

// __constant__ and __device__ variables are host globals here; their first use through the
// symbol API registers them, so kernels may take pointers into them.
namespace emu {
inline void register_symbol(const void* address, size_t bytes) {
  if (!find_allocation(address, 1)) {
    device().blocks[reinterpret_cast<uintptr_t>(address)] = Allocation{bytes, MemKind::kSymbol};
  }
}
}  // namespace emu

template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T& symbol, const void* src, size_t bytes,
                                      size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  EMU_API_BEGIN;
  if (offset + bytes > sizeof(T)) return emu::record(cudaErrorInvalidValue);
  emu::register_symbol(&symbol, sizeof(T));
  std::memcpy(reinterpret_cast<char*>(const_cast<T*>(&symbol)) + offset, src, bytes);
  (void)kind;
  return cudaSuccess;
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t bytes,
                                        size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
  EMU_API_BEGIN;
  if (offset + bytes > sizeof(T)) return emu::record(cudaErrorInvalidValue);
  emu::register_symbol(&symbol, sizeof(T));
  std::memcpy(dst, reinterpret_cast<const char*>(&symbol) + offset, bytes);
  (void)kind;
  return cudaSuccess;
}
template <class T>
inline cudaError_t cudaMemcpyToSymbolAsync(const T& symbol, const void* src, size_t bytes,
                                           size_t offset, cudaMemcpyKind kind,
                                           cudaStream_t stream = nullptr) {
  EMU_API_BEGIN;
  if (offset + bytes > sizeof(T)) return emu::record(cudaErrorInvalidValue);
  emu::register_symbol(&symbol, sizeof(T));
  void* dst = reinterpret_cast<char*>(const_cast<T*>(&symbol)) + offset;
  (void)kind;
  auto node = std::make_shared<emu::CopyNode>(dst, src, bytes, cudaMemcpyDefault,
                                              "cudaMemcpyToSymbolAsync");
  return emu::record(emu::submit(stream, std::move(node), "cudaMemcpyToSymbolAsync"));
}
template <class T>
inline cudaError_t cudaGetSymbolAddress(void** address, const T& symbol) {
  EMU_API_BEGIN;
  emu::register_symbol(&symbol, sizeof(T));
  *address = const_cast<T*>(&symbol);
  return cudaSuccess;
}
template <class T>
inline cudaError_t cudaGetSymbolSize(size_t* bytes, const T&) {
  *bytes = sizeof(T);
  return cudaSuccess;
}

// ---- streams ----------------------------------------------------------------------------------

inline cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int flags,
                                                int priority) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (flags & ~1u) return emu::record(cudaErrorInvalidValue);
  auto* s = new CUstream_st();
  s->flags = flags;
  s->priority = std::max(-5, std::min(0, priority));
  emu::device().streams.insert(s);
  *stream = s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  return cudaStreamCreateWithPriority(stream, flags, 0);
}
inline cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithPriority(stream, cudaStreamDefault, 0);
}

inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  EMU_API_BEGIN;
  emu::Device& d = emu::device();
  if (!d.streams.count(stream)) {
    emu::diagnose("cudaStreamDestroy: stream " + emu::pointer_text(stream) +
                  " was destroyed already or never created");
    return emu::record(cudaErrorInvalidResourceHandle);
  }
  if (stream->capture) {
    auto c = stream->capture;
    c->invalidated = true;
    c->members.erase(std::remove(c->members.begin(), c->members.end(), stream), c->members.end());
    emu::diagnose("cudaStreamDestroy of a capturing stream; its capture is invalidated");
  }
  d.streams.erase(stream);
  delete stream;
  return cudaSuccess;
}

inline cudaError_t cudaStreamGetFlags(cudaStream_t stream, unsigned int* flags) {
  EMU_API_BEGIN;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamGetFlags")) return emu::record(e);
  *flags = s->flags;
  return cudaSuccess;
}

inline cudaError_t cudaStreamGetPriority(cudaStream_t stream, int* priority) {
  EMU_API_BEGIN;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamGetPriority")) return emu::record(e);
  *priority = s->priority;
  return cudaSuccess;
}

inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamSynchronize")) return emu::record(e);
  if (s->capture) {
    s->capture->invalidated = true;
    emu::diagnose("cudaStreamSynchronize on a capturing stream; the capture is invalidated");
    return emu::record(cudaErrorStreamCaptureUnsupported);
  }
  if (cudaError_t e = emu::check_unsafe_call("cudaStreamSynchronize")) return emu::record(e);
  if (s == &emu::device().legacy_stream) {
    if (cudaError_t e = emu::check_legacy_use("cudaStreamSynchronize")) return emu::record(e);
  }
  return cudaSuccess;
}

inline cudaError_t cudaStreamQuery(cudaStream_t stream) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamQuery")) return emu::record(e);
  if (s->capture) {
    s->capture->invalidated = true;
    emu::diagnose("cudaStreamQuery on a capturing stream; the capture is invalidated");
    return emu::record(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;  // all work is complete: it ran when it was issued
}

inline cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* data) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  return emu::record(emu::submit(stream, std::make_shared<emu::HostFnNode>(fn, data),
                                 "cudaLaunchHostFunc"));
}

// ---- stream capture ---------------------------------------------------------------------------

inline cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (emu::is_legacy(stream)) {
    emu::diagnose("cudaStreamBeginCapture on the legacy default stream is not permitted");
    return emu::record(cudaErrorStreamCaptureUnsupported);
  }
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamBeginCapture")) return emu::record(e);
  if (s->capture) {
    emu::diagnose("cudaStreamBeginCapture on a stream that is capturing already");
    return emu::record(cudaErrorIllegalState);
  }
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) {
    return emu::record(cudaErrorInvalidValue);
  }
  emu::Device& d = emu::device();
  auto c = std::make_shared<emu::Capture>();
  c->graph = new CUgraph_st();
  c->mode = mode;
  c->owner = std::this_thread::get_id();
  c->origin = s;
  c->id = d.next_capture_id++;
  c->members.push_back(s);
  s->capture = c;
  s->captured_ops = s->joined_ops = 0;
  d.captures.push_back(c);
  return cudaSuccess;
}

inline cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  *graph = nullptr;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamEndCapture")) return emu::record(e);
  if (!s->capture) {
    emu::diagnose("cudaStreamEndCapture on a stream that is not capturing");
    return emu::record(cudaErrorIllegalState);
  }
  std::shared_ptr<emu::Capture> c = s->capture;
  if (c->origin != s) {
    emu::diagnose("cudaStreamEndCapture on a stream forked into the capture, not the one "
                  "that began it");
    return emu::record(cudaErrorStreamCaptureUnmatched);
  }
  if (c->mode != cudaStreamCaptureModeRelaxed && c->owner != std::this_thread::get_id()) {
    return emu::record(cudaErrorStreamCaptureWrongThread);
  }
  cudaError_t result = c->invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  for (CUstream_st* m : c->members) {
    if (m != s && m->captured_ops > m->joined_ops && result == cudaSuccess) {
      emu::diagnose("cudaStreamEndCapture: a stream forked into the capture has work the "
                    "capturing stream never waited for (record an event after it and "
                    "cudaStreamWaitEvent on it before ending the capture)");
      result = cudaErrorStreamCaptureUnjoined;
    }
  }
  emu::end_capture_membership(*c);
  if (result != cudaSuccess) {
    delete c->graph;
    return emu::record(result);
  }
  emu::device().graphs.insert(c->graph);
  *graph = c->graph;
  return cudaSuccess;
}

inline cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamIsCapturing")) return emu::record(e);
  if (s == &emu::device().legacy_stream) {
    if (cudaError_t e = emu::check_legacy_use("cudaStreamIsCapturing")) return emu::record(e);
  }
  *status = !s->capture ? cudaStreamCaptureStatusNone
            : s->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                      : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

inline cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream,
                                            cudaStreamCaptureStatus* status,
                                            unsigned long long* id = nullptr,
                                            cudaGraph_t* graph = nullptr,
                                            const cudaGraphNode_t** dependencies = nullptr,
                                            const cudaGraphEdgeData** edge_data = nullptr,
                                            size_t* dependency_count = nullptr) {
  if (cudaError_t e = cudaStreamIsCapturing(stream, status)) return e;
  CUstream_st* s = nullptr;
  emu::resolve_stream(stream, &s, "cudaStreamGetCaptureInfo");
  if (id) *id = s->capture ? s->capture->id : 0;
  if (graph) *graph = s->capture ? s->capture->graph : nullptr;
  if (dependencies) *dependencies = nullptr;
  if (edge_data) *edge_data = nullptr;
  if (dependency_count) *dependency_count = 0;
  return cudaSuccess;
}

inline cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  std::swap(*mode, emu::tl_capture_mode);
  return cudaSuccess;
}

// ---- events -----------------------------------------------------------------------------------

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (flags & ~0x7u) return emu::record(cudaErrorInvalidValue);
  auto* e = new CUevent_st();
  e->flags = flags;
  emu::device().events.insert(e);
  *event = e;
  return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
inline cudaError_t cudaEventCreate(cudaEvent_t* event, unsigned int flags) {
  return cudaEventCreateWithFlags(event, flags);
}

namespace emu {
inline cudaError_t check_event(cudaEvent_t event, const char* api) {
  if (device().events.count(event)) return cudaSuccess;
  diagnose(std::string(api) + ": event " + pointer_text(event) + " was destroyed or never created");
  return cudaErrorInvalidResourceHandle;
}
}  // namespace emu

inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
  EMU_API_BEGIN;
  if (cudaError_t e = emu::check_event(event, "cudaEventDestroy")) return emu::record(e);
  emu::device().events.erase(event);
  delete event;
  return cudaSuccess;
}

inline cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream = nullptr,
                                            unsigned int = 0) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_event(event, "cudaEventRecord")) return emu::record(e);
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaEventRecord")) return emu::record(e);
  if (s->capture) {
    if (s->capture->invalidated) return emu::record(cudaErrorStreamCaptureInvalidated);
    s->capture->graph->nodes.push_back(std::make_shared<emu::EventRecordNode>(event));
    event->capture = s->capture;
    event->source = s;
    event->snapshot = s->captured_ops;
    return cudaSuccess;
  }
  if (s == &emu::device().legacy_stream) {
    if (cudaError_t e = emu::check_legacy_use("cudaEventRecord")) return emu::record(e);
  }
  return emu::record(emu::EventRecordNode(event).run());
}
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr) {
  return cudaEventRecordWithFlags(event, stream, 0);
}

inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                       unsigned int flags = 0) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_event(event, "cudaStreamWaitEvent")) return emu::record(e);
  CUstream_st* s = nullptr;
  if (cudaError_t e = emu::resolve_stream(stream, &s, "cudaStreamWaitEvent")) return emu::record(e);
  std::shared_ptr<emu::Capture> c = event->capture;
  const bool live = c && !c->members.empty();
  if (live) {
    // Waiting on an event recorded in a capture forks the waiting stream into it (fork),
    // or makes the recording stream's work a dependency of the waiting one (join).
    if (!s->capture) {
      if (s == &emu::device().legacy_stream) {
        return emu::record(emu::check_legacy_use("cudaStreamWaitEvent"));
      }
      s->capture = c;
      s->captured_ops = s->joined_ops = 0;
      c->members.push_back(s);
    } else if (s->capture != c) {
      emu::diagnose("cudaStreamWaitEvent would merge two separate stream captures");
      return emu::record(cudaErrorStreamCaptureMerge);
    }
    if (event->source && event->source != s) {
      event->source->joined_ops = std::max(event->source->joined_ops, event->snapshot);
    }
    return cudaSuccess;
  }
  if (s->capture && event->recorded && !(flags & 0x1 /* cudaEventWaitExternal */)) {
    s->capture->invalidated = true;
    emu::diagnose("cudaStreamWaitEvent in a capturing stream on an event recorded outside the "
                  "capture: a dependency across the capture boundary; the capture is invalidated");
    return emu::record(cudaErrorStreamCaptureIsolation);
  }
  return cudaSuccess;  // recorded work has already run
}

namespace emu {
inline cudaError_t check_event_not_captured(cudaEvent_t event, const char* api) {
  if (event->capture && !event->capture->members.empty()) {
    diagnose(std::string(api) + " on an event last recorded in a capturing stream");
    return cudaErrorCapturedEvent;
  }
  return cudaSuccess;
}
}  // namespace emu

inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_event(event, "cudaEventSynchronize")) return emu::record(e);
  if (cudaError_t e = emu::check_event_not_captured(event, "cudaEventSynchronize")) {
    return emu::record(e);
  }
  return cudaSuccess;
}

inline cudaError_t cudaEventQuery(cudaEvent_t event) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_event(event, "cudaEventQuery")) return emu::record(e);
  if (cudaError_t e = emu::check_event_not_captured(event, "cudaEventQuery")) return emu::record(e);
  return cudaSuccess;
}

inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (cudaError_t e = emu::check_event(start, "cudaEventElapsedTime")) return emu::record(e);
  if (cudaError_t e = emu::check_event(end, "cudaEventElapsedTime")) return emu::record(e);
  if ((start->flags | end->flags) & cudaEventDisableTiming) {
    emu::diagnose("cudaEventElapsedTime on an event created with cudaEventDisableTiming");
    return emu::record(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded) {
    emu::diagnose("cudaEventElapsedTime on an event that was never recorded");
    return emu::record(cudaErrorInvalidResourceHandle);
  }
  *ms = static_cast<float>(end->time_ms - start->time_ms);
  return cudaSuccess;
}

// ---- graphs -----------------------------------------------------------------------------------

inline cudaError_t cudaGraphCreate(cudaGraph_t* graph, unsigned int flags) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (flags != 0) return emu::record(cudaErrorInvalidValue);
  *graph = new CUgraph_st();
  emu::device().graphs.insert(*graph);
  return cudaSuccess;
}

inline cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  EMU_API_BEGIN;
  if (!emu::device().graphs.erase(graph)) {
    emu::diagnose("cudaGraphDestroy: graph " + emu::pointer_text(graph) +
                  " was destroyed already or never created");
    return emu::record(cudaErrorInvalidValue);
  }
  delete graph;
  return cudaSuccess;
}

inline cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* count) {
  EMU_API_BEGIN;
  if (!emu::device().graphs.count(graph)) return emu::record(cudaErrorInvalidValue);
  const size_t n = graph->nodes.size();
  if (nodes) {
    for (size_t i = 0; i < *count; ++i) nodes[i] = i < n ? graph->nodes[i].get() : nullptr;
  }
  *count = n;
  return cudaSuccess;
}

// The executable graph holds its own copies of the nodes (later updates touch only it).
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                        unsigned long long flags = 0) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  (void)flags;
  if (!emu::device().graphs.count(graph)) {
    emu::diagnose("cudaGraphInstantiate: graph " + emu::pointer_text(graph) +
                  " was destroyed or never created");
    return emu::record(cudaErrorInvalidValue);
  }
  auto* e = new CUgraphExec_st();
  for (auto& n : graph->nodes) e->nodes.push_back(n->clone());
  emu::device().execs.insert(e);
  *exec = e;
  return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph,
                                                 unsigned long long flags = 0) {
  return cudaGraphInstantiate(exec, graph, flags);
}

inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  EMU_API_BEGIN;
  if (!emu::device().execs.erase(exec)) {
    emu::diagnose("cudaGraphExecDestroy: executable graph " + emu::pointer_text(exec) +
                  " was destroyed already or never created");
    return emu::record(cudaErrorInvalidValue);
  }
  delete exec;
  return cudaSuccess;
}

inline cudaError_t cudaGraphUpload(cudaGraphExec_t exec, cudaStream_t) {
  EMU_API_BEGIN;
  return emu::record(emu::device().execs.count(exec) ? cudaSuccess : cudaErrorInvalidValue);
}

// Replays the recorded operations in capture order, with the arguments they were captured
// with. A fault in a replayed kernel is returned here (a GPU reports it asynchronously).
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  EMU_API_BEGIN;
  EMU_REQUIRE_DEVICE;
  if (!emu::device().execs.count(exec)) {
    emu::diagnose("cudaGraphLaunch: executable graph " + emu::pointer_text(exec) +
                  " was destroyed or never instantiated");
    return emu::record(cudaErrorInvalidValue);
  }
  static long launches = 0;  // fault injection: a launch that fails without running
  if (++launches == emu::options().fail_graph_launch) {
    return emu::record(cudaErrorLaunchOutOfResources);
  }
  auto child = std::make_shared<emu::ChildGraphNode>();
  child->nodes = exec->nodes;
  return emu::record(emu::submit(stream, std::move(child), "cudaGraphLaunch"));
}

// Succeeds when the graph has the executable's shape: as many nodes, each of the same kind
// (and kernel); the executable then takes the graph's parameters.
inline cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph,
                                       cudaGraphExecUpdateResultInfo* info) {
  EMU_API_BEGIN;
  if (info) *info = cudaGraphExecUpdateResultInfo{cudaGraphExecUpdateSuccess, nullptr, nullptr};
  if (!emu::device().execs.count(exec) || !emu::device().graphs.count(graph)) {
    return emu::record(cudaErrorInvalidValue);
  }
  if (exec->nodes.size() != graph->nodes.size()) {
    if (info) info->result = cudaGraphExecUpdateErrorTopologyChanged;
    return emu::record(cudaErrorGraphExecUpdateFailure);
  }
  std::vector<std::shared_ptr<CUgraphNode_st>> updated;
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    auto copy = exec->nodes[i]->clone();
    if (!copy->update_from(*graph->nodes[i])) {
      if (info) {
        info->result = cudaGraphExecUpdateErrorNodeTypeChanged;
        info->errorNode = graph->nodes[i].get();
      }
      return emu::record(cudaErrorGraphExecUpdateFailure);
    }
    updated.push_back(std::move(copy));
  }
  exec->nodes = std::move(updated);
  return cudaSuccess;
}

#undef EMU_REQUIRE_DEVICE
#undef EMU_API_BEGIN
