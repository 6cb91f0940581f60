// fiber.h — runs one thread block on the host: each CUDA thread is a fiber (its own stack,
// switched by a dozen instructions of x86-64 assembly, or ucontext elsewhere), resumed in a
// fixed order, so a run is deterministic. __syncthreads and the warp intrinsics are the only
// switch points: a fiber runs until it must wait for others, the last arrival completes it.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "types.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(FASTNN_EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

// CUDA's built-in variables. The scheduler sets them before it resumes a fiber, so each
// fiber sees its own; a value read before a switch point is still right after it.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

#ifdef EMU_ASM_SWITCH
// emu_switch_context(save, load): push the callee-saved registers, store the stack pointer
// in *save, switch to the stack `load`, pop the registers saved there, and `ret` into that
// context. Defined in a COMDAT section so every translation unit may carry a copy; the
// compiler sees an opaque call, so it keeps no memory value in registers across it.
extern "C" void emu_switch_context(void** save, void* load);
__asm__(
    ".pushsection .text.emu_switch_context,\"axG\",@progbits,emu_switch_context,comdat\n"
    ".weak emu_switch_context\n"
    ".hidden emu_switch_context\n"
    ".type emu_switch_context,@function\n"
    "emu_switch_context:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size emu_switch_context, .-emu_switch_context\n"
    ".popsection\n");
#endif

namespace emu {

// What the launch is, for messages, and the block's shared memory: transform.py turns
// `__shared__ T x[...];` into a static plus shared_fresh(&x, sizeof x), which fills it with
// 0xFF bytes (NaN) the first time a block reaches it, as a GPU leaves it uninitialised.
struct KernelContext {
  const char* name = "";
  dim3 grid, block;
  unsigned char* dynamic_smem = nullptr;
  size_t dynamic_bytes = 0;
  std::vector<std::pair<void*, size_t>> fresh_shared;  // statics met in the current block
  size_t static_bytes = 0;                              // their total, for the size check
};
inline thread_local KernelContext* tl_kernel = nullptr;

inline void shared_fresh(void* p, size_t bytes) {
  KernelContext* k = tl_kernel;
  if (!k) return;
  for (const auto& seen : k->fresh_shared) {
    if (seen.first == p) return;
  }
  std::memset(p, 0xFF, bytes);
  k->fresh_shared.emplace_back(p, bytes);
  k->static_bytes += bytes;
}

enum class ThreadState : unsigned char { kReady, kRunning, kBarrier, kWarp, kDone };

// The warp-synchronous operations: each lane deposits its operands, and the last lane of
// the mask to arrive computes every lane's result.
enum class WarpOp : unsigned char {
  kSync, kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kUni,
  kReduceAdd, kReduceMinU, kReduceMaxU, kReduceMinS, kReduceMaxS, kReduceAnd, kReduceOr,
  kReduceXor, kMatchAny, kMatchAll
};

inline const char* warp_op_name(WarpOp op) {
  static const char* const names[] = {
      "__syncwarp",         "__shfl_sync",        "__shfl_up_sync",     "__shfl_down_sync",
      "__shfl_xor_sync",    "__ballot_sync",      "__any_sync",         "__all_sync",
      "__uni_sync",         "__reduce_add_sync",  "__reduce_min_sync",  "__reduce_max_sync",
      "__reduce_min_sync",  "__reduce_max_sync",  "__reduce_and_sync",  "__reduce_or_sync",
      "__reduce_xor_sync",  "__match_any_sync",   "__match_all_sync"};
  return names[static_cast<int>(op)];
}

struct FiberThread {
#ifdef EMU_ASM_SWITCH
  void* sp = nullptr;  // saved stack pointer while switched out
#else
  ucontext_t context;
#endif
  char* stack = nullptr;  // usable stack, above a PROT_NONE guard page
  size_t stack_bytes = 0;
  void* fake_stack = nullptr;  // ASan's bookkeeping for this stack
  uint3 idx{};
  unsigned linear = 0;
  ThreadState state = ThreadState::kDone;
  // The pending warp operation and its result.
  WarpOp op = WarpOp::kSync;
  unsigned mask = 0;
  int arg = 0, width = 32;
  unsigned size = 0;
  alignas(16) unsigned char in[16];
  alignas(16) unsigned char out[16];
};

inline size_t fiber_stack_bytes() {
  static const size_t bytes = [] {
    const char* env = std::getenv("FASTNN_EMU_STACK_KB");
#ifdef EMU_ASAN
    size_t kb = 1024;  // instrumented frames are several times larger
#else
    size_t kb = 256;  // virtual: only the pages a kernel touches are ever committed
#endif
    if (env && std::atoi(env) > 0) kb = static_cast<size_t>(std::atoi(env));
    return kb * 1024;
  }();
  return bytes;
}

[[noreturn]] inline void emu_fatal(const char* what) {
  std::fprintf(stderr, "cuda_emu: fatal: %s\n", what);
  std::abort();
}

class BlockScheduler;
inline thread_local BlockScheduler* tl_scheduler = nullptr;  // the one running a block now

// Runs the threads of one block. One per host thread; it keeps its fibers' stacks.
class BlockScheduler {
 public:
  BlockScheduler() = default;
  BlockScheduler(const BlockScheduler&) = delete;
  BlockScheduler& operator=(const BlockScheduler&) = delete;
  ~BlockScheduler() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (FiberThread& t : threads_) {
      if (t.stack) munmap(t.stack - page, t.stack_bytes + page);
    }
  }

