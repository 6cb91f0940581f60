"""``python -m fastnn bench ops``: each op and direction alone, at the seed CNN's shapes.

Contenders per op: ``fastnn.ops`` (the C++ kernels), ``fastnn.reference`` (the NumPy spec)
and the natural PyTorch equivalent when torch imports (NCHW, its own layout). Each is timed
with perf_counter in interleaved samples within a time budget; the table gives the best
sample's time per call (someone else's work only ever adds time) and the ratios (> 1: fastnn
faster), then the machine's SGEMM rate (NumPy's
``a @ b``) and the floor it sets for a training step.
"""

import argparse
import statistics
import sys
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from fastnn import ops, reference
from fastnn.bench import _common

DESCRIPTION = "Time each op and direction alone at the seed CNN's shapes: fastnn.ops against " \
              "fastnn.reference (NumPy) and PyTorch."
BATCH = 64
CONVS = [((BATCH, 28, 28, 1), (3, 3, 1, 32)), ((BATCH, 13, 13, 32), (3, 3, 32, 64)),
         ((BATCH, 5, 5, 64), (3, 3, 64, 64))]
POOLS = [(BATCH, 26, 26, 32), (BATCH, 11, 11, 64)]
DENSES = [(576, 64), (64, 10)]
RELU = (BATCH, 26, 26, 32)
CLASSES = 10
ADAM_PARAMETERS = 93_322  # the seed CNN's
GEMM = 1024

# Multiply-adds per image of the seed CNN's forward pass: conv 1-3, dense 1-2 (about 2.8 M).
# A training step does the forward, every weight gradient and every input gradient but
# the first layer's: 2 FLOP per multiply-add, about 16.4 MFLOP per image.
FORWARD_MACS = [26 * 26 * 9 * 32, 11 * 11 * 288 * 64, 3 * 3 * 576 * 64, 576 * 64, 64 * 10]
TRAIN_FLOP_PER_IMAGE = 2 * (3 * sum(FORWARD_MACS) - FORWARD_MACS[0])


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="python -m fastnn bench ops", description=DESCRIPTION)
    parser.add_argument("--filter", metavar="SUBSTRING",
                        help="only the ops whose 'op direction shape' contains SUBSTRING, "
                             "e.g. conv2d, backward, 13x13")
    parser.add_argument("--budget", type=_common.positive_float, default=0.3,
                        help="seconds of timing per op and contender (default: 0.3)")
    parser.add_argument("--samples", type=_common.positive_int, default=5,
                        help="timed samples per op and contender; the best is reported, "
                             "the median is in the JSON too (default: 5)")
    _common.add_runtime_arguments(parser)
    parser.set_defaults(run=main_args)
    return parser


def main(argv=None):
    return main_args(build_parser().parse_args(argv))


# ---------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------

class Case(NamedTuple):
    op: str
    direction: str
    shape: str
    flop: Optional[int]  # per call, where a GFLOP/s rate means something
    setup: Callable      # setup(rng, torch or None) -> {contender: run the op once}

    @property
    def name(self):
        return f"{self.op} {self.direction} {self.shape}"


