// augment.h — Keras 3's random image layers (RandomFlip, RandomTranslation, RandomRotation,
// RandomZoom, RandomCrop, RandomContrast) as one step description shared by both backends
// and the engines, and the one function that draws each image's parameters from the
// step's coin stream (augment_draw), so the CPU, CUDA and fastnn.reference agree.
//
// Coins: draw k of stream S is u = (splitmix64(S + k) >> 40) · 2⁻²⁴ in [0, 1), dropout's
// scheme (ops.h), with k = kAugmentDraws · image + quantity (AugmentDraw::Quantity): one
// slot per quantity, so a mode's draws never depend on another mode's. A uniform on
// [lo, hi) is lo + u·(hi − lo), in double. Per image, as Keras draws them: the flip coin
// (one coin flips both axes in 'horizontal_and_vertical', as Keras's RandomFlip), the
// angle, the zoom and translation pair, the contrast factor. Per batch, as Keras: the
// RandomCrop offset (slots of image 0).
#pragma once

#include <cmath>
#include <cstdint>

// Both backends call augment_draw: on the host, and on the device when nvcc compiles it.
#ifndef FASTNN_HOST_DEVICE
#ifdef __CUDACC__
#define FASTNN_HOST_DEVICE __host__ __device__
#else
#define FASTNN_HOST_DEVICE
#endif
#endif

