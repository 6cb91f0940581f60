#!/usr/bin/env bash
# gpu_check.sh — the whole device check in one call on the lent GPU machine (DESIGN.md):
# build fastnn there, time training on the GPU against PyTorch and JAX (resident data, then
# the 5-epoch Fashion-MNIST recipe), run the GPU tests (plain and under compute-sanitizer),
# and time each CUDA op against PyTorch's. Most important numbers first; every section has
# its own timeout, clipped to what is left of GPU_CHECK_BUDGET seconds (default 570: the
# device call's limit is 600). Logs and JSON go to $OUT (or ./gpu_check_out); the short
# summary comes last.
#
# Fashion-MNIST travels in the git-ignored folder data/ (the device machine has no network;
# the loader finds $FASTNN_DATA/fashion-mnist/). Populate it here once (30 MB):
#   ls /usr/share/datasets/fashion-mnist || apt-get install -y dataset-fashion-mnist
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# then call the device with  command: bash bench/gpu_check.sh   carry: ["data"]
# Without data/ the throughput bench uses random images and the recipe and the training CLI
# fail with "dataset not found".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
BUDGET="${GPU_CHECK_BUDGET:-570}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export FASTNN_DATA="$PWD/data" FASTNN_OFFLINE=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX shares the GPU with PyTorch and fastnn

note() { echo "$*" | tee -a "$SUMMARY"; }

# section NAME CAP LOG COMMAND...: run COMMAND under a timeout of CAP seconds (less if the
# budget is nearly spent; skipped when under 20 s are left), output to $OUT/LOG.
section() {
  local name=$1 cap=$2 log=$3 start=$SECONDS rc
  shift 3
  local left=$((BUDGET - SECONDS - 10))
  if ((left < 20)); then note "== $name: SKIPPED, the time budget is spent"; return 99; fi
  ((cap > left)) && cap=$left
  echo "== $name (limit ${cap} s, log $log)"
  timeout -k 5 "$cap" "$@" > "$OUT/$log" 2>&1
  rc=$?
  local took=$((SECONDS - start))
  if ((rc == 124 || rc == 137)); then
    note "== $name: TIMED OUT after ${took} s"
  else
    note "== $name: exit $rc, ${took} s"
  fi
  return $rc
}

note "== machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
if [ -d data/fashion-mnist ]; then
  note "data: $(ls data/fashion-mnist | tr '\n' ' ')"
else
  note "data: data/fashion-mnist is missing (carry [\"data\"]; see this script's header)"
fi

rm -rf /tmp/site
if ! section build 240 build.log \
    python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site .; then
  tail -30 "$OUT/build.log"; echo "BUILD FAILED (log: $OUT/build.log)"; exit 1
fi
export PYTHONPATH=/tmp/site
python3 -m fastnn info | tee "$OUT/info.txt"

# 1. The numbers the GPU engine exists for: throughput with the data resident on the GPU.
section "bench train --device cuda" 150 bench_train_cuda.log \
  python3 -m fastnn bench train --device cuda --batch 64 256 1024 --json "$OUT/train_cuda.json"
tail -22 "$OUT/bench_train_cuda.log"

# 2. Correctness on the GPU: ops and training (test_cuda.py, test_cuda_training.py, ...).
section "pytest -m gpu tests/" 120 pytest_gpu.log python3 -m pytest -q -m gpu tests/
tail -3 "$OUT/pytest_gpu.log" | tee -a "$SUMMARY"

# 3. The seed recipe end to end: 5 epochs of Fashion-MNIST, wall time and test accuracy.
section "bench train --recipe" 120 bench_recipe.log \
  python3 -m fastnn bench train --device cuda --recipe --json "$OUT/recipe_cuda.json"
tail -9 "$OUT/bench_recipe.log"

# 4. The user's command line.
section "python -m fastnn train --device cuda" 90 train_cli.log \
  python3 -m fastnn train --device cuda --dataset fashion-mnist --epochs 5 --verbose 2
tail -4 "$OUT/train_cli.log" | tee -a "$SUMMARY"

# 5. compute-sanitizer on a few small op cases (slow: the kernels run instrumented).
for tool in memcheck racecheck; do
  section "compute-sanitizer $tool" 60 "sanitizer_$tool.log" \
    compute-sanitizer --tool "$tool" --error-exitcode 9 python3 -m pytest -q -x -m gpu \
      tests/test_cuda.py -k "n1_ or 63 or 1x10 or 7, 13"
  note "   $tool: $(grep -c 'ERROR SUMMARY: 0 errors' "$OUT/sanitizer_$tool.log") clean summaries"
done

# 6. Each CUDA op alone against PyTorch's (fastnn.ops includes host<->device copies).
cat > "$OUT/ops_vs_torch.py" <<'PY'
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
section "CUDA ops against PyTorch CUDA (ms per call)" 45 ops_vs_torch.log \
  python3 "$OUT/ops_vs_torch.py"
cat "$OUT/ops_vs_torch.log" >> "$SUMMARY"

# 7. If time is left: the peers at their own defaults (TF32 tensor cores), batch 1024.
section "bench train --device cuda --tf32 (peers' defaults)" 60 bench_train_cuda_tf32.log \
  python3 -m fastnn bench train --device cuda --tf32 --batch 1024 --rounds 3 \
    --json "$OUT/train_cuda_tf32.json"

# The short summary, last.
echo
echo "===================== summary ($SECONDS s) ====================="
cat "$SUMMARY"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("train_cuda.json", "train_cuda_tf32.json"):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        print(f"{name}: missing"); continue
    report = json.load(open(path))
    print(f"\n{name} ({report['precision']}, {report['machine'].get('gpu', '?')}): images/s")
    for r in report["results"]:
        versus = "" if r["fastnn_ratio"] is None or r["contender"] == "fastnn" else \
            f"  fastnn/this {r['fastnn_ratio']:.2f}x"
        print(f"  batch {r['batch']:5}  {r['label']:38} {r['images_per_second']:>12,.0f}{versus}")
    for who, why in {**report["skipped"], **report["failed"]}.items():
        print(f"  not timed: {who}: {why}")
path = os.path.join(out, "recipe_cuda.json")
if os.path.exists(path):
    report = json.load(open(path))
    print("\nrecipe (5 epochs Fashion-MNIST, batch 64): wall seconds, test accuracy")
    for r in report["results"]:
        print(f"  {r['label']:38} {r['seconds']:8.2f} s  {r['test_accuracy']:.4f}")
    for who, why in {**report["skipped"], **report["failed"]}.items():
        print(f"  not timed: {who}: {why}")
else:
    print("recipe_cuda.json: missing")
PY
echo "== done: logs in $OUT"
