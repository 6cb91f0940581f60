// pool.cpp — NHWC pooling: max-pooling with its argmax and the gradient that routes each
// output's gradient back through it, and average pooling forward and backward. Channels
// are innermost, so every step of a window scan is vector work over a run of channels.
// 'same' padding clips each window to the input (positions outside are never a maximum
// and are not counted in a mean). Max-pool ties keep the first maximum in row-major
// window order (strict >), as the reference does.
#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

// The positions [first, last) of window `o` along one axis that lie inside the input:
// the window starts at o·stride − pad, so first > 0 only at the leading edge and
// last < pool only at the trailing one. 'same' padding never leaves a window empty.
struct Inside {
  int64_t first, last;
};

static inline Inside window_inside(int64_t o, int64_t stride, int64_t pad, int64_t pool,
                                   int64_t size) {
  const int64_t start = o * stride - pad;
  return {start < 0 ? -start : 0, start + pool > size ? size - start : pool};
}

// The first input element of output (img, oy, ox)'s window that lies inside the input.
template <class T>
static inline T* window_first(const Pool2dGeometry& g, T* x, int64_t img, int64_t oy, int64_t ox,
                              Inside rows, Inside cols) {
  const int64_t ih = oy * g.stride_h - g.pad_top + rows.first;
  const int64_t iw = ox * g.stride_w - g.pad_left + cols.first;
  return x + ((img * g.h + ih) * g.w + iw) * g.c;
}

}  // namespace

