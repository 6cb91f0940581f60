// dispatch.h — which CPU kernel table is in use, chosen at run time from what this CPU
// (and its OS) supports; FASTNN_ISA=portable|avx2|avx512 or set_cpu_isa() overrides.
#pragma once

#include <string>
#include <vector>

#include "ops.h"

namespace fastnn {

std::vector<std::string> cpu_isa_available();  // best last, e.g. portable, avx2, avx512
const Kernels& cpu_kernels();                // the table in use
void set_cpu_isa(const std::string& name);      // raises Error if unknown or unsupported
void init_cpu_isa_from_env();                   // honours $FASTNN_ISA, else the best path

}  // namespace fastnn
