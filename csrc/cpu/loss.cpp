// loss: being written.
#include "cpu/isa.h"
#include "common.h"

// ---- STUBS (temporary) ----
namespace fastnn::cpu::FASTNN_ISA {

void categorical_cross_entropy(int64_t n, int64_t classes, const float* logits, const float* targets, float* dlogits, double* loss, const Exec& ex) {
  fail("categorical_cross_entropy: not implemented yet (a stub being replaced in this change)");
}
void sigmoid_cross_entropy(int64_t count, const float* logits, const float* targets, float* dlogits, double* loss, const Exec& ex) {
  fail("sigmoid_cross_entropy: not implemented yet (a stub being replaced in this change)");
}
void regression_loss(const RegressionLoss& r, int64_t count, const float* y, const float* targets, float* dy, double* loss, const Exec& ex) {
  fail("regression_loss: not implemented yet (a stub being replaced in this change)");
}

}  // namespace fastnn::cpu::FASTNN_ISA
