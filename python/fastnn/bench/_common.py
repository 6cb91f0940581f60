"""What both benchmarks share: the runtime options (--isa, --threads, --json), the optional
PyTorch and JAX imports, the machine (and GPU) facts printed above each table, and
plain-text tables.
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


def import_jax(device):
    """(jax, its device, None) for device 'cpu' or 'cuda', or (None, None, why it is skipped)."""
    # By default JAX takes 75% of the GPU's memory at its first use; it shares the GPU here.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except ImportError as error:
        return None, None, f"JAX is not installed ({error})"
    try:
        return jax, jax.devices("cpu" if device == "cpu" else "gpu")[0], None
    except RuntimeError as error:
        return None, None, f"JAX {jax.__version__} has no {device.upper()} backend ({error})"


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


def device_facts(torch=None, jax=None):
    """The GPU side of the facts: the device, the CUDA and cuDNN that PyTorch uses, JAX's."""
    info = fastnn.build_info()
    facts = {"fastnn_cuda_devices": info.get("cuda_device_names") or [],
             "fastnn_cuda_runtime": info.get("cuda_runtime_version")}
    if torch is not None and torch.cuda.is_available():
        facts.update(gpu=torch.cuda.get_device_name(0), torch_cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version())
    if jax is not None:
        facts.update(jax=jax.__version__, jax_devices=[str(d) for d in jax.devices()])
    return facts


def print_device(facts, out):
    gpu = facts.get("gpu") or ", ".join(facts["fastnn_cuda_devices"]) or "no GPU seen"
    torch = (f"; torch CUDA {facts['torch_cuda']}, cuDNN {facts['cudnn']}"
             if facts.get("torch_cuda") else "")
    jax = (f"; jax {facts['jax']} ({', '.join(facts['jax_devices'])})" if facts.get("jax")
           else "; jax not available")
    print(f"gpu: {gpu}; fastnn CUDA runtime {facts['fastnn_cuda_runtime']}{torch}{jax}",
          file=out)


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
