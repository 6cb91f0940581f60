// pool.cpp — NHWC max-pooling ('valid' padding) with its argmax, and the gradient that
// routes each output's gradient back through the stored argmax. Channels are innermost,
// so every step of the window scan is a vector compare over a run of channels. Ties keep
// the first maximum in row-major window order (strict >), as the reference does.
#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       const Exec& ex) {
  parallel_for(g.n * g.oh, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {  // row = img · oh + oy
      const int64_t img = row / g.oh, oy = row % g.oh;
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const int64_t out = (row * g.ow + ox) * g.c;
        const float* corner = x + ((img * g.h + oy * g.stride_h) * g.w + ox * g.stride_w) * g.c;
        for (int64_t ch = 0; ch < g.c; ch += kLanes) {
          const int64_t lanes = std::min<int64_t>(kLanes, g.c - ch);
          vfloat best = load_n(corner + ch, lanes);
          vint where{};
          for (int64_t di = 0; di < g.pool_h; ++di) {
            for (int64_t dj = di == 0 ? 1 : 0; dj < g.pool_w; ++dj) {
              const vfloat v = load_n(corner + (di * g.w + dj) * g.c + ch, lanes);
              const vint larger = v > best;
              best = larger ? v : best;
              where = larger ? vint{} + static_cast<int32_t>(di * g.pool_w + dj) : where;
            }
          }
          store_n(y + out + ch, best, lanes);
          store_n(argmax + out + ch, where, lanes);
        }
      }
    }
  });
}

namespace {

// The gradient one output sends to window position `index`: dy where the argmax is
// there (and, with relu_y, where y > 0), else 0.
static inline vfloat routed(const float* dy, const int32_t* argmax, const float* relu_y,
                            int64_t at, int32_t index, int64_t lanes) {
  vint take = load_n(argmax + at, lanes) == index;
  if (relu_y) take &= load_n(relu_y + at, lanes) > 0.0f;
  return take ? load_n(dy + at, lanes) : vfloat{};
}

}  // namespace

// Windows that do not overlap (stride >= pool) touch each input pixel at most once, so
// dx is written in one pass, pixel by pixel, with no zero-fill first. Overlapping
// windows add up: workers then own whole images, and zero them first.
void maxpool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                        const float* relu_y, float* dx, const Exec& ex) {
  if (g.stride_h >= g.pool_h && g.stride_w >= g.pool_w) {
    parallel_for(g.n * g.h, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
      for (int64_t row = begin; row < end; ++row) {  // row = img · h + ih
        const int64_t img = row / g.h, ih = row % g.h;
        const int64_t oy = ih / g.stride_h, di = ih % g.stride_h;
        float* dst = dx + row * g.w * g.c;
        if (oy >= g.oh || di >= g.pool_h) {  // a row no window covers
          std::fill(dst, dst + g.w * g.c, 0.0f);
          continue;
        }
        // Walk the input row window by window: columns ox·sw + dj, dj < sw.
        const float* dy_row = dy + (img * g.oh + oy) * g.ow * g.c;
        const int32_t* argmax_row = argmax + (img * g.oh + oy) * g.ow * g.c;
        const float* relu_row = relu_y ? relu_y + (img * g.oh + oy) * g.ow * g.c : nullptr;
        int64_t iw = 0;
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          for (int64_t dj = 0; dj < g.stride_w && iw < g.w; ++dj, ++iw, dst += g.c) {
            if (dj >= g.pool_w) {  // a stride wider than the pool skips this column
              std::fill(dst, dst + g.c, 0.0f);
              continue;
            }
            const int32_t index = static_cast<int32_t>(di * g.pool_w + dj);
            for (int64_t ch = 0; ch < g.c; ch += kLanes) {
              const int64_t lanes = std::min<int64_t>(kLanes, g.c - ch);
              const int64_t at = ox * g.c + ch;
              store_n(dst + ch, routed(dy_row, argmax_row, relu_row, at, index, lanes), lanes);
            }
          }
        }
        std::fill(dst, dx + (row + 1) * g.w * g.c, 0.0f);  // columns past the last window
      }
    });
    return;
  }
  parallel_for(g.n, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
    for (int64_t img = begin; img < end; ++img) {
      float* dx_img = dx + img * g.h * g.w * g.c;
      std::fill(dx_img, dx_img + g.h * g.w * g.c, 0.0f);
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t at = ((img * g.oh + oy) * g.ow + ox) * g.c;
          float* corner = dx_img + (oy * g.stride_h * g.w + ox * g.stride_w) * g.c;
          for (int64_t di = 0; di < g.pool_h; ++di) {
            for (int64_t dj = 0; dj < g.pool_w; ++dj) {
              float* dst = corner + (di * g.w + dj) * g.c;
              const int32_t index = static_cast<int32_t>(di * g.pool_w + dj);
              for (int64_t ch = 0; ch < g.c; ch += kLanes) {
                const int64_t lanes = std::min<int64_t>(kLanes, g.c - ch);
                const vfloat sum = load_n(dst + ch, lanes) +
                                   routed(dy, argmax, relu_y, at + ch, index, lanes);
                store_n(dst + ch, sum, lanes);
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA

// ---- STUBS (temporary) ----
#include "common.h"
namespace fastnn::cpu::FASTNN_ISA {

void avgpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, const Exec& ex) {
  fail("avgpool2d_forward: not implemented yet (a stub being replaced in this change)");
}
void avgpool2d_backward(const Pool2dGeometry& g, const float* dy, float* dx, const Exec& ex) {
  fail("avgpool2d_backward: not implemented yet (a stub being replaced in this change)");
}

}  // namespace fastnn::cpu::FASTNN_ISA
