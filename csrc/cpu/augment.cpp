// augment.cpp — Keras's random image layers on the CPU (augment.h): flips and crops copy
// pixels; rotation, zoom and translation map each output pixel through the image's 2×3
// affine matrix (in double) and sample the input (bilinear or nearest, Keras's fill
// modes); the crop's resize is bilinear with half-pixel centres; contrast scales about
// each image's per-channel mean (summed in double in a fixed order). Every output element
// is formed alone, so any split of the rows gives the same bits; threads take blocks of
// output rows of about kBlock floats.
#include <cmath>
#include <cstring>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

namespace {

constexpr int64_t kBlock = 16384;
constexpr int64_t kMeanChannels = 64;  // contrast: channels summed per pass over an image

using Mode = AugmentStep::Mode;

// One pixel's c floats: a plain loop, as a memcpy call per pixel costs more than a few
// channels' copy.
inline void copy_pixel(float* __restrict__ out, const float* __restrict__ in, int64_t c) {
  for (int64_t ch = 0; ch < c; ++ch) out[ch] = in[ch];
}

// body(draw, image, row) for every output row of the batch, rows split across threads;
// each image's parameters are drawn once per block of rows (Crop: once, for image 0).
template <class F>
void for_each_row(const AugmentStep& s, bool training, int threads, F body) {
  const int64_t row_floats = s.ow * s.c > 0 ? s.ow * s.c : 1;
  const int64_t rows_per_block = row_floats < kBlock ? kBlock / row_floats : 1;
  const bool per_batch = s.mode == Mode::Crop;
  parallel_for_blocks(s.n * s.oh, rows_per_block, threads, [&](int64_t begin, int64_t end) {
    AugmentDraw d;
    int64_t drawn = -1;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / s.oh, image = per_batch ? 0 : b;
      if (image != drawn) d = augment_draw(s, s.stream, image, training), drawn = image;
      body(d, b, r % s.oh);
    }
  });
}

// One output row of an affine mode: out[j, :] = Σ_k weight_k · in[pixel_k, :]. A point
// whose neighbours lie inside the image skips the fill modes (the same arithmetic).
// kOneChannel: c = 1 known to the compiler (a runtime channel loop per pixel costs more
// than the pixel's sums).
template <bool kOneChannel>
void affine_row(const AugmentStep& s, const AugmentDraw& d, const float* in, float* out,
                int64_t i) {
  const int64_t c = kOneChannel ? 1 : s.c;
  const bool nearest = s.interpolation == AugmentStep::Interpolation::Nearest;
  const double di = static_cast<double>(i);
  const double x_row = d.m[1] * di + d.m[2], y_row = d.m[4] * di + d.m[5];
  double dj = 0.0;  // j as a double, counted (exact): no int-to-double conversion per pixel
  for (int64_t j = 0; j < s.ow; ++j, out += c, dj += 1.0) {
    const double x = d.m[0] * dj + x_row, y = d.m[3] * dj + y_row;
    const double fy = augment_floor(y), fx = augment_floor(x);
    if (!nearest && fy >= 0.0 && fy < static_cast<double>(s.h - 1) && fx >= 0.0 &&
        fx < static_cast<double>(s.w - 1)) {
      const float wy = static_cast<float>(y - fy), wx = static_cast<float>(x - fx);
      const float w00 = (1.0f - wy) * (1.0f - wx), w01 = (1.0f - wy) * wx;
      const float w10 = wy * (1.0f - wx), w11 = wy * wx;
      const float* p = in + (static_cast<int64_t>(fy) * s.w + static_cast<int64_t>(fx)) * c;
      const float* q = p + s.w * c;
      for (int64_t ch = 0; ch < c; ++ch) {
        float acc = 0.0f;
        acc += w00 * p[ch];
        acc += w01 * p[c + ch];
        acc += w10 * q[ch];
        acc += w11 * q[c + ch];
        out[ch] = acc;
      }
      continue;
    }
    if (nearest) {
      const double ry = augment_round(y), rx = augment_round(x);
      if (ry >= 0.0 && ry < static_cast<double>(s.h) && rx >= 0.0 &&
          rx < static_cast<double>(s.w)) {
        copy_pixel(out, in + (static_cast<int64_t>(ry) * s.w + static_cast<int64_t>(rx)) * c, c);
        continue;
      }
    }
    const AugmentTaps t = augment_taps(s, x, y);
    if (nearest) {
      if (t.pixel[0] < 0) {
        for (int64_t ch = 0; ch < c; ++ch) out[ch] = s.fill_value;
      } else {
        copy_pixel(out, in + t.pixel[0] * c, c);
      }
      continue;
    }
    const float* p[4];
    for (int k = 0; k < 4; ++k) p[k] = t.pixel[k] < 0 ? nullptr : in + t.pixel[k] * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      float acc = 0.0f;
      for (int k = 0; k < 4; ++k) acc += t.weight[k] * (p[k] ? p[k][ch] : s.fill_value);
      out[ch] = acc;
    }
  }
}

// One output row of the crop: a copy of the window's row, or its bilinear resize.
void crop_row(const AugmentStep& s, const AugmentDraw& d, const float* in, float* out,
              int64_t i) {
  const int64_t c = s.c;
  if (d.crop_h == s.oh && d.crop_w == s.ow) {
    std::memcpy(out, in + ((d.top + i) * s.w + d.left) * c,
                static_cast<size_t>(s.ow * c) * sizeof(float));
    return;
  }
  const AugmentResizeTap ty = augment_resize_tap(i, s.oh, d.crop_h);
  const float* row0 = in + ((d.top + ty.lo) * s.w + d.left) * c;
  const float* row1 = in + ((d.top + ty.hi) * s.w + d.left) * c;
  for (int64_t j = 0; j < s.ow; ++j, out += c) {
    const AugmentResizeTap tx = augment_resize_tap(j, s.ow, d.crop_w);
    const float w00 = (1.0f - ty.weight) * (1.0f - tx.weight), w01 = (1.0f - ty.weight) * tx.weight;
    const float w10 = ty.weight * (1.0f - tx.weight), w11 = ty.weight * tx.weight;
    const float *a = row0 + tx.lo * c, *b = row0 + tx.hi * c;
    const float *e = row1 + tx.lo * c, *f = row1 + tx.hi * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      out[ch] = w00 * a[ch] + w01 * b[ch] + w10 * e[ch] + w11 * f[ch];
    }
  }
}

