// conv2d.cpp — 2-D convolution, NHWC × HWIO, forward and both gradients, as im2col +
// GEMM. An image's im2col matrix has one row per output pixel holding its kh·kw·cin
// receptive field in HWIO order, so forward is col · W, the data gradient is
// col2im(dY · Wᵀ) and the filter gradient is colᵀ · dY summed over the batch. Workers
// take contiguous slices of the batch; each GEMM covers a group of consecutive images
// (conv2d_images_per_gemm), whose im2col rows and outputs are contiguous.
#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

// The kernel columns kj whose input column ox·stride + kj − pad lies inside the image.
// They are consecutive, and so are their input pixels: one contiguous run of cin floats
// per kj, i.e. one copy per kernel row.
struct ColumnRun {
  int64_t kj_begin, kj_end, iw_begin;
};

static inline ColumnRun column_run(const Conv2dGeometry& g, int64_t ox) {
  const int64_t iw0 = ox * g.stride_w - g.pad_left;
  const int64_t kj_begin = std::max<int64_t>(0, -iw0);
  const int64_t kj_end = std::min<int64_t>(g.kw, g.w - iw0);
  return {kj_begin, std::max(kj_begin, kj_end), iw0 + kj_begin};
}

// One image x (h, w, cin) -> col (oh·ow, kh·kw·cin); padding reads as zero.
void im2col(const Conv2dGeometry& g, const float* x, float* col) {
  const int64_t patch = g.patch(), row_len = g.kw * g.cin;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      float* row = col + (oy * g.ow + ox) * patch;
      const ColumnRun run = column_run(g, ox);
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        float* dst = row + ki * row_len;
        const int64_t ih = oy * g.stride_h + ki - g.pad_top;
        if (ih < 0 || ih >= g.h) {
          zero_floats(dst, row_len);
          continue;
        }
        zero_floats(dst, run.kj_begin * g.cin);
        copy_floats(dst + run.kj_begin * g.cin, x + (ih * g.w + run.iw_begin) * g.cin,
                    (run.kj_end - run.kj_begin) * g.cin);
        zero_floats(dst + run.kj_end * g.cin, row_len - run.kj_end * g.cin);
      }
    }
  }
}

// The adjoint of im2col: dx (h, w, cin) = Σ over rows of dcol scattered back; padding
// positions are dropped. Overlapping windows add in a fixed order.
void col2im(const Conv2dGeometry& g, const float* dcol, float* dx) {
  const int64_t patch = g.patch(), row_len = g.kw * g.cin;
  std::fill(dx, dx + g.h * g.w * g.cin, 0.0f);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const float* row = dcol + (oy * g.ow + ox) * patch;
      const ColumnRun run = column_run(g, ox);
      const int64_t len = (run.kj_end - run.kj_begin) * g.cin;
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        const int64_t ih = oy * g.stride_h + ki - g.pad_top;
        if (ih < 0 || ih >= g.h) continue;
        add_floats(dx + (ih * g.w + run.iw_begin) * g.cin, row + ki * row_len + run.kj_begin * g.cin,
                   len);
      }
    }
  }
}

}  // namespace

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w,
                    const float* bias, bool relu, float* y, const Exec& ex) {
  const int64_t rows = g.out_pixels(), patch = g.patch(), group = conv2d_images_per_gemm(g);
  const int64_t image_floats = g.h * g.w * g.cin;
  parallel_for(g.n, ex.threads, [&](int64_t begin, int64_t end, int worker) {
    float* col = ex.workspace + worker * conv2d_worker_floats(g);
    float* pack = col + round_to_line(group * rows * patch);
    for (int64_t first = begin; first < end; first += group) {
      const int64_t images = std::min(group, end - first);
      for (int64_t i = 0; i < images; ++i) {
        im2col(g, x + (first + i) * image_floats, col + i * rows * patch);
      }
      Gemm mm;  // y (images·rows × cout) = col (images·rows × patch) · W (patch × cout), + bias, ReLU
      mm.m = images * rows, mm.n = g.cout, mm.k = patch;
      mm.a = col, mm.lda = patch;
      mm.b = w, mm.ldb = g.cout;
      mm.c = y + first * rows * g.cout, mm.ldc = g.cout;
      mm.bias = bias, mm.relu = relu;
      gemm_serial(mm, pack);
    }
  });
}

