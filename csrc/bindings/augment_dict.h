// augment_dict.h — an engine layer dict {"type": "augment", ...} (or fastnn.ops.augment's
// spec) as an AugmentStep, checked. Defined in ops_augment.cpp. The keys, by "mode":
//   flip         "flip_horizontal", "flip_vertical": bool
//   rotation     "rotation": [lo, hi] in turns (fractions of 2π); lo <= 1, hi >= -1 (Keras)
//   zoom         "zoom_height": [lo, hi], "zoom_width": [lo, hi] or None (tied to the
//                height's draw): each in (-1, 1], positive zooms out
//   translation  "translate_height", "translate_width": [lo, hi] fractions, each in [-1, 1]
//   crop         "crop": [height, width], each >= 1
//   contrast     "contrast": [lower, upper] each in [0, 1] (factor in [1 - lower,
//                1 + upper]), "value_range": [lo, hi] (default [0, 255])
// and for the affine modes "fill_mode" ('reflect' (default), 'wrap', 'constant',
// 'nearest'), "fill_value" (finite, default 0), "interpolation" ('bilinear' (default),
// 'nearest'). Ranges are [lo, hi] with lo <= hi (contrast's two magnitudes excepted); keys
// of other modes are ignored. n, h, w, c, oh, ow and stream are left 0 for the caller;
// a crop's target is in crop_height, crop_width.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "augment.h"

namespace fastnn::bindings {

namespace py = pybind11;

// Raises Error (ValueError) naming `where` and the bad key.
AugmentStep parse_augment(const py::dict& d, const std::string& where);

}  // namespace fastnn::bindings
