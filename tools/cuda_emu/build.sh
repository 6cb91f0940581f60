#!/usr/bin/env bash
# build.sh — builds fastnn._C with its CUDA backend compiled by g++ against the host
# emulator (tools/cuda_emu), through CMake itself (FASTNN_CUDA=EMULATE, emulate.cmake),
# and installs a runnable fastnn package into a site directory; the build is incremental.
#
#   bash tools/cuda_emu/build.sh [--asan] [--site DIR] [--build-dir DIR] [-j N] [--selftest]
#   PYTHONPATH=/tmp/fastnn_emu/site python -m pytest -m gpu tests/test_ops.py
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-/work/venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
asan=0
selftest=0
jobs=2
site=""
build=""

while [ $# -gt 0 ]; do
  case "$1" in
    --asan) asan=1 ;;
    --selftest) selftest=1 ;;
    --site) site="$2"; shift ;;
    --build-dir) build="$2"; shift ;;
    -j) jobs="$2"; shift ;;
    -j*) jobs="${1#-j}" ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# The sanitized build gets its own directories, so both builds can stay installed.
variant=$([ "$asan" = 1 ] && echo "-asan" || echo "")
site="${site:-/tmp/fastnn_emu/site$variant}"
build="${build:-/tmp/fastnn_emu/build$variant}"
mkdir -p "$build" "$site"

version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n 1)"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFASTNN_CUDA=EMULATE \
  -DFASTNN_EMU_SANITIZE="$([ "$asan" = 1 ] && echo ON || echo OFF)" \
  -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" \
  -DSKBUILD_PROJECT_VERSION="$version" > "$build/configure.log" \
  || { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j "$jobs"
library="$(find "$build" -maxdepth 1 -name '_C*.so' | head -n 1)"
[ -n "$library" ] || { echo "build.sh: no _C*.so in $build" >&2; exit 1; }

# The package: python/fastnn as it is now, plus the emulated extension.
rm -rf "$site/fastnn"
cp -r "$repo/python/fastnn" "$site/fastnn"
find "$site/fastnn" \( -name '__pycache__' -o -name '_C*.so' \) -prune -exec rm -rf {} +
cp "$library" "$site/fastnn/"
# An editable install of fastnn (pip install -e) puts an import hook in front of sys.path
# that would load the real extension instead; this site's sitecustomize removes it.
cat > "$site/sitecustomize.py" <<'EOF_PY'
"""Written by tools/cuda_emu/build.sh: makes `import fastnn` load the CUDA-emulated build
in this directory even where an editable install of fastnn registers an import hook."""
import sys

sys.meta_path[:] = [f for f in sys.meta_path
                    if not (type(f).__module__.startswith("_editable") and
                            "fastnn" in type(f).__module__)]
EOF_PY
echo "installed $site/fastnn ($(basename "$library"), CUDA emulated)"

# Python is not instrumented: libasan must be loaded first, and libstdc++ with it, or ASan's
# __cxa_throw interceptor finds no real function and any C++ exception aborts.
preload=""
if [ "$asan" = 1 ]; then
  preload="LD_PRELOAD=\"$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so.6)\" "
fi
env_prefix="${preload}PYTHONPATH=$site"
if [ "$asan" = 1 ]; then
  env_prefix="$env_prefix ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1"
fi

if [ "$selftest" = 1 ]; then
  exe="$build/selftest"
  "$python" "$here/transform.py" --line "$here/selftest.cu" "$build/selftest.cu"
  flags=(-std=gnu++17 -O1 -g -I "$here" -pthread)
  if [ "$asan" = 1 ]; then
    flags+=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  fi
  g++ "${flags[@]}" -x c++ "$build/selftest.cu" -o "$exe"
  ASAN_OPTIONS=detect_leaks=0 FASTNN_EMU_QUIET=1 "$exe"
fi

echo "run the CUDA tests on the emulator:"
echo "  $env_prefix $python -m pytest -q -m gpu tests/test_ops.py"
if [ "$asan" = 1 ]; then
  echo "(ASan and UBSan stop the process at the first error and print it to stderr: add -s"
  echo " to pytest so the report is not captured, or ASAN_OPTIONS=...:log_path=/tmp/asan.)"
fi
