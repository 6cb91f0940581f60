// activation_names.h — Keras's activation names and the ops.h Act each one means, for
// every binding that takes an activation by name (fastnn.ops here, the engines' layers).
#pragma once

#include <string>

#include "ops.h"

namespace fastnn::bindings {

// Keras's lowercase name ('relu', 'gelu_tanh', 'silu', 'softmax', ...) -> its Act; an
// unknown name is an Error (ValueError) that lists the known ones. Defined in
// ops_activation.cpp.
Act activation_kind(const std::string& name);

}  // namespace fastnn::bindings
