// conv2d.cpp — 2-D convolution, NHWC × HWIO, forward and both gradients, on GEMM.
// Without padding, forward and filter gradient are implicit GEMMs: the micro-kernel
// walks receptive fields in x directly (see "implicit GEMM" below). Otherwise, and for
// the data gradient, an image's im2col matrix has one row per output pixel holding its
// kh·kw·cin receptive field in HWIO order: forward is col · W, the data gradient
// col2im(dY · Wᵀ), the filter gradient colᵀ · dY summed over the batch. Workers take
// contiguous slices of the batch; each im2col GEMM covers a group of consecutive images
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

// ---- implicit GEMM: the im2col matrix is never built ------------------------------
// With no padding, output pixel r's receptive field is kh runs of kw·cin contiguous
// floats in x, one per kernel row, W·cin apart: an AWalk over K = patch with MR row
// pointers (forward), or, for the filter gradient, walks over an output image's pixels
// from MR receptive-field offsets. That saves writing and re-reading an im2col matrix
// 9× the size of x (a 3×3 kernel) in each direction.

namespace {

// Forward and filter gradient take the implicit path without padding and with a kernel
// row short enough for one K block; 'same' convolutions copy into im2col rows instead.
bool implicit_ok(const Conv2dGeometry& g) {
  const bool no_padding = g.pad_top == 0 && g.pad_left == 0 &&
                          (g.oh - 1) * g.stride_h + g.kh <= g.h &&
                          (g.ow - 1) * g.stride_w + g.kw <= g.w;
  return no_padding && g.kw * g.cin <= kGemmKC;
}

// Output pixels in order over the batch, with the offset in x of each one's receptive
// field; stepping avoids two divisions per pixel.
struct PixelCursor {
  const Conv2dGeometry& g;
  int64_t img, oy, ox;
  PixelCursor(const Conv2dGeometry& geometry, int64_t r)
      : g(geometry), img(r / g.out_pixels()), oy(r % g.out_pixels() / g.ow), ox(r % g.ow) {}
  int64_t window_offset() const {
    return ((img * g.h + oy * g.stride_h) * g.w + ox * g.stride_w) * g.cin;
  }
  void next() {
    if (++ox < g.ow) return;
    ox = 0;
    if (++oy < g.oh) return;
    oy = 0;
    ++img;
  }
};

// y[r0 : r1) (rows of the (n·oh·ow) × cout output) = windows · W, + bias, ReLU.
// K blocks are whole kernel rows, so each block's walk starts on a run boundary.
void forward_implicit(const Conv2dGeometry& g, const float* x, const float* w,
                      const float* bias, bool relu, float* y, int64_t r0, int64_t r1,
                      float* packed_w) {
  const int64_t run = g.kw * g.cin, patch = g.patch();
  const int64_t block_rows = std::max<int64_t>(1, kGemmKC / run);  // kernel rows per K block
  Gemm weights;  // W as the (patch × cout) B operand
  weights.k = patch, weights.n = g.cout, weights.b = w, weights.ldb = g.cout;
  // W's rows already have the packed layout when cout fits the strips exactly.
  const bool in_place = rows_are_strips(g.cout);
  const int64_t ldb = in_place ? g.cout : NR;
  for (int64_t j0 = 0; j0 < g.cout; j0 += kGemmNC) {
    const int64_t nc = std::min(kGemmNC, g.cout - j0);
    for (int64_t ki0 = 0; ki0 < g.kh; ki0 += block_rows) {
      const int64_t p0 = ki0 * run, kc = std::min(block_rows, g.kh - ki0) * run;
      const bool first = ki0 == 0, last = p0 + kc == patch;
      if (!in_place) pack_b(weights, p0, kc, j0, nc, packed_w);
      // Blocks of kStrips strips: each B strip (kc × NR floats) then serves the whole
      // block from L1/L2 instead of alternating with the other strips; the strips' A
      // rows are a few KiB of x.
      constexpr int64_t kStrips = kGemmMC / MR;
      AWalk a[kStrips];
      PixelCursor pixel(g, r0);
      for (int64_t block = r0; block < r1; block += kStrips * MR) {
        const int64_t strips = std::min(kStrips, (r1 - block + MR - 1) / MR);
        for (int64_t s = 0; s < strips; ++s) {
          const int64_t rows = std::min(MR, r1 - block - s * MR);
          for (int64_t i = 0; i < rows; ++i, pixel.next()) {
            a[s].row[i] = x + pixel.window_offset() + ki0 * g.w * g.cin;
          }
          for (int64_t i = rows; i < MR; ++i) a[s].row[i] = a[s].row[0];  // never stored
          a[s].inner = run, a[s].inner_step = 1, a[s].outer_step = g.w * g.cin;
        }
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const Epilogue e{first, last && bias ? bias + j0 + jr : nullptr, last && relu};
          for (int64_t s = 0; s < strips; ++s) {
            const int64_t r = block + s * MR;
            const float* b = in_place ? w + p0 * g.cout + j0 + jr : packed_w + jr * kc;
            micro_kernel(kc, a[s], b, ldb, y + r * g.cout + j0 + jr, g.cout,
                         std::min(MR, r1 - r), std::min(NR, nc - jr), e);
          }
        }
      }
    }
  }
}