def _shape(*shapes):
    return " ".join("x".join(map(str, s)) for s in shapes)


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _conv(x_shape, w_shape, backward):
    def setup(rng, torch):
        x, w = _normal(rng, x_shape), _normal(rng, w_shape, 0.1)
        b = np.zeros(w_shape[3], np.float32)
        if not backward:
            calls = {"fastnn": lambda: ops.conv2d(x, w, b),
                     "numpy": lambda: reference.conv2d(x, w, b)}
        else:
            dy = _normal(rng, reference.conv2d(x, w, b).shape)
            calls = {"fastnn": lambda: ops.conv2d_backward(x, w, dy),
                     "numpy": lambda: reference.conv2d_backward(x, w, dy)}
        if torch is not None:
            xt, bt = _nchw(torch, x), torch.from_numpy(b)
            wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))  # OIHW
            if not backward:
                calls["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt)
            else:
                dyt = _nchw(torch, dy)
                calls["torch"] = lambda: torch.ops.aten.convolution_backward(
                    dyt, xt, wt, [w_shape[3]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                    [True, True, True])
        return calls
    (n, h, wd, _), (kh, kw, cin, cout) = x_shape, w_shape
    macs = n * (h - kh + 1) * (wd - kw + 1) * kh * kw * cin * cout  # 'valid', stride 1
    # backward: the weight gradient and the input gradient, each as costly as the forward
    return Case("conv2d", "backward" if backward else "forward", _shape(x_shape, w_shape),
                (4 if backward else 2) * macs, setup)


def _pool(shape, backward):
    def setup(rng, torch):
        x = _normal(rng, shape)
        if not backward:
            calls = {"fastnn": lambda: ops.maxpool2d(x), "numpy": lambda: reference.maxpool2d(x)}
        else:
            dy = _normal(rng, reference.maxpool2d(x).shape)
            calls = {"fastnn": lambda: ops.maxpool2d_backward(x, dy),
                     "numpy": lambda: reference.maxpool2d_backward(x, dy)}
        if torch is not None:
            aten, xt = torch.ops.aten, _nchw(torch, x)

            def forward():  # the training forward: it keeps the argmax for the backward
                return aten.max_pool2d_with_indices(xt, [2, 2], [2, 2])
            if not backward:
                calls["torch"] = forward
            else:
                dyt, indices = _nchw(torch, dy), forward()[1]
                calls["torch"] = lambda: aten.max_pool2d_with_indices_backward(
                    dyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)
        return calls
    return Case("maxpool2d", "backward" if backward else "forward", _shape(shape), None, setup)


def _dense(n_in, n_out, backward):
    def setup(rng, torch):
        x, w = _normal(rng, (BATCH, n_in)), _normal(rng, (n_in, n_out), 0.1)
        b, dy = np.zeros(n_out, np.float32), _normal(rng, (BATCH, n_out))
        if not backward:
            calls = {"fastnn": lambda: ops.dense(x, w, b),
                     "numpy": lambda: reference.dense(x, w, b)}
        else:
            calls = {"fastnn": lambda: ops.dense_backward(x, w, dy),
                     "numpy": lambda: reference.dense_backward(x, w, dy)}
        if torch is not None:
            xt, bt, dyt = torch.from_numpy(x), torch.from_numpy(b), torch.from_numpy(dy)
            wt = torch.from_numpy(np.ascontiguousarray(w.T))  # nn.Linear's (out, in)
            if not backward:
                calls["torch"] = lambda: torch.nn.functional.linear(xt, wt, bt)
            else:
                calls["torch"] = lambda: (dyt @ wt, dyt.t() @ xt, dyt.sum(0))
        return calls
    macs = BATCH * n_in * n_out
    return Case("dense", "backward" if backward else "forward",
                _shape((BATCH, n_in), (n_in, n_out)), (4 if backward else 2) * macs, setup)


def _relu(backward):
    def setup(rng, torch):
        x, dy = _normal(rng, RELU), _normal(rng, RELU)
        calls = ({"fastnn": lambda: ops.relu_backward(x, dy),
                  "numpy": lambda: reference.relu_backward(x, dy)} if backward else
                 {"fastnn": lambda: ops.relu(x), "numpy": lambda: reference.relu(x)})
        if torch is not None:
            xt, dyt = _nchw(torch, x), _nchw(torch, dy)
            calls["torch"] = ((lambda: torch.ops.aten.threshold_backward(dyt, xt, 0))
                              if backward else (lambda: torch.relu(xt)))
        return calls
    return Case("relu", "backward" if backward else "forward", _shape(RELU), None, setup)


def _softmax_cross_entropy():
    def setup(rng, torch):
        logits = _normal(rng, (BATCH, CLASSES), 3.0)
        labels = rng.integers(0, CLASSES, BATCH).astype(np.int32)
        calls = {"fastnn": lambda: ops.softmax_cross_entropy(logits, labels),
                 "numpy": lambda: reference.softmax_cross_entropy(logits, labels)}
        if torch is not None:
            zt, yt = torch.from_numpy(logits), torch.from_numpy(labels.astype(np.int64))

            def loss_and_gradient():  # as a training step gets both: autograd
                z = zt.detach().requires_grad_()
                loss = torch.nn.functional.cross_entropy(z, yt)
                return loss, torch.autograd.grad(loss, z)[0]
            calls["torch"] = loss_and_gradient
        return calls
    return Case("softmax_xent", "fused", _shape((BATCH, CLASSES)), None, setup)


def _adam():
    def setup(rng, torch):
        param, grad = _normal(rng, ADAM_PARAMETERS, 0.1), _normal(rng, ADAM_PARAMETERS, 0.01)
        m, v = np.zeros_like(param), np.zeros_like(param)
        p2, m2, v2 = param.copy(), m.copy(), v.copy()
        calls = {"fastnn": lambda: ops.adam_update(param, grad, m, v, 10),
                 "numpy": lambda: reference.adam_update(p2, grad, m2, v2, 10)}
        if torch is not None:
            pt = torch.nn.Parameter(torch.from_numpy(param.copy()))
            pt.grad = torch.from_numpy(grad)
            calls["torch"] = torch.optim.Adam([pt], lr=1e-3, eps=1e-7).step
        return calls
    return Case("adam_update", "update", f"{ADAM_PARAMETERS} params", None, setup)


def _gemm():
    def setup(rng, torch):
        a, b = _normal(rng, (GEMM, GEMM)), _normal(rng, (GEMM, GEMM))
        calls = {"fastnn": lambda: ops.gemm(a, b), "numpy": lambda: a @ b}
        if torch is not None:
            at, bt = torch.from_numpy(a), torch.from_numpy(b)
            calls["torch"] = lambda: torch.mm(at, bt)
        return calls
    return Case("gemm", "forward", _shape((GEMM, GEMM), (GEMM, GEMM)), 2 * GEMM ** 3, setup)


def cases():
    return ([_conv(x, w, backward) for backward in (False, True) for x, w in CONVS]
            + [_pool(s, backward) for backward in (False, True) for s in POOLS]
            + [_dense(i, o, backward) for backward in (False, True) for i, o in DENSES]
            + [_relu(False), _relu(True), _softmax_cross_entropy(), _adam(), _gemm()])


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def time_op(calls, budget, samples, settle_seconds=_common.SETTLE_SECONDS):
    """Seconds per call of each contender, one list per contender: `samples` samples of `reps`
    calls each, interleaved across the contenders, `reps` chosen so that one contender takes
    about `budget`."""
    reps = {}
    for name, call in calls.items():
        call()  # warm-up: first-touch of buffers, lazy initialisation
        start = time.perf_counter()
        call()
        reps[name] = max(1, int(budget / samples / max(time.perf_counter() - start, 1e-7)))
    seconds = {name: [] for name in calls}
    previous = None
    for _ in range(samples):
        for name, call in calls.items():
            if previous not in (None, "fastnn"):  # NumPy's and PyTorch's threads spin on
                _common.settle(settle_seconds)
            previous = name
            start = time.perf_counter()
            for _ in range(reps[name]):
                call()
            seconds[name].append((time.perf_counter() - start) / reps[name])
    return seconds


def main_args(args):
    out = _common.output_stream(args)
    try:
        threads = _common.apply_runtime(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch, torch_skipped = _common.import_torch(threads)
    selected = [c for c in cases() if not args.filter or args.filter in c.name]
    if not selected:
        print(f"error: no op matches --filter {args.filter!r}", file=sys.stderr)
        return 2

    facts = _common.machine_facts(torch)
    print(f"fastnn bench ops: the seed CNN's ops at batch {BATCH}; best of {args.samples} "
          f"samples, about {args.budget} s per op and contender", file=out)
    _common.print_machine(facts, out)
    if torch_skipped:
        print(f"skipped PyTorch: {torch_skipped}", file=out)

    rng = np.random.default_rng(0)
    results = []
    for case in selected:
        samples = time_op(case.setup(rng, torch), args.budget, args.samples)
        seconds = {name: min(times) for name, times in samples.items()}
        result = {"op": case.op, "direction": case.direction, "shape": case.shape,
                  "ms": {name: s * 1e3 for name, s in seconds.items()},
                  "median_ms": {name: statistics.median(t) * 1e3 for name, t in samples.items()},
                  "speedup": {name: s / seconds["fastnn"] for name, s in seconds.items()
                              if name != "fastnn"}}
        if case.flop:
            result["gflops"] = {name: case.flop / s / 1e9 for name, s in seconds.items()}
        results.append(result)

    print(file=out)
    contenders = ["fastnn", "numpy"] + (["torch"] if torch is not None else [])
    headers = ["op", "direction", "shape"] + [f"{c} ms" for c in contenders] \
        + [f"{c}/fastnn" for c in contenders[1:]] + ["fastnn GFLOP/s"]
    rows = [[r["op"], r["direction"], r["shape"]]
            + [f"{r['ms'][c]:.3f}" for c in contenders]
            + [f"{r['speedup'][c]:.2f}" for c in contenders[1:]]
            + [f"{r['gflops']['fastnn']:.1f}" if "gflops" in r else ""] for r in results]
    _common.table(headers, rows, out, text_columns=3)

    report = {"benchmark": "ops", "batch": BATCH, "samples": args.samples,
              "budget_seconds": args.budget, "machine": facts, "results": results,
              "skipped": {"torch": torch_skipped} if torch_skipped else {}}
    gemm = next((r for r in results if r["op"] == "gemm"), None)
    if gemm is not None:
        sgemm = gemm["gflops"]["numpy"]
        floor = sgemm * 1e9 / TRAIN_FLOP_PER_IMAGE
        report["floor"] = {"sgemm_gflops": sgemm, "train_flop_per_image": TRAIN_FLOP_PER_IMAGE,
                           "train_images_per_second": floor}
        rates = ", ".join(f"{c} {gemm['gflops'][c]:.0f}" for c in contenders)
        print(f"\nGEMM {GEMM}^3, GFLOP/s: {rates}. The floor: a training step costs "
              f"{TRAIN_FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image; at the machine's SGEMM rate "
              f"(NumPy a @ b, {sgemm:.0f} GFLOP/s) that is {floor:,.0f} images/s.", file=out)
    if args.json:
        _common.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
