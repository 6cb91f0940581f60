// ops_augment.cpp — the augmentation layer dict (augment_dict.h) checked into an
// AugmentStep, and fastnn.ops.augment: check the arguments (naming what is wrong), allocate
// the output, then one OpCall on the chosen backend (op_call.h).
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <utility>

#include "bindings/arrays.h"
#include "bindings/augment_dict.h"
#include "bindings/op_call.h"

namespace fastnn::bindings {
namespace {

using Mode = AugmentStep::Mode;

std::string type_name(const py::handle& value) {
  return std::string(py::str(py::type::of(value).attr("__name__")));
}

bool is_real(const py::handle& value) {
  return (py::isinstance<py::float_>(value) || py::isinstance<py::int_>(value)) &&
         !py::isinstance<py::bool_>(value);
}

py::object required(const py::dict& d, const char* key, const std::string& where,
                    const char* what) {
  if (!d.contains(key)) fail(where, ": '", key, "' is missing (", what, ")");
  return d[key];
}

double real(const py::handle& value, const char* key, const std::string& where) {
  if (!is_real(value)) {
    fail(where, ": '", key, "' must be a real number, got ", type_name(value), " ",
         std::string(py::repr(value)));
  }
  const double v = value.cast<double>();
  if (!std::isfinite(v)) fail(where, ": '", key, "' must be finite, got ", v);
  return v;
}

bool boolean(const py::dict& d, const char* key, const std::string& where) {
  const py::object value = required(d, key, where, "a bool");
  if (!py::isinstance<py::bool_>(value)) {
    fail(where, ": '", key, "' must be a bool, got ", type_name(value), " ",
         std::string(py::repr(value)));
  }
  return value.cast<bool>();
}

// [lo, hi]: two finite reals with lo <= hi (when `ordered`).
std::pair<double, double> range(const py::handle& value, const char* key,
                                const std::string& where, bool ordered = true) {
  if (!py::isinstance<py::list>(value) && !py::isinstance<py::tuple>(value)) {
    fail(where, ": '", key, "' must be a pair [lo, hi], got ", type_name(value), " ",
         std::string(py::repr(value)));
  }
  const py::sequence pair = py::reinterpret_borrow<py::sequence>(value);
  if (pair.size() != 2) {
    fail(where, ": '", key, "' must be a pair [lo, hi], got ", pair.size(), " values");
  }
  const double lo = real(pair[0], key, where), hi = real(pair[1], key, where);
  if (ordered && lo > hi) fail(where, ": '", key, "' must be ordered [lo, hi], got [", lo, ", ", hi, "]");
  return {lo, hi};
}

// A range whose ends lie in [min, max] (or (min, max] when `open_min`), as Keras checks.
std::pair<double, double> bounded(const py::dict& d, const char* key, const std::string& where,
                                  double min, double max, bool open_min, const char* what) {
  const auto r = range(required(d, key, where, what), key, where);
  for (const double v : {r.first, r.second}) {
    if ((open_min ? !(v > min) : !(v >= min)) || !(v <= max)) {
      fail(where, ": '", key, "' values must be in ", open_min ? "(" : "[", min, ", ", max,
           "] (", what, "), got [", r.first, ", ", r.second, "]");
    }
  }
  return r;
}

AugmentStep::Fill fill_mode(const std::string& name, const std::string& where) {
  if (name == "reflect") return AugmentStep::Fill::Reflect;
  if (name == "wrap") return AugmentStep::Fill::Wrap;
  if (name == "constant") return AugmentStep::Fill::Constant;
  if (name == "nearest") return AugmentStep::Fill::Nearest;
  fail(where, ": 'fill_mode' must be 'reflect', 'wrap', 'constant' or 'nearest', got '", name, "'");
}

std::string name(const py::dict& d, const char* key, const char* fallback, const std::string& where) {
  if (!d.contains(key)) return fallback;
  const py::object value = d[key];
  if (!py::isinstance<py::str>(value)) {
    fail(where, ": '", key, "' must be a str, got ", type_name(value), " ",
         std::string(py::repr(value)));
  }
  return value.cast<std::string>();
}

}  // namespace

AugmentStep parse_augment(const py::dict& d, const std::string& where) {
  AugmentStep s;
  if (!d.contains("mode")) {
    fail(where, ": 'mode' is missing (one of 'flip', 'translation', 'rotation', 'zoom', "
         "'crop', 'contrast')");
  }
  const std::string mode = name(d, "mode", "", where);
  if (mode == "flip") {
    s.mode = Mode::Flip;
    s.flip_horizontal = boolean(d, "flip_horizontal", where);
    s.flip_vertical = boolean(d, "flip_vertical", where);
  } else if (mode == "translation") {
    s.mode = Mode::Translation;
    const char* what = "fractions of the height, each in [-1, 1]";
    std::tie(s.translate_height_lo, s.translate_height_hi) =
        bounded(d, "translate_height", where, -1.0, 1.0, false, what);
    std::tie(s.translate_width_lo, s.translate_width_hi) =
        bounded(d, "translate_width", where, -1.0, 1.0, false,
                "fractions of the width, each in [-1, 1]");
  } else if (mode == "rotation") {
    s.mode = Mode::Rotation;
    const auto r = range(required(d, "rotation", where, "[lo, hi] in fractions of 2 pi"),
                         "rotation", where);
    if (r.first > 1.0 || r.second < -1.0) {  // Keras's check of a factor pair
      fail(where, ": 'rotation' must overlap [-1, 1] (fractions of 2 pi, as Keras's factor), "
           "got [", r.first, ", ", r.second, "]");
    }
    std::tie(s.rotation_lo, s.rotation_hi) = r;
  } else if (mode == "zoom") {
    s.mode = Mode::Zoom;
    const char* what = "zoom fractions, each in (-1, 1]: positive zooms out";
    std::tie(s.zoom_height_lo, s.zoom_height_hi) =
        bounded(d, "zoom_height", where, -1.0, 1.0, true, what);
    s.zoom_width_tied = !d.contains("zoom_width") || d["zoom_width"].is_none();
    if (!s.zoom_width_tied) {
      std::tie(s.zoom_width_lo, s.zoom_width_hi) =
          bounded(d, "zoom_width", where, -1.0, 1.0, true, what);
    }
  } else if (mode == "crop") {
    s.mode = Mode::Crop;
    const py::object value = required(d, "crop", where, "[height, width], each >= 1");
    std::vector<int64_t> size;
    try {
      if (py::isinstance<py::str>(value)) throw py::cast_error();
      size = value.cast<std::vector<int64_t>>();
    } catch (const py::cast_error&) {
      fail(where, ": 'crop' must be [height, width] (two ints), got ", type_name(value), " ",
           std::string(py::repr(value)));
    }
    if (size.size() != 2 || size[0] < 1 || size[1] < 1) {
      fail(where, ": 'crop' must be [height, width] with each >= 1, got ",
           std::string(py::repr(value)));
    }
    s.crop_height = size[0], s.crop_width = size[1];
  } else if (mode == "contrast") {
    s.mode = Mode::Contrast;
    const auto c = range(required(d, "contrast", where, "[lower, upper], each in [0, 1]"),
                         "contrast", where, /*ordered=*/false);
    if (!(c.first >= 0.0 && c.first <= 1.0 && c.second >= 0.0 && c.second <= 1.0)) {
      fail(where, ": 'contrast' values must be in [0, 1] (the factor is drawn from "
           "[1 - lower, 1 + upper]), got [", c.first, ", ", c.second, "]");
    }
    std::tie(s.contrast_lower, s.contrast_upper) = c;
    if (d.contains("value_range")) {
      const auto v = range(d["value_range"], "value_range", where);
      s.value_lo = static_cast<float>(v.first), s.value_hi = static_cast<float>(v.second);
    }
  } else {
    fail(where, ": 'mode' must be 'flip', 'translation', 'rotation', 'zoom', 'crop' or "
         "'contrast', got '", mode, "'");
  }
  s.fill = fill_mode(name(d, "fill_mode", "reflect", where), where);
  if (d.contains("fill_value")) {
    s.fill_value = static_cast<float>(real(d["fill_value"], "fill_value", where));
  }
  const std::string interpolation = name(d, "interpolation", "bilinear", where);
  if (interpolation == "bilinear") {
    s.interpolation = AugmentStep::Interpolation::Bilinear;
  } else if (interpolation == "nearest") {
    s.interpolation = AugmentStep::Interpolation::Nearest;
  } else {
    fail(where, ": 'interpolation' must be 'bilinear' or 'nearest', got '", interpolation, "'");
  }
  return s;
}

namespace {

FloatArray augment(const FloatArray& x, const py::dict& spec, uint64_t stream, bool training,
                   const std::string& device) {
  check_array(x, "x", 4, "(N, H, W, C)");
  AugmentStep s = parse_augment(spec, "spec");
  s.n = x.shape(0), s.h = x.shape(1), s.w = x.shape(2), s.c = x.shape(3);
  const bool crop = s.mode == Mode::Crop;
  s.oh = crop ? s.crop_height : s.h;
  s.ow = crop ? s.crop_width : s.w;
  s.stream = stream;
  if (static_cast<double>(s.n) * static_cast<double>(s.oh) * static_cast<double>(s.ow) *
          static_cast<double>(s.c) > 0x1p62) {
    fail("spec: 'crop' ", s.oh, "x", s.ow, " is too large for ", s.n, " images of ", s.c,
         " channels");
  }
  FloatArray y({s.n, s.oh, s.ow, s.c});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  float* yp = call.out(y.mutable_data(), y.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.augment(s, xp, yp, training, ex); });
  return y;
}

}  // namespace

void bind_augment_ops(py::module_& m) {
  m.def("augment", &augment, py::arg("x"), py::arg("spec"), py::arg("stream"),
        py::arg("training"), py::arg("device") = "cpu");
}

}  // namespace fastnn::bindings