  static BlockScheduler& for_this_thread() {
    thread_local BlockScheduler scheduler;
    return scheduler;
  }

  // Runs body(ctx) as every thread of the block whose indices the caller has set in
  // blockIdx/blockDim/gridDim. Returns cudaSuccess, or the code of a fault, whose message
  // is in fault_message().
  cudaError_t run_block(unsigned count, void (*body)(void*), void* ctx, bool reverse) {
    if (threads_.size() < count) threads_.resize(count);
    body_ = body;
    body_ctx_ = ctx;
    alive_ = count;
    count_ = count;
    at_barrier_ = 0;
    fault_code_ = cudaSuccess;
    const dim3 b = blockDim;
    for (unsigned i = 0; i < count; ++i) {
      FiberThread& t = threads_[i];
      t.linear = i;
      t.idx = uint3{i % b.x, i / b.x % b.y, i / (b.x * b.y)};
      t.state = ThreadState::kReady;
      start_fiber(t);
    }
    BlockScheduler* outer = tl_scheduler;
    tl_scheduler = this;
    // Each pass resumes every ready thread once, in thread order (reversed on request, to
    // expose a missing barrier whose reads happened to follow the writes in order).
    while (alive_ > 0 && fault_code_ == cudaSuccess) {
      bool progressed = false;
      for (unsigned k = 0; k < count && fault_code_ == cudaSuccess; ++k) {
        FiberThread& t = threads_[reverse ? count - 1 - k : k];
        if (t.state != ThreadState::kReady) continue;
        resume(t);
        progressed = true;
      }
      if (!progressed && fault_code_ == cudaSuccess) report_deadlock();
    }
    tl_scheduler = outer;
    return fault_code_;
  }

  const std::string& fault_message() const { return fault_message_; }

  // ---- called from kernel code (inside a fiber) ----

  // __syncthreads and its counting variants (mode 0: plain, 1: count, 2: and, 3: or).
  int barrier(const char* file, int line, int mode, int predicate) {
    FiberThread& t = *current_;
    if (at_barrier_ == 0) {
      barrier_file_ = file;
      barrier_line_ = line;
      barrier_count_ = 0;
    } else if (line != barrier_line_ || std::strcmp(file, barrier_file_) != 0) {
      fault(cudaErrorLaunchFailure,
            "threads of one block reached different __syncthreads() calls (" +
                std::string(barrier_file_) + ":" + std::to_string(barrier_line_) + " and " +
                file + ":" + std::to_string(line) +
                "): a barrier in divergent code is undefined behaviour in CUDA");
    }
    barrier_count_ += predicate != 0;
    t.state = ThreadState::kBarrier;
    ++at_barrier_;
    if (at_barrier_ == alive_) {
      release_barrier();
    } else {
      yield();
    }
    switch (mode) {
      case 1: return barrier_result_;
      case 2: return barrier_result_ == barrier_arrived_;
      case 3: return barrier_result_ != 0;
      default: return 0;
    }
  }

