#!/usr/bin/env bash
# gpu_check.sh — the whole device check in one call on the lent GPU machine (DESIGN.md):
# build fastnn there, run the GPU tests (plain and under compute-sanitizer), and time each
# CUDA op against PyTorch's CUDA op at the seed CNN's shapes. Logs go to $OUT (or
# ./gpu_check_out); the short table comes last.
#   run: bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"

echo "== machine" | tee "$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"

echo "== build" | tee -a "$OUT/summary.txt"
rm -rf /tmp/site
if ! python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site . \
    > "$OUT/build.log" 2>&1; then
  tail -30 "$OUT/build.log"; echo "BUILD FAILED (log: $OUT/build.log)"; exit 1
fi
export PYTHONPATH=/tmp/site
python3 -m fastnn info | tee -a "$OUT/summary.txt"

echo "== pytest -m gpu" | tee -a "$OUT/summary.txt"
python3 -m pytest -q -m gpu tests/test_cuda.py > "$OUT/pytest_gpu.log" 2>&1
tail -3 "$OUT/pytest_gpu.log" | tee -a "$OUT/summary.txt"

echo "== compute-sanitizer (memcheck, racecheck) on a few small cases" | tee -a "$OUT/summary.txt"
for tool in memcheck racecheck; do
  compute-sanitizer --tool "$tool" --error-exitcode 9 python3 -m pytest -q -x -m gpu \
      tests/test_cuda.py -k "n1_ or 63 or 1x10 or 7, 13" > "$OUT/sanitizer_$tool.log" 2>&1
  echo "$tool: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$OUT/sanitizer_$tool.log") clean summaries)" \
      | tee -a "$OUT/summary.txt"
done

echo "== CUDA ops against PyTorch CUDA (ms per call)" | tee -a "$OUT/summary.txt"
python3 - <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import time
import numpy as np
import torch
import torch.nn.functional as F
from fastnn import ops

def best(f, reps=20):
    f(); torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s = time.perf_counter(); f(); torch.cuda.synchronize(); times.append(time.perf_counter() - s)
    return min(times) * 1e3

rng = np.random.default_rng(0)
print(f"{'op':32} {'fastnn ms':>10} {'torch ms':>10}  (fastnn includes host<->device copies)")
for batch in (64, 1024):
    for xs, ws in [((batch, 28, 28, 1), (3, 3, 1, 32)), ((batch, 13, 13, 32), (3, 3, 32, 64)),
                   ((batch, 5, 5, 64), (3, 3, 64, 64))]:
        x = rng.standard_normal(xs, dtype=np.float32); w = rng.standard_normal(ws, dtype=np.float32)
        b = np.zeros(ws[3], np.float32)
        tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().cuda()
        tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().cuda()
        tb = torch.from_numpy(b).cuda()
        f = best(lambda: ops.conv2d(x, w, b, device="cuda"))
        t = best(lambda: F.conv2d(tx, tw, tb))
        print(f"{'conv2d fwd ' + str(xs):32} {f:10.3f} {t:10.3f}")
    a = rng.standard_normal((1024, 1024), dtype=np.float32); ta = torch.from_numpy(a).cuda()
    f = best(lambda: ops.gemm(a, a, device="cuda")); t = best(lambda: ta @ ta)
    print(f"{'gemm 1024^3':32} {f:10.3f} {t:10.3f}")
PY
echo "== done: logs in $OUT"