void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       const Exec& ex) {
  parallel_for(g.n * g.oh, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {  // row = img · oh + oy
      const int64_t img = row / g.oh, oy = row % g.oh;
      const Inside rows = window_inside(oy, g.stride_h, g.pad_top, g.pool_h, g.h);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const Inside cols = window_inside(ox, g.stride_w, g.pad_left, g.pool_w, g.w);
        const int64_t out = (row * g.ow + ox) * g.c;
        const float* first = window_first(g, x, img, oy, ox, rows, cols);
        for (int64_t ch = 0; ch < g.c; ch += kLanes) {
          const int64_t lanes = std::min<int64_t>(kLanes, g.c - ch);
          vfloat best = load_n(first + ch, lanes);
          vint where = vint{} + static_cast<int32_t>(rows.first * g.pool_w + cols.first);
          for (int64_t di = rows.first; di < rows.last; ++di) {
            const float* line = first + (di - rows.first) * g.w * g.c + ch;
            for (int64_t dj = di == rows.first ? cols.first + 1 : cols.first; dj < cols.last;
                 ++dj) {
              const vfloat v = load_n(line + (dj - cols.first) * g.c, lanes);
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
        // The window and the position in it of this row (of the padded input).
        const int64_t oy = (ih + g.pad_top) / g.stride_h, di = (ih + g.pad_top) % g.stride_h;
        float* dst = dx + row * g.w * g.c;
        if (oy >= g.oh || di >= g.pool_h) {  // a row no window covers
          std::fill(dst, dst + g.w * g.c, 0.0f);
          continue;
        }
        const float* dy_row = dy + (img * g.oh + oy) * g.ow * g.c;
        const int32_t* argmax_row = argmax + (img * g.oh + oy) * g.ow * g.c;
        const float* relu_row = relu_y ? relu_y + (img * g.oh + oy) * g.ow * g.c : nullptr;
        // Walk the row column by column, tracking the window ox and the position dj in it.
        int64_t ox = g.pad_left / g.stride_w, dj = g.pad_left % g.stride_w;
        for (int64_t iw = 0; iw < g.w; ++iw, dst += g.c) {
          if (ox >= g.ow || dj >= g.pool_w) {  // past the last window, or in a stride's gap
            std::fill(dst, dst + g.c, 0.0f);
          } else {
            const int32_t index = static_cast<int32_t>(di * g.pool_w + dj);
            for (int64_t ch = 0; ch < g.c; ch += kLanes) {
              const int64_t lanes = std::min<int64_t>(kLanes, g.c - ch);
              const int64_t at = ox * g.c + ch;
              store_n(dst + ch, routed(dy_row, argmax_row, relu_row, at, index, lanes), lanes);
            }
          }
          if (++dj == g.stride_w) {
            dj = 0;
            ++ox;
          }
        }
      }
    });
    return;
  }
  parallel_for(g.n, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
    for (int64_t img = begin; img < end; ++img) {
      float* dx_img = dx + img * g.h * g.w * g.c;
      std::fill(dx_img, dx_img + g.h * g.w * g.c, 0.0f);
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        const Inside rows = window_inside(oy, g.stride_h, g.pad_top, g.pool_h, g.h);
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const Inside cols = window_inside(ox, g.stride_w, g.pad_left, g.pool_w, g.w);
          const int64_t at = ((img * g.oh + oy) * g.ow + ox) * g.c;
          float* first = window_first(g, dx, img, oy, ox, rows, cols);
          for (int64_t di = rows.first; di < rows.last; ++di) {
            for (int64_t dj = cols.first; dj < cols.last; ++dj) {
              float* dst = first + ((di - rows.first) * g.w + (dj - cols.first)) * g.c;
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

// ---- average pooling ------------------------------------------------------------------

namespace {

// Whole vectors of channels take plain loads and stores (AVX2's masked moves cost more,
// and the portable path's copy of a variable length much more); only a tail is masked.
struct Full {};

static inline vfloat get(const float* p, Full) { return load(p); }
static inline vfloat get(const float* p, int64_t lanes) { return load_n(p, lanes); }
static inline void put(float* p, vfloat v, Full) { store(p, v); }
static inline void put(float* p, vfloat v, int64_t lanes) { store_n(p, v, lanes); }

// body(ch, lanes) for each vector of c channels: lanes is Full, or the tail's count.
template <class F>
static inline void for_each_channel_vector(int64_t c, F&& body) {
  int64_t ch = 0;
  for (; ch + kLanes <= c; ch += kLanes) body(ch, Full{});
  if (ch < c) body(ch, c - ch);
}

// The windows [first, last] along one axis that cover padded position `at` (input
// position + pad): window k covers [k·stride, k·stride + pool). Empty (first > last)
// where no window reaches.
static inline Inside windows_covering(int64_t at, int64_t stride, int64_t pool, int64_t out) {
  return {at < pool ? 0 : (at - pool) / stride + 1, std::min(at / stride, out - 1)};
}

}  // namespace

// Each output sums its window's positions inside the input, channel vector by channel
// vector, in row-major window order, and divides by their count. A global pool (window =
// image) is one output per image and channel vector: one pass over the image.
void avgpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, const Exec& ex) {
  parallel_for(g.n * g.oh, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {  // row = img · oh + oy
      const int64_t img = row / g.oh, oy = row % g.oh;
      const Inside rows = window_inside(oy, g.stride_h, g.pad_top, g.pool_h, g.h);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const Inside cols = window_inside(ox, g.stride_w, g.pad_left, g.pool_w, g.w);
        const float* first = window_first(g, x, img, oy, ox, rows, cols);
        const int64_t height = rows.last - rows.first, width = cols.last - cols.first;
        const vfloat count = broadcast(static_cast<float>(height * width));
        float* out = y + (row * g.ow + ox) * g.c;
        for_each_channel_vector(g.c, [&](int64_t ch, auto lanes) {
          vfloat sum{};
          for (int64_t i = 0; i < height; ++i) {
            const float* line = first + i * g.w * g.c + ch;
            for (int64_t j = 0; j < width; ++j) sum += get(line + j * g.c, lanes);
          }
          put(out + ch, sum / count, lanes);
        });
      }
    }
  });
}

// A gather: each dx element sums dy · (1/count) over the windows that cover it, in
// ascending (oy, ox) order (as on CUDA), so every element is written once, by one worker,
// and the bits depend on neither the thread count nor the partition.
void avgpool2d_backward(const Pool2dGeometry& g, const float* dy, float* dx, const Exec& ex) {
  parallel_for(g.n * g.h, ex.threads, [=, &g](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {  // row = img · h + ih
      const int64_t img = row / g.h, ih = row % g.h;
      const Inside oys = windows_covering(ih + g.pad_top, g.stride_h, g.pool_h, g.oh);
      Inside oxs{0, -1};  // the windows covering column iw, advanced as iw grows
      for (int64_t iw = 0; iw < g.w; ++iw) {
        const int64_t at = iw + g.pad_left;
        while (oxs.first * g.stride_w + g.pool_w <= at) ++oxs.first;
        while (oxs.last + 1 < g.ow && (oxs.last + 1) * g.stride_w <= at) ++oxs.last;
        float* dst = dx + (row * g.w + iw) * g.c;
        bool written = false;
        for (int64_t oy = oys.first; oy <= oys.last; ++oy) {
          const Inside rows = window_inside(oy, g.stride_h, g.pad_top, g.pool_h, g.h);
          const float* dy_row = dy + (img * g.oh + oy) * g.ow * g.c;
          for (int64_t ox = oxs.first; ox <= oxs.last; ++ox) {
            const Inside cols = window_inside(ox, g.stride_w, g.pad_left, g.pool_w, g.w);
            const vfloat share = broadcast(
                1.0f / static_cast<float>((rows.last - rows.first) * (cols.last - cols.first)));
            const float* src = dy_row + ox * g.c;
            for_each_channel_vector(g.c, [&](int64_t ch, auto lanes) {
              const vfloat part = get(src + ch, lanes) * share;
              put(dst + ch, written ? get(dst + ch, lanes) + part : part, lanes);
            });
            written = true;
          }
        }
        if (!written) std::fill(dst, dst + g.c, 0.0f);  // no window covers this pixel
      }
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
