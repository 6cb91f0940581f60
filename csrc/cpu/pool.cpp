// pool.cpp — NHWC max-pooling ('valid' padding) with its argmax, and the gradient that
// routes each output's gradient back through the stored argmax. Channels are innermost,
// so every step of the window scan is a vector compare over cin. Ties keep the first
// maximum in row-major window order (strict >), as the reference does.
#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       const Exec& ex) {
  parallel_for(g.n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t img = begin; img < end; ++img) {
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t out = ((img * g.oh + oy) * g.ow + ox) * g.c;
          const float* corner = x + ((img * g.h + oy * g.stride_h) * g.w + ox * g.stride_w) * g.c;
          float* best = y + out;
          int32_t* where = argmax + out;
          std::copy(corner, corner + g.c, best);
          std::fill(where, where + g.c, 0);
          for (int64_t di = 0; di < g.pool_h; ++di) {
            for (int64_t dj = di == 0 ? 1 : 0; dj < g.pool_w; ++dj) {
              const float* xp = corner + (di * g.w + dj) * g.c;
              const int32_t index = static_cast<int32_t>(di * g.pool_w + dj);
              for (int64_t ch = 0; ch < g.c; ++ch) {
                const bool larger = xp[ch] > best[ch];
                best[ch] = larger ? xp[ch] : best[ch];
                where[ch] = larger ? index : where[ch];
              }
            }
          }
        }
      }
    }
  });
}

// Workers own whole images, so overlapping windows (stride < pool) add without races.
void maxpool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                        float* dx, const Exec& ex) {
  parallel_for(g.n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t img = begin; img < end; ++img) {
      float* dx_img = dx + img * g.h * g.w * g.c;
      std::fill(dx_img, dx_img + g.h * g.w * g.c, 0.0f);
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t out = ((img * g.oh + oy) * g.ow + ox) * g.c;
          float* corner = dx_img + (oy * g.stride_h * g.w + ox * g.stride_w) * g.c;
          for (int64_t ch = 0; ch < g.c; ++ch) {
            const int64_t di = argmax[out + ch] / g.pool_w, dj = argmax[out + ch] % g.pool_w;
            corner[(di * g.w + dj) * g.c + ch] += dy[out + ch];
          }
        }
      }
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
