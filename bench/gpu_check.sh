#!/usr/bin/env bash
# gpu_check.sh — the whole device check in one call on the lent GPU machine (DESIGN.md):
# see that a GPU is visible (first, in seconds: a machine without one fails before building),
# build fastnn there and see that it finds the GPU, time training on the GPU against PyTorch
# and JAX (resident data, then the 5-epoch Fashion-MNIST recipe), run the GPU tests (plain and
# under compute-sanitizer), and time each CUDA kernel against PyTorch's (bench ops --device
# cuda). Most important numbers first; every section has its own timeout, clipped to what is
# left of GPU_CHECK_BUDGET seconds (default 570: the device call's limit is 600). Logs and
# JSON go to $OUT (or ./gpu_check_out).
#
# Every section is judged by its real outcome (bench/gpu_check_judge.py): pytest must exit 0
# having run tests, none failed, errored or skipped; a benchmark must exit 0 having timed
# fastnn and PyTorch. "0 tests ran", skips, no compute-sanitizer, and fastnn seeing no GPU
# while torch does are FAILs. The table comes last, one row per section:
#   section | PASS / FAIL / SKIPPED(budget) | seconds | key figure
# and the exit status is 1 if a section FAILed or a required one was skipped for the budget.
#
# Fashion-MNIST travels in the git-ignored folder data/ (the device machine has no network;
# the loader finds $FASTNN_DATA/fashion-mnist/). Populate it here once (30 MB):
#   ls /usr/share/datasets/fashion-mnist || apt-get install -y dataset-fashion-mnist
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# then call the device with  command: bash bench/gpu_check.sh   carry: ["data"]
# Without data/ the throughput bench uses random images, and the recipe, the training CLI
# and the Fashion-MNIST GPU test FAIL ("dataset not found", a skip).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-$PWD/gpu_check_out}"
BUDGET="${GPU_CHECK_BUDGET:-570}"
SITE="${GPU_CHECK_SITE:-/tmp/site}"  # where fastnn is installed (replaced at each run)
JUDGE="$PWD/bench/gpu_check_judge.py"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.xml "$OUT"/*.log  # an earlier run's reports must not be judged
SUMMARY="$OUT/summary.txt"
ROWS="$OUT/sections.tsv"
: > "$SUMMARY"
: > "$ROWS"
export FASTNN_DATA="$PWD/data" FASTNN_OFFLINE=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX shares the GPU with PyTorch and fastnn

# The GPU tests compute-sanitizer runs: every op family of the one op harness on its small,
# awkward cases (batch 1, odd sizes; 29 tests; of the 17-element cases with a rate, rate 0.5
# only), instrumented kernels being slow.
# tests/test_gpu_check.py checks that this expression is valid and selects them.
SANITIZER_TESTS=(tests/test_ops.py)
SANITIZER_K="n1_ or 7x13x5 or 63x100x17 or 63x10- or (cuda-17 and not cuda-17-0.) or cuda-17-0.5"

note() { echo "$*" | tee -a "$SUMMARY"; }

# add_row NAME STATUS SECONDS FIGURE [optional]: one row of the final table.
add_row() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$ROWS"
  note "== $1: $2 (${3} s) $4"
}

last_status() { tail -1 "$ROWS" | cut -f2; }

print_table() {
  echo
  echo "===================== gpu_check: $SECONDS s ====================="
  python3 "$JUDGE" table "$ROWS"
}

# run_section [--optional] NAME CAP LOG COMMAND...: run COMMAND under a timeout of CAP seconds
# (less if the budget is nearly spent), output to $OUT/LOG. Returns 0 when it ran (its exit
# status in $RC, its seconds in $TOOK), 1 when it did not: the budget is spent (row
# SKIPPED(budget)) or an earlier section blocks it ($BLOCKED: row FAIL).
BLOCKED=""
run_section() {
  OPTIONAL=""
  if [ "$1" = --optional ]; then OPTIONAL=optional; shift; fi
  NAME=$1 LOG=$3 RC=0 TOOK=0 CAP=$2
  local start=$SECONDS left
  shift 3
  if [ -n "$BLOCKED" ]; then add_row "$NAME" FAIL 0 "not run: $BLOCKED" "$OPTIONAL"; return 1; fi
  left=$((BUDGET - SECONDS - 10))
  if ((left < 20)); then
    add_row "$NAME" "SKIPPED(budget)" 0 "$((BUDGET - SECONDS)) s of ${BUDGET} s left" "$OPTIONAL"
    return 1
  fi
  ((CAP > left)) && CAP=$left
  echo "== $NAME (limit ${CAP} s, log $LOG)"
  timeout -k 5 "$CAP" "$@" > "$OUT/$LOG" 2>&1
  RC=$?
  TOOK=$((SECONDS - start))
  return 0
}

# judge_section KIND [JUDGE ARGS...]: the verdict on the section run_section just ran, as a row.
judge_section() {
  local kind=$1 verdict status figure
  shift
  if ((RC == 124 || RC == 137)); then
    add_row "$NAME" FAIL "$TOOK" "timed out after ${TOOK} s (limit ${CAP} s)" "$OPTIONAL"
    return
  fi
  verdict=$(python3 "$JUDGE" "$kind" --rc "$RC" --log "$OUT/$LOG" "$@" 2>&1)
  status=${verdict%%$'\t'*}
  figure=${verdict#*$'\t'}
  if [ "$status" != PASS ] && [ "$status" != FAIL ]; then
    status=FAIL figure="the judge failed: $(echo "$verdict" | tail -1)"
  fi
  add_row "$NAME" "$status" "$TOOK" "$figure" "$OPTIONAL"
}

# ---- 0. Is a GPU visible? Before anything else, and within seconds ------------------------
# nvidia-smi (the driver's view) and torch (a CUDA runtime's view), each under a short timeout:
# at most ~50 s on a machine where both hang, a second or two where neither exists.
start=$SECONDS
seen_by="" seen="" smi="" why=()
if command -v nvidia-smi > /dev/null 2>&1; then
  smi=$(timeout -k 2 15 nvidia-smi -L 2>&1)
  rc=$?
  count=$(grep -c '^GPU [0-9]' <<< "$smi")
  if ((rc == 0 && count > 0)); then
    seen_by="nvidia-smi"
    seen="nvidia-smi: $count GPU(s) ($(grep -m1 '^GPU [0-9]' <<< "$smi" | sed 's/ (UUID.*//'))"
  else
    why+=("nvidia-smi -L: exit $rc, $(head -c 200 <<< "$smi" | tr '\n' ' ')")
  fi
