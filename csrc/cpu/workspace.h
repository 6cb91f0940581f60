// cpu/workspace.h — the CPU kernels' blocking constants and scratch sizes (floats, for
// `threads` workers; each worker's share starts on a 64-byte boundary). Shared by every
// ISA path, by the CPU kernel table's *_workspace entries and by the CPU engine's fused
// conv + pool, which runs the kernels one worker at a time.
#pragma once

#include <cstdint>

#include "ops.h"

namespace fastnn::cpu {

// Blocking shared by every ISA (Goto's scheme). A kc×nc panel of B is packed once and
// reused by every mc-row block of A: kc·nc·4 B = 768 KiB sits in the 2 MiB L2, and an
// mc×kc block of A (144 KiB), packed or not, streams through it. kc = 384 covers the seed CNN's conv
// patches (9, 288; 576 in two halves) without a short leftover block. mc and nc are
// multiples of every ISA's MR and NR.
constexpr int64_t kGemmKC = 384;
constexpr int64_t kGemmMC = 96;
constexpr int64_t kGemmNC = 512;
constexpr int64_t kGemmPackFloats = kGemmKC * (kGemmNC + kGemmMC);


static inline int64_t round_to_line(int64_t floats) { return (floats + 15) / 16 * 16; }

static inline int64_t gemm_workspace(int threads) { return threads * kGemmPackFloats; }

// Images per GEMM: enough to give the GEMM at least one full mc block of rows, so a
// small feature map (the seed CNN's third conv has 9 output pixels) does not repack the
// weights for a handful of rows.
static inline int64_t conv2d_images_per_gemm(const Conv2dGeometry& g) {
  const int64_t images = (kGemmMC + g.out_pixels() - 1) / g.out_pixels();
  return images < g.n ? images : g.n;
}

// Per worker: the im2col matrix of one group of images and GEMM packing.
static inline int64_t conv2d_worker_floats(const Conv2dGeometry& g) {
  return round_to_line(conv2d_images_per_gemm(g) * g.out_pixels() * g.patch()) + kGemmPackFloats;
}

// Convolutions split the batch, so at most n workers take part.
static inline int64_t conv2d_workers(const Conv2dGeometry& g, int threads) {
  return threads < g.n ? threads : g.n;
}

static inline int64_t conv2d_forward_workspace(const Conv2dGeometry& g, int threads) {
  return conv2d_workers(g, threads) * conv2d_worker_floats(g);
}

static inline int64_t conv2d_backward_data_workspace(const Conv2dGeometry& g, int threads) {
  return conv2d_workers(g, threads) * conv2d_worker_floats(g);
}

// Each worker also keeps a partial dW and db over its slice of the batch; the partials
// are summed in worker order, so the result never depends on timing.
static inline int64_t conv2d_filter_partial_floats(const Conv2dGeometry& g) {
  return round_to_line(g.patch() * g.cout + g.cout);
}

static inline int64_t conv2d_backward_filter_workspace(const Conv2dGeometry& g, int threads) {
  return conv2d_workers(g, threads) * (conv2d_worker_floats(g) + conv2d_filter_partial_floats(g));
}

// Enough for any of a convolution's three kernels on up to g.n images: every size above
// grows with the batch (more workers, larger groups), never shrinks.
static inline int64_t conv2d_workspace(const Conv2dGeometry& g, int threads) {
  const int64_t forward = conv2d_forward_workspace(g, threads);
  const int64_t data = conv2d_backward_data_workspace(g, threads);
  const int64_t filter = conv2d_backward_filter_workspace(g, threads);
  return forward > data ? (forward > filter ? forward : filter) : (data > filter ? data : filter);
}

// Batch normalisation reduces over rows in kBatchNormBlocks fixed blocks of rows (fewer
// when rows are fewer), whatever the thread count, so its sums never depend on it. Per
// block: two doubles per channel (four floats); ahead of the blocks, two floats per
// channel for the backward's coefficients. Channels are rounded up to a line, so whole
// vectors of doubles stay inside each array.
constexpr int64_t kBatchNormBlocks = 64;

static inline int64_t batchnorm_workspace(const BatchNormGeometry& g, int /*threads*/) {
  return round_to_line(g.channels) * (2 + 4 * kBatchNormBlocks);
}

}  // namespace fastnn::cpu
