// batchnorm.cpp — batch normalisation over the last axis of x (rows × channels): the
// training forward (batch statistics, moving statistics), the inference forward and the
// backward, vectorised across channels, in double wherever rows are summed.
//
// Reduction order (fixed, so the bits depend on neither the thread count nor timing):
// rows are cut into min(kBatchNormBlocks, rows) blocks by their count alone; workers take
// whole blocks, each block leaves per-channel partials in the workspace, and the calling
// thread merges blocks 1, 2, … into block 0 in order. Within a block, rows go in chunks of
// about 16 KiB (they stay in L1): the statistics read a chunk once from memory for its sum,
// once more from L1 for the squared deviations from its own mean, and merge (mean, M2)
// into the block's by Chan et al.'s update — the accuracy of two passes over x at the
// memory cost of one. The backward's sums (dy and dy·(x − mean)) run down each block's
// rows in order. Element-wise passes (y, dx) split rows any way: they reduce nothing.
#include <algorithm>
#include <cmath>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

// A chunk of rows: about 4096 floats (16 KiB, L1), and at least 16 rows, so the
// per-chunk work (a merge, the inference scale's square roots) is spread over many rows.
constexpr int64_t kChunkFloats = 4096;
constexpr int64_t kMinChunkRows = 16;
// Below this many floats per worker, waking a thread costs more than the work.
constexpr int64_t kFloatsPerWorker = 16384;

// Rows are summed in double: one vector of floats widens into two of doubles (a pair of
// registers; GCC keeps a double-width vector type in memory instead).
typedef float vhalf __attribute__((vector_size(FASTNN_VECTOR_BYTES / 2)));
typedef double vdouble __attribute__((vector_size(FASTNN_VECTOR_BYTES)));

struct Wide {
  vdouble lo, hi;
};

static inline Wide operator+(Wide a, Wide b) { return {a.lo + b.lo, a.hi + b.hi}; }
static inline Wide operator-(Wide a, Wide b) { return {a.lo - b.lo, a.hi - b.hi}; }
static inline Wide operator*(Wide a, Wide b) { return {a.lo * b.lo, a.hi * b.hi}; }
static inline Wide operator*(Wide a, double s) { return {a.lo * s, a.hi * s}; }
static inline Wide operator/(Wide a, double s) { return {a.lo / s, a.hi / s}; }
static inline Wide& operator+=(Wide& a, Wide b) { return a = a + b; }

static inline Wide widen(vfloat v) {
  vhalf lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  return {__builtin_convertvector(lo, vdouble), __builtin_convertvector(hi, vdouble)};
}

static inline Wide load_wide(const double* p) {
  Wide v;
  std::memcpy(&v.lo, p, sizeof v.lo);
  std::memcpy(&v.hi, p + kLanes / 2, sizeof v.hi);
  return v;
}

static inline void store_wide(double* p, Wide v) {
  std::memcpy(p, &v.lo, sizeof v.lo);
  std::memcpy(p + kLanes / 2, &v.hi, sizeof v.hi);
}

// A whole vector of channels: plain loads and stores, cheaper than AVX2's masked moves;
// a tail (an int64_t lane count) takes the masked ones.
struct Full {};

static inline vfloat get(const float* p, Full) { return load(p); }
static inline vfloat get(const float* p, int64_t lanes) { return load_n(p, lanes); }
static inline void put(float* p, vfloat v, Full) { store(p, v); }
static inline void put(float* p, vfloat v, int64_t lanes) { store_n(p, v, lanes); }

// p[ch …], or `value` in every lane where p is null (gamma 1, beta 0).
template <class Lanes>
static inline vfloat get_or(const float* p, int64_t ch, Lanes lanes, float value) {
  return p ? get(p + ch, lanes) : broadcast(value);
}

// The workspace (cpu/workspace.h): two float arrays of `stride` (channels rounded up to
// a line), then one slot per block of two double arrays of `stride`.
struct Scratch {
  int64_t stride;
  float* coef;
  double* slots;
  double* first(int64_t block) const { return slots + block * 2 * stride; }
  double* second(int64_t block) const { return first(block) + stride; }
};