else
  why+=("nvidia-smi: not found on PATH")
fi
torch_says=$(timeout -k 2 30 python3 -c 'import torch
print(torch.cuda.is_available(), torch.cuda.device_count(), torch.__version__)' 2>&1)
rc=$?
read -r torch_ok torch_count torch_version <<< "$(tail -1 <<< "$torch_says")"
if ((rc == 0)) && [ "$torch_ok" = True ]; then
  seen_by="torch"  # torch's view decides "fastnn sees no GPU while torch does"
  seen="${seen:+$seen; }torch $torch_version: $torch_count CUDA device(s)"
elif ((rc == 124 || rc == 137)); then
  why+=("torch: timed out after 30 s")
else
  why+=("torch: $(tail -1 <<< "$torch_says")")
fi
printf '%s\n' "$smi" "$torch_says" > "$OUT/gpu_visible.log"
if [ -z "$seen_by" ]; then
  message="no GPU is visible: $(printf '%s; ' "${why[@]}")"
  message=${message%; }
  add_row "GPU visible" FAIL $((SECONDS - start)) "$message"
  print_table
  echo "gpu_check: $message; nothing was built" >&2
  exit 1
fi
add_row "GPU visible" PASS $((SECONDS - start)) "$seen"

if command -v nvidia-smi > /dev/null 2>&1; then
  note "machine: $(timeout -k 2 15 nvidia-smi \
    --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -3)"
fi
if [ -d data/fashion-mnist ]; then
  note "data: $(cd data/fashion-mnist && echo *)"
else
  note "data: data/fashion-mnist is missing (carry [\"data\"]; see this script's header)"
fi

# ---- 1. Build, and fastnn's own view of the GPU -------------------------------------------
rm -rf "$SITE"
if run_section build 240 build.log \
    python3 -m pip install -q --no-build-isolation --no-deps --target "$SITE" .; then
  judge_section build
fi
if [ "$(last_status)" != PASS ]; then
  tail -30 "$OUT/build.log" 2> /dev/null
  BLOCKED="no build (log: $OUT/build.log)"
fi
export PYTHONPATH="$SITE"
if run_section "fastnn sees the GPU" 60 fastnn_gpu.log \
    python3 -c 'import json, fastnn; print(json.dumps(fastnn.build_info()))'; then
  judge_section fastnn-gpu --seen-by "$seen_by"
  python3 -m fastnn info > "$OUT/info.txt" 2>&1 && cat "$OUT/info.txt"
fi
if [ -z "$BLOCKED" ] && [ "$(last_status)" != PASS ]; then
  BLOCKED="fastnn sees no GPU"
fi

# ---- 2. The numbers the GPU engine exists for: throughput with the data resident -----------
run_section "bench train --device cuda" 150 bench_train_cuda.log \
    python3 -m fastnn bench train --device cuda --batch 64 256 1024 --json "$OUT/train_cuda.json" \
  && judge_section train --report "$OUT/train_cuda.json"

# ---- 3. Correctness on the GPU: the op harness's cuda backend, training, ... -------------
# (The emulator's fault-injection tests, marked `emulator`, cannot run on a real GPU.)
run_section "pytest -m gpu tests/" 120 pytest_gpu.log \
    python3 -m pytest -q -m "gpu and not emulator" -p no:cacheprovider \
    --junitxml "$OUT/pytest_gpu.xml" tests/ \
  && judge_section pytest --report "$OUT/pytest_gpu.xml"
tail -3 "$OUT/pytest_gpu.log" 2> /dev/null

# ---- 4. The seed recipe end to end: 5 epochs of Fashion-MNIST, wall time and test accuracy -
run_section "bench train --recipe" 120 bench_recipe.log \
    python3 -m fastnn bench train --device cuda --recipe --json "$OUT/recipe_cuda.json" \
  && judge_section recipe --report "$OUT/recipe_cuda.json"

# ---- 5. The user's command line ------------------------------------------------------------
run_section "python -m fastnn train --device cuda" 90 train_cli.log \
    python3 -m fastnn train --device cuda --dataset fashion-mnist --epochs 5 --verbose 2 \
      --json "$OUT/train_cli.json" \
  && judge_section cli --report "$OUT/train_cli.json"

# ---- 6. compute-sanitizer on the small op cases (slow: the kernels run instrumented) -------
SANITIZER=$(command -v compute-sanitizer)
for candidate in /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda/compute-sanitizer/compute-sanitizer \
    "$(dirname "$(command -v nvcc || echo /none/nvcc)")/compute-sanitizer"; do
  [ -z "$SANITIZER" ] && [ -x "$candidate" ] && SANITIZER=$candidate
done
for tool in memcheck racecheck; do
  if [ -z "$SANITIZER" ]; then
    if [ -n "$BLOCKED" ]; then reason="not run: $BLOCKED"; else
      reason="no compute-sanitizer (not on PATH, nor in /usr/local/cuda/bin or beside nvcc)"
    fi
    add_row "compute-sanitizer $tool" FAIL 0 "$reason"
    continue
  fi
  run_section "compute-sanitizer $tool" 60 "sanitizer_$tool.log" \
      "$SANITIZER" --tool "$tool" --error-exitcode 9 python3 -m pytest -q -x -m gpu \
        -p no:cacheprovider --junitxml "$OUT/sanitizer_$tool.xml" "${SANITIZER_TESTS[@]}" \
        -k "$SANITIZER_K" \
    && judge_section sanitizer --report "$OUT/sanitizer_$tool.xml"
done

# ---- 7. Each CUDA kernel alone against PyTorch's, on device-resident data -----------------
run_section "bench ops --device cuda" 60 bench_ops_cuda.log \
    python3 -m fastnn bench ops --device cuda --budget 0.2 --json "$OUT/ops_cuda.json" \
  && judge_section ops --report "$OUT/ops_cuda.json"

# ---- 8. If time is left: the peers at their own defaults (TF32 tensor cores), batch 1024 ---
run_section --optional "bench train --device cuda --tf32 (peers' defaults)" 60 \
    bench_train_cuda_tf32.log \
    python3 -m fastnn bench train --device cuda --tf32 --batch 1024 --rounds 3 \
      --json "$OUT/train_cuda_tf32.json" \
  && judge_section train --report "$OUT/train_cuda_tf32.json"

# ---- The details, then the table, last ----------------------------------------------------
echo
echo "===================== details ====================="
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
path = os.path.join(out, "ops_cuda.json")
if os.path.exists(path):
    report = json.load(open(path))
    print("\nbench ops --device cuda: ms per call (kernel time), torch/fastnn > 1: fastnn faster")
    for r in report["results"]:
        ms = r["ms"]
        torch = f"{ms['torch']:9.4f}  {r['speedup']['torch']:6.2f}" if "torch" in ms else ""
        print(f"  {r['op'] + ' ' + r['direction']:24} {r['shape']:28} {ms['fastnn']:9.4f}  {torch}")
    for who, why in {**report["skipped"], **report["failed"]}.items():
        print(f"  not timed: {who}: {why}")
else:
    print("ops_cuda.json: missing")
PY
echo "== logs in $OUT"
print_table