  template <class T>
  T warp(WarpOp op, unsigned mask, T value, int arg, int width) {
    static_assert(sizeof(T) <= 16 && std::is_trivially_copyable_v<T>,
                  "warp intrinsics move plain values of up to 16 bytes");
    FiberThread& t = *current_;
    const unsigned lane = t.linear % 32;
    if (!(mask >> lane & 1u)) {
      fault(cudaErrorLaunchFailure, std::string(warp_op_name(op)) + " with mask " + hex(mask) +
                                        " called by lane " + std::to_string(lane) +
                                        ", which the mask leaves out (undefined in CUDA)");
    }
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
      fault(cudaErrorLaunchFailure, std::string(warp_op_name(op)) + " with width " +
                                        std::to_string(width) + ", not a power of 2 up to 32");
    }
    t.op = op;
    t.mask = mask;
    t.arg = arg;
    t.width = width;
    t.size = sizeof(T);
    std::memset(t.in, 0, sizeof t.in);
    std::memcpy(t.in, &value, sizeof(T));
    t.state = ThreadState::kWarp;
    if (!try_complete_warp(t.linear - lane, mask)) yield();
    T result;
    std::memcpy(&result, t.out, sizeof(T));
    return result;
  }

  // Lanes of this thread's warp that have not exited (what __activemask approximates).
  unsigned live_lanes() const {
    const unsigned base = current_->linear - current_->linear % 32;
    unsigned lanes = 0;
    for (unsigned l = 0; l < 32 && base + l < count_; ++l) {
      if (threads_[base + l].state != ThreadState::kDone) lanes |= 1u << l;
    }
    return lanes;
  }

  // Abandons the launch from kernel code: records the fault and never returns.
  [[noreturn]] void fault(cudaError_t code, const std::string& what) {
    if (fault_code_ == cudaSuccess) {
      fault_code_ = code;
      fault_message_ = "thread " + dims(current_->idx) + ": " + what;
    }
    current_->state = ThreadState::kDone;
    switch_to_scheduler(/*exiting=*/true);
    emu_fatal("a faulted fiber was resumed");
  }

 private:
  static std::string hex(unsigned v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
  }
  static std::string dims(uint3 v) {
    return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
  }

  // ---- fibers ----

  void start_fiber(FiberThread& t) {
    if (!t.stack) {
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      const size_t bytes = (fiber_stack_bytes() + page - 1) / page * page;
      void* region = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (region == MAP_FAILED) emu_fatal("cannot map a fiber stack");
      mprotect(region, page, PROT_NONE);  // an overflow faults instead of corrupting
      t.stack = static_cast<char*>(region) + page;
      t.stack_bytes = bytes;
    }
#ifdef EMU_ASAN
    // Frames still live at the fiber's last switch (it never returns from fiber_main, and
    // a fault abandons it mid-kernel) keep their poisoned redzones: clear them. Deeper
    // frames returned, which unpoisons them; a fresh mapping has a clean shadow.
#ifdef EMU_ASM_SWITCH
    if (t.sp) {
      char* live = static_cast<char*>(t.sp);
      __asan_unpoison_memory_region(live, static_cast<size_t>(t.stack + t.stack_bytes - live));
    }
#else
    __asan_unpoison_memory_region(t.stack, t.stack_bytes);
#endif
#endif
#ifdef EMU_ASM_SWITCH
    // The first switch pops six zero registers and `ret`s into fiber_main, with the stack
    // 8 bytes off 16-byte alignment as after a call, and a null return address above.
    void** sp = reinterpret_cast<void**>(
        reinterpret_cast<uintptr_t>(t.stack + t.stack_bytes) & ~uintptr_t{15});
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&fiber_main);
    for (int i = 0; i < 6; ++i) *--sp = nullptr;
    t.sp = sp;
#else
    getcontext(&t.context);
    t.context.uc_stack.ss_sp = t.stack;
    t.context.uc_stack.ss_size = t.stack_bytes;
    t.context.uc_link = nullptr;
    makecontext(&t.context, &fiber_main, 0);
#endif
  }

  static void fiber_main() {
    BlockScheduler& s = *tl_scheduler;
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s.scheduler_stack_, &s.scheduler_stack_bytes_);
#endif
    s.body_(s.body_ctx_);
    s.exit_current();
  }

  void resume(FiberThread& t) {
    current_ = &t;
    t.state = ThreadState::kRunning;
    threadIdx = t.idx;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&scheduler_fake_stack_, t.stack, t.stack_bytes);
#endif
#ifdef EMU_ASM_SWITCH
    emu_switch_context(&scheduler_sp_, t.sp);
#else
    swapcontext(&scheduler_context_, &t.context);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack_, nullptr, nullptr);
#endif
    current_ = nullptr;
  }

  // From a fiber back to the scheduler loop; returns when the scheduler resumes it.
  void switch_to_scheduler(bool exiting) {
    FiberThread& t = *current_;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &t.fake_stack, scheduler_stack_,
                                   scheduler_stack_bytes_);
#else
    (void)exiting;
#endif
#ifdef EMU_ASM_SWITCH
    emu_switch_context(&t.sp, scheduler_sp_);
#else
    swapcontext(&t.context, &scheduler_context_);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(t.fake_stack, nullptr, nullptr);
