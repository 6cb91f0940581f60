// activation.cpp — element-wise layers: ReLU and its gradient, dropout (whose gradient is
// the same multiply by the stored mask). Loops are written on whole vectors: a scalar
// `x > 0 ? dy : 0` compiles to a branch that mispredicts on every other random sign.
// Threads take blocks of 16 Ki floats (64 KiB): below that, waking a thread costs more
// than the work.
#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

constexpr int64_t kBlock = 16384;

void relu_forward(int64_t count, const float* x, float* y, const Exec& ex) {
  parallel_for_blocks(count, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
    for_each_vector(begin, end, [=](int64_t i, int64_t lanes) {
      const vfloat v = load_n(x + i, lanes);
      store_n(y + i, v > 0.0f ? v : vfloat{}, lanes);
    });
  });
}

// Zero gradient at x == 0, as TensorFlow and PyTorch define it.
void relu_backward(int64_t count, const float* x, const float* dy, float* dx, const Exec& ex) {
  parallel_for_blocks(count, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
    for_each_vector(begin, end, [=](int64_t i, int64_t lanes) {
      store_n(dx + i, load_n(x + i, lanes) > 0.0f ? load_n(dy + i, lanes) : vfloat{}, lanes);
    });
  });
}

void dropout_forward(int64_t count, const float* x, float* y, float* mask,
                     const DropoutStep& step, const Exec& ex) {
  parallel_for_blocks(count, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const bool keep = (splitmix64(step.stream + static_cast<uint64_t>(i)) >> 40) >= step.threshold;
      mask[i] = keep ? step.scale : 0.0f;
      y[i] = x[i] * mask[i];
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA

// ---- STUBS (temporary) ----
#include "common.h"
namespace fastnn::cpu::FASTNN_ISA {

void activation_forward(const ActivationSpec& a, int64_t count, const float* x, float* y, const Exec& ex) {
  fail("activation_forward: not implemented yet (a stub being replaced in this change)");
}
void activation_backward(const ActivationSpec& a, int64_t count, const float* x, const float* y, const float* dy, float* dx, const Exec& ex) {
  fail("activation_backward: not implemented yet (a stub being replaced in this change)");
}
void softmax_backward(int64_t n, int64_t classes, const float* y, const float* dy, float* dx, const Exec& ex) {
  fail("softmax_backward: not implemented yet (a stub being replaced in this change)");
}

}  // namespace fastnn::cpu::FASTNN_ISA
