// kernel_table.cpp — this ISA path's kernels as one table (ops.h) for dispatch.cpp.
#include "cpu/isa.h"

#define FASTNN_STR2(x) #x
#define FASTNN_STR(x) FASTNN_STR2(x)

namespace fastnn::cpu::FASTNN_ISA {

const Kernels kernels = {
    FASTNN_STR(FASTNN_ISA),
    cpu::gemm_workspace,
    cpu::conv2d_workspace,
    cpu::batchnorm_workspace,
#define FASTNN_TABLE_ENTRY(name, params) name,
    FASTNN_KERNELS(FASTNN_TABLE_ENTRY)
#undef FASTNN_TABLE_ENTRY
};

}  // namespace fastnn::cpu::FASTNN_ISA