// dw (patch × cout) (+)= Σ over one image's pixels of window(r)ᵀ · dy[r]: rows of the
// A strip are MR patch positions, each walking the image's output pixels row by row.
// The image's dy (pixels × cout) is the packed B operand.
void filter_implicit(const Conv2dGeometry& g, const float* x_image, const float* dy_image,
                     float* dw, bool overwrite, float* packed_dy) {
  const int64_t run = g.kw * g.cin, patch = g.patch(), pixels = g.out_pixels();
  Gemm grad;  // dy as the (pixels × cout) B operand, packed unless its rows already are
  grad.k = pixels, grad.n = g.cout, grad.b = dy_image, grad.ldb = g.cout;
  const bool in_place = rows_are_strips(g.cout);
  if (!in_place) pack_b(grad, 0, pixels, 0, g.cout, packed_dy);
  for (int64_t p = 0; p < patch; p += MR) {
    const int64_t rows = std::min(MR, patch - p);
    AWalk a;
    for (int64_t i = 0; i < MR; ++i) {
      const int64_t q = p + (i < rows ? i : 0);  // (ki, kj, ci) = (q / run, q % run)
      a.row[i] = x_image + (q / run) * g.w * g.cin + q % run;
    }
    a.inner = g.ow, a.inner_step = g.stride_w * g.cin, a.outer_step = g.stride_h * g.w * g.cin;
    for (int64_t jr = 0; jr < g.cout; jr += NR) {
      const float* b = in_place ? dy_image + jr : packed_dy + jr * pixels;
      micro_kernel(pixels, a, b, in_place ? g.cout : NR, dw + p * g.cout + jr, g.cout, rows,
                   std::min(NR, g.cout - jr), Epilogue{overwrite, nullptr, false});
    }
  }
}

