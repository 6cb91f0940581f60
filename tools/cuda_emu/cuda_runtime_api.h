// cuda_runtime_api.h — the emulator's runtime API is all in cuda_runtime.h.
#pragma once
#include "cuda_runtime.h"
