// grid.cuh — the launch shape of the element-wise and per-element kernels (activation,
// pool, optimizer): 256-thread blocks over a grid-stride loop.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fastnn::cuda {

constexpr int kGridThreads = 256;
// Enough blocks to fill every SM of an H200 a few times over; the grid-stride loop covers
// the rest, so the grid stays within CUDA's limits for any count.
constexpr int64_t kMaxGridBlocks = 4096;

inline int grid_blocks(int64_t count) {
  return static_cast<int>(
      std::min<int64_t>((count + kGridThreads - 1) / kGridThreads, kMaxGridBlocks));
}

}  // namespace fastnn::cuda