bool conv2d_filter_implicit(const Conv2dGeometry& g) {
  // One image's dy, packed, must fit the B panel; and short images (the seed CNN's
  // third conv has 9 pixels) would pay the C tile's load and store every few K steps,
  // so they take the grouped im2col path.
  const int64_t strips = (g.cout + NR - 1) / NR;
  return implicit_ok(g) && g.out_pixels() >= 32 &&
         g.out_pixels() * strips * NR <= kGemmKC * kGemmNC;
}

}  // namespace

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w,
                    const float* bias, bool relu, float* y, const Exec& ex) {
  const int64_t rows = g.out_pixels(), patch = g.patch(), group = conv2d_images_per_gemm(g);
  const int64_t image_floats = g.h * g.w * g.cin;
  if (implicit_ok(g)) {  // workers take strips of output pixels
    const int64_t strips = (g.n * rows + MR - 1) / MR;
    const int workers = static_cast<int>(conv2d_workers(g, ex.threads));
    parallel_for(strips, workers, [&](int64_t begin, int64_t end, int worker) {
      float* pack = ex.workspace + worker * conv2d_worker_floats(g);
      forward_implicit(g, x, w, bias, relu, y, begin * MR, std::min(end * MR, g.n * rows), pack);
    });
    return;
  }
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

// dcol = dy · Wᵀ, then col2im. Wᵀ (cout × patch) is packed once per worker and call
// (not once per image, as a plain GEMM per group would), when cout fits one K block.
void conv2d_backward_data(const Conv2dGeometry& g, const float* w, const float* dy,
                          float* dx, const Exec& ex) {
  const int64_t rows = g.out_pixels(), patch = g.patch(), group = conv2d_images_per_gemm(g);
  Gemm wt;  // Wᵀ as the (cout × patch) B operand
  wt.k = g.cout, wt.n = patch, wt.b = w, wt.ldb = g.cout, wt.trans_b = true;
  const bool pack_once = g.cout <= kGemmKC && (patch + NR - 1) / NR * NR * g.cout <= kGemmPackFloats;
  parallel_for(g.n, ex.threads, [&](int64_t begin, int64_t end, int worker) {
    float* dcol = ex.workspace + worker * conv2d_worker_floats(g);
    float* pack = dcol + round_to_line(group * rows * patch);
    if (pack_once) pack_b(wt, 0, g.cout, 0, patch, pack);
    for (int64_t first = begin; first < end; first += group) {
      const int64_t images = std::min(group, end - first);
      const float* dy_group = dy + first * rows * g.cout;
      if (pack_once) {
        for (int64_t r = 0; r < images * rows; r += MR) {
          const int64_t strip_rows = std::min(MR, images * rows - r);
          AWalk a;  // MR rows of dy, read in place
          for (int64_t i = 0; i < MR; ++i) a.row[i] = dy_group + (r + (i < strip_rows ? i : 0)) * g.cout;
          a.inner = g.cout, a.inner_step = 1, a.outer_step = 0;
          for (int64_t jr = 0; jr < patch; jr += NR) {
            micro_kernel(g.cout, a, pack + jr * g.cout, NR, dcol + r * patch + jr, patch, strip_rows,
                         std::min(NR, patch - jr), Epilogue{true, nullptr, false});
          }
        }
      } else {
        Gemm mm = wt;  // dcol (images·rows × patch) = dy (images·rows × cout) · Wᵀ
        mm.m = images * rows;
        mm.a = dy_group, mm.lda = g.cout;
        mm.c = dcol, mm.ldc = patch;
        gemm_serial(mm, pack);
      }
      for (int64_t i = 0; i < images; ++i) {
        col2im(g, dcol + i * rows * patch, dx + (first + i) * g.h * g.w * g.cin);
      }
    }
  });
}

void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                            float* dw, float* db, bool accumulate, const Exec& ex) {
  const int64_t rows = g.out_pixels(), patch = g.patch(), group = conv2d_images_per_gemm(g);
  const int workers = static_cast<int>(std::min<int64_t>(std::max(ex.threads, 1), g.n));
  const int64_t worker_floats = conv2d_worker_floats(g) + conv2d_filter_partial_floats(g);
  const bool implicit = conv2d_filter_implicit(g);
  parallel_for(g.n, workers, [&](int64_t begin, int64_t end, int worker) {
    float* dw_part = ex.workspace + worker * worker_floats;
    float* db_part = dw_part + patch * g.cout;
    float* col = dw_part + conv2d_filter_partial_floats(g);
    float* pack = col + round_to_line(group * rows * patch);
    zero_floats(db_part, g.cout);
    const int64_t step = implicit ? 1 : group;  // images per GEMM
    for (int64_t first = begin; first < end; first += step) {
      const int64_t images = std::min(step, end - first);
      const float* dy_group = dy + first * rows * g.cout;
      if (implicit) {
        filter_implicit(g, x + first * g.h * g.w * g.cin, dy_group, dw_part, first == begin, pack);
      } else {
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
      }
      for (int64_t r = 0; r < images * rows; ++r) add_floats(db_part, dy_group + r * g.cout, g.cout);
    }
  });
  // Sum the partials in worker order; workers own disjoint ranges of the outputs.
  const int64_t outputs = patch * g.cout + g.cout;
  parallel_for(outputs, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      float sum = 0.0f;
      for (int t = 0; t < workers; ++t) sum += ex.workspace[t * worker_floats + i];
      float& out = i < patch * g.cout ? dw[i] : db[i - patch * g.cout];
      out = accumulate ? out + sum : sum;
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