Scratch scratch(const BatchNormGeometry& g, float* workspace) {
  const int64_t stride = round_to_line(g.channels);
  return {stride, workspace, reinterpret_cast<double*>(workspace + 2 * stride)};
}

int64_t chunk_rows(const BatchNormGeometry& g) {
  return std::max(kMinChunkRows, kChunkFloats / g.channels);
}

int64_t block_count(const BatchNormGeometry& g) { return std::min(kBatchNormBlocks, g.rows); }

int workers(const BatchNormGeometry& g, int threads) {
  return static_cast<int>(
      std::clamp<int64_t>(g.rows * g.channels / kFloatsPerWorker, 1, threads));
}

// The order every pass takes rows [begin, end): chunk by chunk, and within a chunk one
// vector of channels at a time down all its rows, so the first vector brings the chunk
// into L1 and the others find it there: body(first_row, end_row, ch, lanes), lanes Full
// or the tail's count.
template <class F>
void for_each_tile(const BatchNormGeometry& g, int64_t begin, int64_t end, F&& body) {
  const int64_t chunk = chunk_rows(g);
  for (int64_t r0 = begin; r0 < end; r0 += chunk) {
    const int64_t r1 = std::min(end, r0 + chunk);
    for_each_vector(0, g.channels, [&](int64_t ch, int64_t lanes) {
      if (lanes == kLanes) {
        body(r0, r1, ch, Full{});
      } else {
        body(r0, r1, ch, lanes);
      }
    });
  }
}

// Runs body(b, begin, end) on whole blocks of rows, block b = [rows·b/B, rows·(b+1)/B).
template <class F>
void for_each_block(const BatchNormGeometry& g, int threads, F&& body) {
  const int64_t blocks = block_count(g);
  parallel_for(blocks, workers(g, threads), [&](int64_t first, int64_t last, int) {
    for (int64_t b = first; b < last; ++b) {
      body(b, slice_begin(g.rows, blocks, b), slice_begin(g.rows, blocks, b + 1));
    }
  });
}

// Element-wise passes: body(begin, end) on runs of whole chunks, split among workers.
template <class F>
void for_each_row_range(const BatchNormGeometry& g, int threads, F&& body) {
  const int64_t chunk = chunk_rows(g);
  parallel_for((g.rows + chunk - 1) / chunk, workers(g, threads),
               [&](int64_t first, int64_t last, int) {
                 body(first * chunk, std::min(g.rows, last * chunk));
               });
}

// Chan et al.'s merge of a group of n rows (its mean, its m2 = Σ squared deviations from
// that mean) into the running (mean, m2) of `before` rows at run_mean / run_m2.
static inline void merge_moments(double* run_mean, double* run_m2, Wide mean, Wide m2,
                                 double before, double n) {
  const double total = before + n;
  const Wide run = load_wide(run_mean);
  const Wide delta = mean - run;
  store_wide(run_mean, run + delta * (n / total));
  store_wide(run_m2, load_wide(run_m2) + m2 + delta * delta * (before * n / total));
}

// y = (x − center)·scale + offset down rows [r0, r1) of one vector of channels.
template <class Lanes>
static inline void normalize_tile(const BatchNormGeometry& g, const float* x, float* y,
                                  int64_t r0, int64_t r1, int64_t ch, Lanes lanes,
                                  vfloat center, vfloat scale, vfloat offset) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t at = r * g.channels + ch;
    put(y + at, (get(x + at, lanes) - center) * scale + offset, lanes);
  }
}

}  // namespace

