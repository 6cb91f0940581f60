// cuda_runtime.h — fastnn's host emulator of the CUDA runtime: put this directory first on
// the include path and run transform.py over the .cu sources, and the CUDA code compiles
// with g++ and runs on the CPU (see README.md). emu/ holds the pieces:
#pragma once

#include "emu/types.h"    // qualifiers, vector types, enums, error codes, structs
#include "emu/fiber.h"    // a block's threads as fibers: barriers and warp exchanges
#include "emu/device.h"   // device-side intrinsics, atomics, math
#include "emu/runtime.h"  // memory, streams, events, capture and graphs, emu::launch
