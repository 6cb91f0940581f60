// ops_loss.cpp — fastnn.ops' the losses beyond softmax_cross_entropy: check the arguments, then one
// OpCall on the chosen backend (op_call.h).
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/op_call.h"

namespace fastnn::bindings {

void bind_loss_ops(py::module_& m) { (void)m; }

}  // namespace fastnn::bindings