void batchnorm_forward_training(const BatchNormGeometry& g, const float* x, const float* gamma,
                                const float* beta, float* y, float* mean, float* inv_std,
                                float* moving_mean, float* moving_variance, const Exec& ex) {
  const Scratch s = scratch(g, ex.workspace);
  const int64_t c = g.channels;
  for_each_block(g, ex.threads, [&](int64_t b, int64_t begin, int64_t end) {
    std::fill(s.first(b), s.first(b) + 2 * s.stride, 0.0);
    for_each_tile(g, begin, end, [&](int64_t r0, int64_t r1, int64_t ch, auto lanes) {
      Wide sum{};
      for (int64_t r = r0; r < r1; ++r) sum += widen(get(x + r * c + ch, lanes));
      const double n = static_cast<double>(r1 - r0);
      const Wide chunk_mean = sum / n;
      Wide m2{};
      for (int64_t r = r0; r < r1; ++r) {
        const Wide d = widen(get(x + r * c + ch, lanes)) - chunk_mean;
        m2 += d * d;
      }
      merge_moments(s.first(b) + ch, s.second(b) + ch, chunk_mean, m2,
                    static_cast<double>(r0 - begin), n);
    });
  });
  const int64_t blocks = block_count(g);
  for (int64_t b = 1; b < blocks; ++b) {
    const double before = static_cast<double>(slice_begin(g.rows, blocks, b));
    const double n = static_cast<double>(slice_begin(g.rows, blocks, b + 1)) - before;
    for (int64_t ch = 0; ch < c; ch += kLanes) {
      merge_moments(s.first(0) + ch, s.second(0) + ch, load_wide(s.first(b) + ch),
                    load_wide(s.second(b) + ch), before, n);
    }
  }
  const double momentum = g.momentum, rest = 1.0 - momentum;
  for (int64_t ch = 0; ch < c; ++ch) {
    const double batch_mean = s.first(0)[ch];
    const double variance = s.second(0)[ch] / static_cast<double>(g.rows);  // biased
    mean[ch] = static_cast<float>(batch_mean);
    inv_std[ch] = static_cast<float>(1.0 / std::sqrt(variance + g.epsilon));
    moving_mean[ch] = static_cast<float>(moving_mean[ch] * momentum + batch_mean * rest);
    moving_variance[ch] = static_cast<float>(moving_variance[ch] * momentum + variance * rest);
  }
  for_each_row_range(g, ex.threads, [&](int64_t begin, int64_t end) {
    for_each_tile(g, begin, end, [&](int64_t r0, int64_t r1, int64_t ch, auto lanes) {
      const vfloat scale = get(inv_std + ch, lanes) * get_or(gamma, ch, lanes, 1.0f);
      normalize_tile(g, x, y, r0, r1, ch, lanes, get(mean + ch, lanes), scale,
                     get_or(beta, ch, lanes, 0.0f));
    });
  });
}

// y = (x − moving_mean)·scale + beta, scale = gamma / sqrt(moving_variance + epsilon)
// formed in double once per chunk and vector of channels.
void batchnorm_inference(const BatchNormGeometry& g, const float* x, const float* gamma,
                         const float* beta, const float* moving_mean,
                         const float* moving_variance, float* y, const Exec& ex) {
  for_each_row_range(g, ex.threads, [&](int64_t begin, int64_t end) {
    for_each_tile(g, begin, end, [&](int64_t r0, int64_t r1, int64_t ch, auto lanes) {
      float scale[kLanes] = {};
      for (int64_t l = 0; l < kLanes && ch + l < g.channels; ++l) {
        const double gain = gamma ? gamma[ch + l] : 1.0;
        scale[l] = static_cast<float>(gain / std::sqrt(moving_variance[ch + l] + g.epsilon));
      }
      normalize_tile(g, x, y, r0, r1, ch, lanes, get(moving_mean + ch, lanes), load(scale),
                     get_or(beta, ch, lanes, 0.0f));
    });
  });
}

