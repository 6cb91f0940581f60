// kernel_table.cpp — this ISA path's kernels as one table for dispatch.cpp.
#include "cpu/isa.h"

#define FASTNN_STR2(x) #x
#define FASTNN_STR(x) FASTNN_STR2(x)

namespace fastnn::cpu::FASTNN_ISA {

const CpuKernels kernels = {
    FASTNN_STR(FASTNN_ISA),
    gemm,
    sum_rows,
    conv2d_forward,
    conv2d_backward_data,
    conv2d_backward_filter,
    maxpool2d_forward,
    maxpool2d_backward,
    relu_forward,
    relu_backward,
    dropout_forward,
    softmax,
    softmax_cross_entropy,
    adam_update,
    sgd_update,
};

}  // namespace fastnn::cpu::FASTNN_ISA
