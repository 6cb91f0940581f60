"""What both benchmarks share: the runtime options (--isa, --threads, --json), the optional
PyTorch import, the machine facts printed above each table, and plain-text tables.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import fastnn


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


# How long the thread pools of NumPy's OpenBLAS and of PyTorch keep their threads spinning
# after a call: measured here, fastnn's 1024^3 GEMM on 2 threads ran at 74 GFLOP/s right
# after a NumPy matmul, still 78 after 50 ms, and 133 after 200 ms. A contender timed right
# after another would pay for the other's idle threads.
SETTLE_SECONDS = 0.25


def settle(seconds=SETTLE_SECONDS):
    """Let the previous contender's spinning worker threads go to sleep."""
    time.sleep(seconds)


def add_runtime_arguments(parser):
    parser.add_argument("--isa", choices=("portable", "avx2", "avx512"),
                        help="force fastnn's CPU kernel path (default: the best this CPU has)")
    parser.add_argument("--threads", type=positive_int,
                        help="threads for fastnn and PyTorch (default: fastnn's, the cores "
                             "this process may use); NumPy's BLAS follows OPENBLAS_NUM_THREADS")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the results as JSON to PATH ('-': to stdout, and the "
                             "table goes to stderr)")


def apply_runtime(args):
    """Set fastnn's ISA path and thread count from the options; returns the thread count."""
    if args.isa:
        fastnn.set_cpu_isa(args.isa)  # ValueError when this CPU lacks it
    if args.threads:
        fastnn.set_num_threads(args.threads)
    return fastnn.get_num_threads()


def output_stream(args):
    """Where the table goes: stdout, unless the JSON does."""
    return sys.stderr if args.json == "-" else sys.stdout


def write_json(path, report):
    text = json.dumps(report, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as file:
            file.write(text)


def import_torch(threads):
    """(torch, None) with torch set to ``threads`` threads, or (None, why it is skipped)."""
    try:
        import torch
    except ImportError as error:
        return None, f"PyTorch is not installed ({error})"
    torch.set_num_threads(threads)
    return torch, None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(torch=None):
    """The facts that make a run's numbers comparable with another's."""
    info = fastnn.build_info()
    facts = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        # The machine may be shared: a busy core slows every contender, BLAS threads most.
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "fastnn": info["version"],
        "cpu_isa": info["cpu_isa"],
        "cpu_isa_available": info["cpu_isa_available"],
        "num_threads": info["num_threads"],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")
                              or os.environ.get("OMP_NUM_THREADS") or "default",
        "torch": torch.__version__ if torch is not None else None,
    }
    if torch is not None:
        facts["torch_threads"] = torch.get_num_threads()
    return facts


def print_machine(facts, out):
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, load {facts['load_average_1min']}",
          file=out)
    print(f"fastnn {facts['fastnn']}: cpu_isa {facts['cpu_isa']} (available: "
          f"{', '.join(facts['cpu_isa_available'])}), num_threads {facts['num_threads']}",
          file=out)
    torch = (f"torch {facts['torch']} ({facts['torch_threads']} threads)" if facts["torch"]
             else "torch not installed")
    print(f"numpy {facts['numpy']} (BLAS threads: {facts['numpy_blas_threads']}), {torch}",
          file=out)


def table(headers, rows, out, text_columns=1):
    """Print rows under headers: the first text_columns left-aligned, the numbers right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i < text_columns else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(headers), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print(line(row), file=out)
