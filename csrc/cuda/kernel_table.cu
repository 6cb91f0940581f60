// kernel_table.cu — the CUDA backend's kernels as one table (ops.h), beside the CPU's.
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

int64_t no_gemm_workspace(int) { return 0; }  // the tiles live in shared memory

}  // namespace

const Kernels kernels = {
    "cuda",
    no_gemm_workspace,
    conv2d_workspace,
    batchnorm_workspace,
#define FASTNN_TABLE_ENTRY(name, params) name,
    FASTNN_KERNELS(FASTNN_TABLE_ENTRY)
#undef FASTNN_TABLE_ENTRY
};

}  // namespace fastnn::cuda