#endif
  }

  void yield() { switch_to_scheduler(false); }

  [[noreturn]] void exit_current() {
    FiberThread& t = *current_;
    t.state = ThreadState::kDone;
    --alive_;
    // An exited thread no longer holds back a barrier or its warp's exchanges.
    if (at_barrier_ > 0 && at_barrier_ == alive_) release_barrier();
    const unsigned base = t.linear - t.linear % 32;
    for (bool again = true; again;) {
      again = false;
      for (unsigned l = 0; l < 32 && base + l < count_; ++l) {
        const FiberThread& w = threads_[base + l];
        if (w.state == ThreadState::kWarp && try_complete_warp(base, w.mask)) again = true;
      }
    }
    switch_to_scheduler(/*exiting=*/true);
    emu_fatal("an exited fiber was resumed");
  }

  // ---- barriers and warp exchanges ----

  void release_barrier() {
    barrier_result_ = barrier_count_;
    barrier_arrived_ = at_barrier_;
    at_barrier_ = 0;
    for (unsigned i = 0; i < count_; ++i) {
      if (threads_[i].state == ThreadState::kBarrier) threads_[i].state = ThreadState::kReady;
    }
    if (current_ && current_->state == ThreadState::kReady) current_->state = ThreadState::kRunning;
  }

  // Completes the exchange of the lanes in `mask` of the warp at `base` if every one of
  // them that has not exited is waiting in it; returns whether it did.
  bool try_complete_warp(unsigned base, unsigned mask) {
    FiberThread* lanes[32] = {};
    const FiberThread* first = nullptr;
    for (unsigned l = 0; l < 32; ++l) {
      if (!(mask >> l & 1u) || base + l >= count_) continue;
      FiberThread& w = threads_[base + l];
      if (w.state == ThreadState::kDone) continue;
      if (w.state != ThreadState::kWarp) return false;
      lanes[l] = &w;
      if (!first) first = &w;
    }
    if (!first) return false;
    for (unsigned l = 0; l < 32; ++l) {
      const FiberThread* w = lanes[l];
      if (w && (w->op != first->op || w->mask != first->mask || w->width != first->width)) {
        fault(cudaErrorLaunchFailure,
              "lanes of warp " + std::to_string(base / 32) + " disagree at a warp intrinsic: lane " +
                  std::to_string(first->linear % 32) + " is in " + warp_op_name(first->op) +
                  " (mask " + hex(first->mask) + "), lane " + std::to_string(l) + " in " +
                  warp_op_name(w->op) + " (mask " + hex(w->mask) +
                  "); all lanes named in a mask must execute the same intrinsic with the "
                  "same mask");
      }
    }
    compute_warp(lanes, *first);
    for (FiberThread* w : lanes) {
      if (w) w->state = w == current_ ? ThreadState::kRunning : ThreadState::kReady;
    }
    return true;
  }

  static unsigned u32(const FiberThread* t) {
    unsigned v;
    std::memcpy(&v, t->in, 4);
    return v;
  }

  void compute_warp(FiberThread* const (&lanes)[32], const FiberThread& first) {
    const WarpOp op = first.op;
    unsigned ballot = 0, participants = 0;
    for (unsigned l = 0; l < 32; ++l) {
      if (!lanes[l]) continue;
      participants |= 1u << l;
      if (u32(lanes[l]) != 0) ballot |= 1u << l;
    }
    for (unsigned l = 0; l < 32; ++l) {
      FiberThread* t = lanes[l];
      if (!t) continue;
      std::memset(t->out, 0, sizeof t->out);
      unsigned r = 0;
      switch (op) {
        case WarpOp::kSync:
          break;
        case WarpOp::kShflIdx:
        case WarpOp::kShflUp:
        case WarpOp::kShflDown:
        case WarpOp::kShflXor: {
          // PTX shfl.sync: c packs the segment mask (32 − width) and the clamp lane; only
          // the low 5 bits of the lane operand count.
          const int c = op == WarpOp::kShflUp ? (32 - t->width) << 8 : ((32 - t->width) << 8) | 0x1f;
          const int seg = (c >> 8) & 0x1f, clamp = c & 0x1f, b = t->arg & 0x1f;
          const int lane = static_cast<int>(l);
          const int max_lane = (lane & seg) | (clamp & ~seg), min_lane = lane & seg;
          int j = lane;
          bool ok = false;
          if (op == WarpOp::kShflUp) { j = lane - b; ok = j >= max_lane; }
          if (op == WarpOp::kShflDown) { j = lane + b; ok = j <= max_lane; }
          if (op == WarpOp::kShflXor) { j = lane ^ b; ok = j <= max_lane; }
          if (op == WarpOp::kShflIdx) { j = min_lane | (b & ~seg); ok = j <= max_lane; }
          if (!ok) j = lane;
          if (lanes[j]) {
            std::memcpy(t->out, lanes[j]->in, sizeof t->out);
          } else {
            std::memset(t->out, 0xFF, sizeof t->out);  // an exited or excluded source: undefined
          }
          continue;
        }
        case WarpOp::kBallot: r = ballot; break;
        case WarpOp::kAny: r = ballot != 0; break;
        case WarpOp::kAll: r = ballot == participants; break;
        case WarpOp::kUni: r = ballot == 0 || ballot == participants; break;
        case WarpOp::kReduceAdd:
        case WarpOp::kReduceMinU:
        case WarpOp::kReduceMaxU:
        case WarpOp::kReduceMinS:
        case WarpOp::kReduceMaxS:
        case WarpOp::kReduceAnd:
        case WarpOp::kReduceOr:
        case WarpOp::kReduceXor: {
          bool started = false;
          for (const FiberThread* s : lanes) {
            if (!s) continue;
            const unsigned v = u32(s);
            if (!started) { r = v; started = true; continue; }
            switch (op) {
              case WarpOp::kReduceAdd: r += v; break;
              case WarpOp::kReduceMinU: r = v < r ? v : r; break;
              case WarpOp::kReduceMaxU: r = v > r ? v : r; break;
              case WarpOp::kReduceMinS: r = static_cast<int>(v) < static_cast<int>(r) ? v : r; break;
              case WarpOp::kReduceMaxS: r = static_cast<int>(v) > static_cast<int>(r) ? v : r; break;
              case WarpOp::kReduceAnd: r &= v; break;
              case WarpOp::kReduceOr: r |= v; break;
              default: r ^= v; break;
            }
          }
          break;
        }
        case WarpOp::kMatchAny:
        case WarpOp::kMatchAll: {
          unsigned same = 0;
          for (unsigned k = 0; k < 32; ++k) {
            if (lanes[k] && std::memcmp(lanes[k]->in, t->in, t->size) == 0) same |= 1u << k;
          }
          r = op == WarpOp::kMatchAny ? same : (same == participants ? participants : 0);
          break;
        }
      }
      std::memcpy(t->out, &r, 4);
    }
  }

  // Nothing can run, yet threads remain: describe who waits where, and fault the launch.
  void report_deadlock() {
    unsigned at_barrier = 0, at_warp = 0;
    std::string warps;
    for (unsigned i = 0; i < count_; ++i) {
      const FiberThread& t = threads_[i];
      if (t.state == ThreadState::kBarrier) ++at_barrier;
      if (t.state == ThreadState::kWarp) {
        if (at_warp++ < 4) {
          warps += " thread " + std::to_string(i) + " in " + warp_op_name(t.op) + " (mask " +
                   hex(t.mask) + ");";
        }
      }
    }
    fault_code_ = cudaErrorLaunchFailure;
    fault_message_ =
        "deadlock: " + std::to_string(at_barrier) + " threads wait at __syncthreads() (" +
        (at_barrier ? std::string(barrier_file_) + ":" + std::to_string(barrier_line_) : "-") +
        "), " + std::to_string(at_warp) + " at warp intrinsics" + (at_warp ? ":" + warps : "") +
        " (a barrier or full-mask intrinsic that some threads skip would hang a GPU)";
  }

  std::vector<FiberThread> threads_;
  unsigned count_ = 0, alive_ = 0, at_barrier_ = 0;
  const char* barrier_file_ = "";
  int barrier_line_ = 0;
  unsigned barrier_count_ = 0, barrier_result_ = 0, barrier_arrived_ = 0;
  FiberThread* current_ = nullptr;
  void (*body_)(void*) = nullptr;
  void* body_ctx_ = nullptr;
  cudaError_t fault_code_ = cudaSuccess;
  std::string fault_message_;
#ifdef EMU_ASM_SWITCH
  void* scheduler_sp_ = nullptr;
#else
  ucontext_t scheduler_context_;
#endif
  void* scheduler_fake_stack_ = nullptr;
  const void* scheduler_stack_ = nullptr;
  size_t scheduler_stack_bytes_ = 0;

  friend FiberThread* current_thread();
};

inline FiberThread* current_thread() {
  return tl_scheduler ? tl_scheduler->current_ : nullptr;
}

// The scheduler running the calling kernel thread; null in host code.
inline BlockScheduler* in_kernel() { return current_thread() ? tl_scheduler : nullptr; }

}  // namespace emu