// One output row of the flip: the input row (or its mirror), pixels in order or reversed.
void flip_row(const AugmentStep& s, const AugmentDraw& d, const float* in, float* out,
              int64_t i) {
  const int64_t c = s.c;
  const float* row = in + (d.flip_v ? s.h - 1 - i : i) * s.w * c;
  if (!d.flip_h) {
    std::memcpy(out, row, static_cast<size_t>(s.w * c) * sizeof(float));
    return;
  }
  if (c == 1) {  // a reversed row, which the compiler vectorises with a lane permute
    const float* __restrict__ src = row;
    float* __restrict__ dst = out;
    for (int64_t j = 0; j < s.w; ++j) dst[j] = src[s.w - 1 - j];
    return;
  }
  for (int64_t j = 0; j < s.w; ++j) copy_pixel(out + j * c, row + (s.w - 1 - j) * c, c);
}

// y = clip((x − mean)·factor + mean, [lo, hi]); a NaN passes through.
inline float contrast_value(float x, float mean, float factor, float lo, float hi) {
  const float v = (x - mean) * factor + mean;
  return v < lo ? lo : (v > hi ? hi : v);
}

// Contrast of one image: per channel the mean over its pixels (a double sum in pixel
// order; one channel keeps four partial sums, in a fixed order, to overlap the adds), then
// contrast_value. Channels go kMeanChannels at a time.
void contrast_image(const AugmentStep& s, const AugmentDraw& d, const float* __restrict__ in,
                    float* __restrict__ out) {
  const int64_t pixels = s.h * s.w, c = s.c;
  const float factor = static_cast<float>(d.contrast), lo = s.value_lo, hi = s.value_hi;
  const double count = static_cast<double>(pixels);
  if (c == 1) {
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t p = 0;
    for (; p + 4 <= pixels; p += 4) {
      for (int k = 0; k < 4; ++k) part[k] += in[p + k];
    }
    for (; p < pixels; ++p) part[0] += in[p];
    const float mean = static_cast<float>(((part[0] + part[1]) + (part[2] + part[3])) / count);
    for (int64_t q = 0; q < pixels; ++q) out[q] = contrast_value(in[q], mean, factor, lo, hi);
    return;
  }
  for (int64_t c0 = 0; c0 < c; c0 += kMeanChannels) {
    const int64_t cn = c - c0 < kMeanChannels ? c - c0 : kMeanChannels;
    double sum[kMeanChannels] = {};
    for (int64_t p = 0; p < pixels; ++p) {
      const float* px = in + p * c + c0;
      for (int64_t k = 0; k < cn; ++k) sum[k] += px[k];
    }
    float mean[kMeanChannels];
    for (int64_t k = 0; k < cn; ++k) mean[k] = static_cast<float>(sum[k] / count);
    for (int64_t p = 0; p < pixels; ++p) {
      const float* px = in + p * c + c0;
      float* py = out + p * c + c0;
      for (int64_t k = 0; k < cn; ++k) py[k] = contrast_value(px[k], mean[k], factor, lo, hi);
    }
  }
}

}  // namespace

void augment(const AugmentStep& s, const float* x, float* y, bool training, const Exec& ex) {
  if (s.n <= 0 || s.c <= 0 || s.oh <= 0 || s.ow <= 0) return;
  const int64_t in_image = s.h * s.w * s.c, out_image = s.oh * s.ow * s.c;
  if (!training && s.mode != Mode::Crop) {  // inference: the identity
    parallel_for_blocks(s.n * in_image, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
      std::memcpy(y + begin, x + begin, static_cast<size_t>(end - begin) * sizeof(float));
    });
    return;
  }
  switch (s.mode) {
    case Mode::Contrast:
      parallel_for(s.n, ex.threads, [&](int64_t begin, int64_t end, int) {
        for (int64_t b = begin; b < end; ++b) {
          contrast_image(s, augment_draw(s, s.stream, b, true), x + b * in_image, y + b * in_image);
        }
      });
      return;
    case Mode::Crop:
      for_each_row(s, training, ex.threads, [&](const AugmentDraw& d, int64_t b, int64_t i) {
        crop_row(s, d, x + b * in_image, y + b * out_image + i * s.ow * s.c, i);
      });
      return;
    case Mode::Flip:
      for_each_row(s, true, ex.threads, [&](const AugmentDraw& d, int64_t b, int64_t i) {
        flip_row(s, d, x + b * in_image, y + b * out_image + i * s.ow * s.c, i);
      });
      return;
    case Mode::Rotation:
    case Mode::Zoom:
    case Mode::Translation:
      for_each_row(s, true, ex.threads, [&](const AugmentDraw& d, int64_t b, int64_t i) {
        const float* in = x + b * in_image;
        float* out = y + b * out_image + i * s.ow * s.c;
        if (s.c == 1) {
          affine_row<true>(s, d, in, out, i);
        } else {
          affine_row<false>(s, d, in, out, i);
        }
      });
      return;
  }
}

}  // namespace fastnn::cpu::FASTNN_ISA