void conv2d_backward_data(const Conv2dGeometry& g, const float* w, const float* dy,
                          float* dx, const Exec& ex) {
  const int64_t rows = g.out_pixels(), patch = g.patch(), group = conv2d_images_per_gemm(g);
  parallel_for(g.n, ex.threads, [&](int64_t begin, int64_t end, int worker) {
    float* dcol = ex.workspace + worker * conv2d_worker_floats(g);
    float* pack = dcol + round_to_line(group * rows * patch);
    for (int64_t first = begin; first < end; first += group) {
      const int64_t images = std::min(group, end - first);
      Gemm mm;  // dcol (images·rows × patch) = dy (images·rows × cout) · Wᵀ (cout × patch)
      mm.m = images * rows, mm.n = patch, mm.k = g.cout;
      mm.a = dy + first * rows * g.cout, mm.lda = g.cout;
      mm.b = w, mm.ldb = g.cout, mm.trans_b = true;
      mm.c = dcol, mm.ldc = patch;
      gemm_serial(mm, pack);
      for (int64_t i = 0; i < images; ++i) {
        col2im(g, dcol + i * rows * patch, dx + (first + i) * g.h * g.w * g.cin);
      }
    }
  });
}

void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                            float* dw, float* db, const Exec& ex) {
  const int64_t rows = g.out_pixels(), patch = g.patch(), group = conv2d_images_per_gemm(g);
  const int workers = static_cast<int>(std::min<int64_t>(std::max(ex.threads, 1), g.n));
  const int64_t worker_floats = conv2d_worker_floats(g) + conv2d_filter_partial_floats(g);
  parallel_for(g.n, workers, [&](int64_t begin, int64_t end, int worker) {
    float* dw_part = ex.workspace + worker * worker_floats;
    float* db_part = dw_part + patch * g.cout;
    float* col = dw_part + conv2d_filter_partial_floats(g);
    float* pack = col + round_to_line(group * rows * patch);
    std::fill(db_part, db_part + g.cout, 0.0f);
    for (int64_t first = begin; first < end; first += group) {
      const int64_t images = std::min(group, end - first);
      const float* dy_group = dy + first * rows * g.cout;
      for (int64_t i = 0; i < images; ++i) {
        im2col(g, x + (first + i) * g.h * g.w * g.cin, col + i * rows * patch);
      }
      Gemm mm;  // dw_part (patch × cout) (+)= colᵀ (patch × images·rows) · dy (images·rows × cout)
      mm.m = patch, mm.n = g.cout, mm.k = images * rows;
      mm.a = col, mm.lda = patch, mm.trans_a = true;
      mm.b = dy_group, mm.ldb = g.cout;
      mm.c = dw_part, mm.ldc = g.cout;
      mm.accumulate = first != begin;
      gemm_serial(mm, pack);
      for (int64_t r = 0; r < images * rows; ++r) {
        for (int64_t c = 0; c < g.cout; ++c) db_part[c] += dy_group[r * g.cout + c];
      }
    }
  });
  // Sum the partials in worker order; workers own disjoint ranges of the outputs.
  const int64_t outputs = patch * g.cout + g.cout;
  parallel_for(outputs, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      float sum = 0.0f;
      for (int t = 0; t < workers; ++t) sum += ex.workspace[t * worker_floats + i];
      if (i < patch * g.cout) {
        dw[i] = sum;
      } else {
        db[i - patch * g.cout] = sum;
      }
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
