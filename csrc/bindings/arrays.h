// arrays.h — the checks every binding makes on what Python passes: rank, non-empty,
// shape, writable float32 for in-place ops, and Keras's padding and output sizes. Each
// failure is an Error (ValueError) naming the argument, what was expected and what came.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "common.h"
#include "ops.h"

namespace fastnn::bindings {

namespace py = pybind11;

// Inputs are converted to C-contiguous float32 (int64 labels) on the way in.
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using LabelArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// Rank and non-empty dimensions; `layout` names the axes, e.g. "(N, H, W, C)".
inline void check_array(const py::array& a, const char* name, int rank, const char* layout) {
  if (a.ndim() != rank) {
    fail(name, " must be a ", rank, "-D array ", layout, ", got shape ", shape_str(shape_of(a)));
  }
  for (int i = 0; i < rank; ++i) {
    if (a.shape(i) == 0) {
      fail(name, " must not be empty: every dimension of ", layout, " must be >= 1, got shape ",
           shape_str(shape_of(a)));
    }
  }
}

inline void check_nonempty(const py::array& a, const char* name) {
  if (a.size() == 0) fail(name, " must not be empty, got shape ", shape_str(shape_of(a)));
}

inline void check_shape(const py::array& a, const char* name, const std::vector<int64_t>& expected,
                        const char* why) {
  if (shape_of(a) != expected) {
    fail(name, " must have shape ", shape_str(expected), " (", why, "), got ",
         shape_str(shape_of(a)));
  }
}

inline void check_positive(int64_t value, const char* name) {
  if (value < 1) fail(name, " must be >= 1, got ", value);
}

// A writable float32 C-contiguous array that an op updates in place.
inline py::array_t<float> in_place(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<float>())) {
    fail(name, " must be a float32 array (it is updated in place), got dtype ",
         std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) fail(name, " must be C-contiguous (it is updated in place)");
  if (!a.writeable()) fail(name, " must be writable (it is updated in place)");
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

inline bool parse_padding(const std::string& padding) {
  if (padding == "same") return true;
  if (padding == "valid") return false;
  fail("padding must be 'valid' or 'same', got '", padding, "'");
}

// Keras's output size and leading pad for one spatial axis, or an error naming it.
inline void conv_axis(int64_t size, int64_t kernel, int64_t stride, bool same, const char* axis,
                      const char* what, int64_t& out, int64_t& pad_before) {
  if (!conv_output_size(size, kernel, stride, same, &out, &pad_before)) {
    fail(what, " ", axis, " (", kernel, ") is larger than the input ", axis, " (", size,
         ") with padding='valid'");
  }
}

}  // namespace fastnn::bindings