namespace fastnn {

struct AugmentStep {
  enum class Mode : int32_t { Flip, Translation, Rotation, Zoom, Crop, Contrast } mode = Mode::Flip;
  // Keras's fill modes of affine_transform (jax.scipy.ndimage.map_coordinates'): an input
  // index i outside [0, size) reads reflect (d c b a | a b c d | d c b a), wrap (i mod size),
  // constant (fill_value) or nearest (the edge).
  enum class Fill : int32_t { Reflect, Wrap, Constant, Nearest } fill = Fill::Reflect;
  // bilinear: the four neighbours of floor(coordinate); nearest: round half away from 0.
  enum class Interpolation : int32_t { Bilinear, Nearest } interpolation = Interpolation::Bilinear;
  float fill_value = 0.0f;
  // Flip: the axes the coin flips.
  bool flip_horizontal = true, flip_vertical = true;
  // Rotation: the angle's range in turns (fractions of 2π), Keras's `factor`.
  double rotation_lo = 0.0, rotation_hi = 0.0;
  // Zoom: the zoom factors are 1 + uniform[lo, hi) (> 1 zooms out); zoom_width_tied: the
  // width takes the height's draw (Keras's width_factor=None, aspect kept).
  double zoom_height_lo = 0.0, zoom_height_hi = 0.0, zoom_width_lo = 0.0, zoom_width_hi = 0.0;
  bool zoom_width_tied = true;
  // Translation: shifts in fractions of the height and width.
  double translate_height_lo = 0.0, translate_height_hi = 0.0;
  double translate_width_lo = 0.0, translate_width_hi = 0.0;
  // Contrast: the factor is uniform[1 − lower, 1 + upper); outputs clipped to value_range.
  double contrast_lower = 0.0, contrast_upper = 0.0;
  float value_lo = 0.0f, value_hi = 255.0f;
  // Crop: the layer's target (height, width); the engine sets oh, ow from it.
  int64_t crop_height = 0, crop_width = 0;
  // Set by the engine (or the binding) per call: the batch's geometry (NHWC in, n × oh ×
  // ow × c out; oh, ow are the crop size for Crop, else h, w) and the coins' stream.
  int64_t n = 0, h = 0, w = 0, c = 0, oh = 0, ow = 0;
  uint64_t stream = 0;
};

// Coin slots per image (k = kAugmentDraws · image + quantity).
constexpr uint64_t kAugmentDraws = 16;

// One image's drawn parameters: the flip, or the affine map from an output pixel (row i,
// column j) to the input point x = m[0]·j + (m[1]·i + m[2]), y = m[3]·j + (m[4]·i + m[5])
// in double, in that order everywhere (Keras's transform a0 a1 a2 b0 b1 b2), or the
// contrast factor, or the crop window.
struct AugmentDraw {
  enum Quantity : uint64_t {
    kFlip = 0, kRotation = 1, kZoomHeight = 2, kZoomWidth = 3, kTranslateHeight = 4,
    kTranslateWidth = 5, kContrast = 6, kCropTop = 7, kCropLeft = 8
  };
  bool flip_h = false, flip_v = false;
  double m[6] = {1.0, 0.0, 0.0, 0.0, 1.0, 0.0};
  double contrast = 1.0;
  // Crop: the input window (top, left, height, width) that becomes the oh × ow output,
  // copied when it is oh × ow, else resized (bilinear, half-pixel centres, edge-clamped).
  int64_t top = 0, left = 0, crop_h = 0, crop_w = 0;
};

// ops.h's splitmix64, which ops.h defines after including this header.
static inline FASTNN_HOST_DEVICE uint64_t augment_splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Draw `quantity` of `image`: u in [0, 1) on a 2⁻²⁴ grid (exact in double and float).
static inline FASTNN_HOST_DEVICE double augment_coin(uint64_t stream, int64_t image,
                                                     uint64_t quantity) {
  const uint64_t k = kAugmentDraws * static_cast<uint64_t>(image) + quantity;
  return static_cast<double>(augment_splitmix64(stream + k) >> 40) * (1.0 / 16777216.0);
}

static inline FASTNN_HOST_DEVICE double augment_uniform(double lo, double hi, uint64_t stream,
                                                        int64_t image, uint64_t quantity) {
  return lo + augment_coin(stream, image, quantity) * (hi - lo);
}

// Image `image`'s parameters for s.mode on coin stream `stream` (s.stream itself, or the
// resident engine's splitmix64(s.stream + iteration)). training=false: the identity, or
// for Crop the center crop to the target aspect (Keras's inference path).
static inline FASTNN_HOST_DEVICE AugmentDraw augment_draw(const AugmentStep& s, uint64_t stream,
                                                          int64_t image, bool training) {
  AugmentDraw d;
  const double h = static_cast<double>(s.h), w = static_cast<double>(s.w);
  if (s.mode == AugmentStep::Mode::Crop) {
    if (training && s.h > s.oh && s.w > s.ow) {  // Keras: a random offset, one per batch
      d.crop_h = s.oh, d.crop_w = s.ow;
      d.top = static_cast<int64_t>(floor(augment_coin(stream, 0, AugmentDraw::kCropTop) *
                                         static_cast<double>(s.h - s.oh + 1)));
      d.left = static_cast<int64_t>(floor(augment_coin(stream, 0, AugmentDraw::kCropLeft) *
                                          static_cast<double>(s.w - s.ow + 1)));
    } else {  // the largest centred window of the target's aspect, then a resize
      int64_t ch = static_cast<int64_t>(static_cast<double>(s.w * s.oh) / static_cast<double>(s.ow));
      int64_t cw = static_cast<int64_t>(static_cast<double>(s.h * s.ow) / static_cast<double>(s.oh));
      ch = ch < s.h ? ch : s.h;
      cw = cw < s.w ? cw : s.w;
      d.crop_h = ch > 1 ? ch : 1;
      d.crop_w = cw > 1 ? cw : 1;
      d.top = (s.h - d.crop_h) / 2;
      d.left = (s.w - d.crop_w) / 2;
    }
    return d;
  }
  if (!training) return d;
  switch (s.mode) {
    case AugmentStep::Mode::Flip: {
      const bool flip = augment_coin(stream, image, AugmentDraw::kFlip) <= 0.5;  // Keras's <=
      d.flip_h = flip && s.flip_horizontal;
      d.flip_v = flip && s.flip_vertical;
      break;
    }
    case AugmentStep::Mode::Rotation: {  // about the centre ((w − 1)/2, (h − 1)/2)
      const double turns =
          augment_uniform(s.rotation_lo, s.rotation_hi, stream, image, AugmentDraw::kRotation);
      const double angle = turns * 360.0 * (3.14159265358979323846 / 180.0);  // Keras's steps
      const double cos_t = cos(angle), sin_t = sin(angle);
      const double cx = 0.5 * (w - 1.0), cy = 0.5 * (h - 1.0);
      d.m[0] = cos_t, d.m[1] = -sin_t, d.m[2] = cx - cx * d.m[0] - cy * d.m[1];
      d.m[3] = sin_t, d.m[4] = cos_t, d.m[5] = cy - cx * d.m[3] - cy * d.m[4];
      break;
    }
    case AugmentStep::Mode::Zoom: {
      const double zy = 1.0 + augment_uniform(s.zoom_height_lo, s.zoom_height_hi, stream, image,
                                              AugmentDraw::kZoomHeight);
      const double zx =
          s.zoom_width_tied
              ? zy
              : 1.0 + augment_uniform(s.zoom_width_lo, s.zoom_width_hi, stream, image,
                                      AugmentDraw::kZoomWidth);
      d.m[0] = zx, d.m[2] = (w - 1.0) / 2.0 * (1.0 - zx);
      d.m[4] = zy, d.m[5] = (h - 1.0) / 2.0 * (1.0 - zy);
      break;
    }
    case AugmentStep::Mode::Translation: {
      const double ty = augment_uniform(s.translate_height_lo, s.translate_height_hi, stream,
                                        image, AugmentDraw::kTranslateHeight) * h;
      const double tx = augment_uniform(s.translate_width_lo, s.translate_width_hi, stream,
                                        image, AugmentDraw::kTranslateWidth) * w;
      d.m[2] = -tx, d.m[5] = -ty;
      break;
    }
    case AugmentStep::Mode::Contrast:
      d.contrast = augment_uniform(1.0 - s.contrast_lower, 1.0 + s.contrast_upper, stream, image,
                                   AugmentDraw::kContrast);
      break;
    case AugmentStep::Mode::Crop:
      break;
  }
  return d;
}

// ---- sampling, shared by both backends --------------------------------------------------

// i mod period in [0, period); one add when i is within a period of the range (the usual
// case: a division costs some 40 cycles).
static inline FASTNN_HOST_DEVICE int64_t augment_mod(int64_t i, int64_t period) {
  if (i >= 0 && i < period) return i;
  if (i < 0 && i >= -period) return i + period;
  if (i >= period && i < 2 * period) return i - period;
  const int64_t r = i % period;
  return r < 0 ? r + period : r;
}

// Index i of an axis of `size` under the fill mode (Constant: -1 when outside).
static inline FASTNN_HOST_DEVICE int64_t augment_fix_index(int64_t i, int64_t size,
                                                           AugmentStep::Fill fill) {
  if (i >= 0 && i < size) return i;
  switch (fill) {
    case AugmentStep::Fill::Reflect: {  // half-sample symmetric, period 2·size
      const int64_t r = augment_mod(i, 2 * size);
      return r < size ? r : 2 * size - 1 - r;
    }
    case AugmentStep::Fill::Wrap:
      return augment_mod(i, size);
    case AugmentStep::Fill::Nearest:
      return i < 0 ? 0 : size - 1;
    case AugmentStep::Fill::Constant:
      break;
  }
  return -1;
}

// floor (one instruction on the GPU and the AVX paths), and lax.round's rounding (Keras's
// nearest: halves away from zero) from it, exactly (v − floor(v) is exact): libm's round
// is a call on every CPU path.
static inline FASTNN_HOST_DEVICE double augment_floor(double v) { return floor(v); }

static inline FASTNN_HOST_DEVICE double augment_round(double v) {
  const double f = floor(v), rest = v - f;  // rest in [0, 1)
  const bool up = (rest > 0.5) | ((rest == 0.5) & (v >= 0.0));  // no branch to mispredict
  return f + static_cast<double>(up);
}

// Keras's bilinear weights and corners: 4 input pixels (each an offset of an image's
// pixel, or -1 for fill_value) and weights, for the input point (x, y). Nearest: one
// corner of weight 1 (the others weight 0 at the same pixel).
struct AugmentTaps {
  int64_t pixel[4];
  float weight[4];
};

static inline FASTNN_HOST_DEVICE AugmentTaps augment_taps(const AugmentStep& s, double x,
                                                          double y) {
  AugmentTaps t;
  if (s.interpolation == AugmentStep::Interpolation::Nearest) {
    const int64_t iy = augment_fix_index(static_cast<int64_t>(augment_round(y)), s.h, s.fill);
    const int64_t ix = augment_fix_index(static_cast<int64_t>(augment_round(x)), s.w, s.fill);
    const int64_t p = iy < 0 || ix < 0 ? -1 : iy * s.w + ix;
    for (int k = 0; k < 4; ++k) t.pixel[k] = p, t.weight[k] = k == 0 ? 1.0f : 0.0f;
    return t;
  }
  const double fy = augment_floor(y), fx = augment_floor(x);
  const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  const float wy = static_cast<float>(y - fy), wx = static_cast<float>(x - fx);
  const int64_t rows[2] = {augment_fix_index(y0, s.h, s.fill), augment_fix_index(y0 + 1, s.h, s.fill)};
  const int64_t cols[2] = {augment_fix_index(x0, s.w, s.fill), augment_fix_index(x0 + 1, s.w, s.fill)};
  const float row_w[2] = {1.0f - wy, wy}, col_w[2] = {1.0f - wx, wx};
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 2; ++b) {
      const int k = 2 * a + b;
      t.pixel[k] = rows[a] < 0 || cols[b] < 0 ? -1 : rows[a] * s.w + cols[b];
      t.weight[k] = row_w[a] * col_w[b];
    }
  }
  return t;
}

// The resize's source point along one axis (half-pixel centres, edge-clamped): lower index,
// upper index and the upper one's weight, for output index o of `out` from `in`.
struct AugmentResizeTap {
  int64_t lo, hi;
  float weight;
};

static inline FASTNN_HOST_DEVICE AugmentResizeTap augment_resize_tap(int64_t o, int64_t out,
                                                                     int64_t in) {
  double src = (static_cast<double>(o) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
  if (src < 0.0) src = 0.0;
  const double top = static_cast<double>(in - 1);
  if (src > top) src = top;
  const double f = augment_floor(src);
  AugmentResizeTap t;
  t.lo = static_cast<int64_t>(f);
  t.hi = t.lo + 1 < in ? t.lo + 1 : t.lo;
  t.weight = static_cast<float>(src - f);
  return t;
}

}  // namespace fastnn