// The scale is formed as batchnorm_inference forms it (in double, rounded once), so a
// folded layer differs from the unfolded pair only by the rounding of two products.
void batchnorm_fold(const BatchNormGeometry& g, const float* kernel, const float* bias,
                    const float* gamma, const float* beta, const float* moving_mean,
                    const float* moving_variance, float* folded_kernel, float* folded_bias,
                    const Exec&) {
  for (int64_t ch = 0; ch < g.channels; ++ch) {
    const double gain = gamma ? gamma[ch] : 1.0;
    const float scale = static_cast<float>(gain / std::sqrt(moving_variance[ch] + g.epsilon));
    for (int64_t r = 0; r < g.rows; ++r) {
      folded_kernel[r * g.channels + ch] = kernel[r * g.channels + ch] * scale;
    }
    folded_bias[ch] = ((bias ? bias[ch] : 0.0f) - moving_mean[ch]) * scale + (beta ? beta[ch] : 0.0f);
  }
}

// dbeta = Σ dy, dgamma = inv_std·Σ dy·(x − mean) (block sums in double, merged in block
// order), then dx = gamma·inv_std·(dy − dbeta/rows − xhat·dgamma/rows).
void batchnorm_backward(const BatchNormGeometry& g, const float* x, const float* gamma,
                        const float* mean, const float* inv_std, const float* dy, float* dx,
                        float* dgamma, float* dbeta, const Exec& ex) {
  const Scratch s = scratch(g, ex.workspace);
  const int64_t c = g.channels;
  for_each_block(g, ex.threads, [&](int64_t b, int64_t begin, int64_t end) {
    std::fill(s.first(b), s.first(b) + 2 * s.stride, 0.0);
    for_each_tile(g, begin, end, [&](int64_t r0, int64_t r1, int64_t ch, auto lanes) {
      const Wide center = widen(get(mean + ch, lanes));
      Wide sum_dy = load_wide(s.first(b) + ch), sum_dy_x = load_wide(s.second(b) + ch);
      for (int64_t r = r0; r < r1; ++r) {
        const Wide d = widen(get(dy + r * c + ch, lanes));
        sum_dy += d;
        sum_dy_x += d * (widen(get(x + r * c + ch, lanes)) - center);
      }
      store_wide(s.first(b) + ch, sum_dy);
      store_wide(s.second(b) + ch, sum_dy_x);
    });
  });
  const int64_t blocks = block_count(g);
  for (int64_t b = 1; b < blocks; ++b) {
    for (int64_t ch = 0; ch < c; ch += kLanes) {
      store_wide(s.first(0) + ch, load_wide(s.first(0) + ch) + load_wide(s.first(b) + ch));
      store_wide(s.second(0) + ch, load_wide(s.second(0) + ch) + load_wide(s.second(b) + ch));
    }
  }
  float* per_row_dbeta = s.coef;              // dbeta / rows
  float* per_row_dgamma = s.coef + s.stride;  // dgamma / rows
  for (int64_t ch = 0; ch < c; ++ch) {
    const double sum_dy = s.first(0)[ch];
    const double sum_dy_xhat = s.second(0)[ch] * inv_std[ch];
    if (dbeta) dbeta[ch] = static_cast<float>(sum_dy);
    if (dgamma) dgamma[ch] = static_cast<float>(sum_dy_xhat);
    per_row_dbeta[ch] = static_cast<float>(sum_dy / static_cast<double>(g.rows));
    per_row_dgamma[ch] = static_cast<float>(sum_dy_xhat / static_cast<double>(g.rows));
  }
  if (!dx) return;
  for_each_row_range(g, ex.threads, [&](int64_t begin, int64_t end) {
    for_each_tile(g, begin, end, [&](int64_t r0, int64_t r1, int64_t ch, auto lanes) {
      const vfloat center = get(mean + ch, lanes), inv = get(inv_std + ch, lanes);
      const vfloat gain = inv * get_or(gamma, ch, lanes, 1.0f);
      const vfloat dbeta_row = get(per_row_dbeta + ch, lanes);
      const vfloat dgamma_row = get(per_row_dgamma + ch, lanes);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t at = r * c + ch;
        const vfloat xhat = (get(x + at, lanes) - center) * inv;
        put(dx + at, gain * ((get(dy + at, lanes) - dbeta_row) - xhat * dgamma_row), lanes);
      }
    });
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
