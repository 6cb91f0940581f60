"""``python -m fastnn bench ops``: each op and direction alone, at the seed CNN's shapes.

``--device cpu`` (the default): ``fastnn.ops`` (the C++ kernels), ``fastnn.reference`` (the
NumPy spec) and the natural PyTorch equivalent when torch imports (NCHW, its own layout),
each timed with perf_counter in interleaved samples within a time budget, every call from
Python with its argument conversion. Where ``fastnn._C`` has the kernel timer, a column adds
fastnn's kernel time alone.

``--device cuda``: fastnn's CUDA kernels on data already on the GPU against PyTorch's on
torch tensors already on the GPU, float32 throughout (TF32 off). fastnn's time comes from
``fastnn._C.time_kernels(R)``: each op call uploads its inputs once, runs its kernel(s)
once untimed and then R times between CUDA events on its stream, and
``_C.last_kernel_seconds()`` gives the mean per run; no transfer is in it. PyTorch's: one
untimed call, then R calls between CUDA events (its eager dispatch is in the time where a
kernel is shorter than a launch). NumPy is no contender there: each fastnn result is checked
once against ``fastnn.reference``.

The table gives the best sample's time per call (someone else's work only ever adds time)
and the ratios contender/fastnn (> 1: fastnn faster), then the SGEMM rate (NumPy's ``a @ b``
on the CPU, PyTorch's ``torch.mm`` on the GPU) and the floor it sets for a training step.
"""

import argparse
import math
import statistics
import sys
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

import fastnn
from fastnn import _C, ops, reference, reference_net
from fastnn.bench import _common

DESCRIPTION = "Time each op and direction alone at the seed CNN's shapes: fastnn.ops against " \
              "fastnn.reference (NumPy) and PyTorch on the CPU, or (--device cuda) fastnn's " \
              "CUDA kernels against PyTorch's on device-resident data."
BATCH = 64
CONVS = [((28, 28, 1), (3, 3, 1, 32)), ((13, 13, 32), (3, 3, 32, 64)),
         ((5, 5, 64), (3, 3, 64, 64))]
POOLS = [(26, 26, 32), (11, 11, 64)]
DENSES = [(576, 64), (64, 10)]
RELU = (26, 26, 32)
CLASSES = 10
ADAM_PARAMETERS = 93_322  # the seed CNN's
DROPOUT_RATE = 0.5
SGD_MOMENTUM = 0.9
GEMM = 1024
TOLERANCE = 1e-4  # the check of each result: a gross-error check (the tests hold 1e-5)
MAX_REPEATS = 100_000  # kernel runs per timed sample

# Multiply-adds per image of the seed CNN's forward pass: conv 1-3, dense 1-2 (about 2.8 M).
# A training step does the forward, every weight gradient and every input gradient but
# the first layer's: 2 FLOP per multiply-add, about 16.4 MFLOP per image.
FORWARD_MACS = [26 * 26 * 9 * 32, 11 * 11 * 288 * 64, 3 * 3 * 576 * 64, 576 * 64, 64 * 10]
TRAIN_FLOP_PER_IMAGE = 2 * (3 * sum(FORWARD_MACS) - FORWARD_MACS[0])


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="python -m fastnn bench ops", description=DESCRIPTION)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: fastnn's CPU kernels against NumPy and PyTorch on the CPU; "
                             "cuda: fastnn's CUDA kernels against PyTorch's, both on data "
                             "resident on the GPU, kernel time only (default: cpu)")
    parser.add_argument("--batch", type=_common.positive_int, nargs="+", default=[BATCH],
                        help=f"batch sizes of the batched ops (default: {BATCH}, the seed "
                             f"CNN's); GEMM and Adam have none")
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
    setup: Callable      # setup(rng, torch or None, device) -> {contender: run the op once}

    @property
    def name(self):
        return f"{self.op} {self.direction} {self.shape}"


# Each setup returns {"fastnn": ..., "numpy": ..., "torch": ...} (torch only with torch),
# each a call that runs the op once. fastnn's runs on `device`, its inputs NumPy arrays;
# torch's takes tensors already on `device`. fastnn's and NumPy's return the op's results
# in the same structure, so that one can check the other.

def _shape(*shapes):
    return " ".join("x".join(map(str, s)) for s in shapes)


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _tensor(torch, array, device):
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _nchw(torch, x, device):
    return _tensor(torch, x.transpose(0, 3, 1, 2), device)


def _conv(x_shape, w_shape, backward):
    def setup(rng, torch, device):
        x, w = _normal(rng, x_shape), _normal(rng, w_shape, 0.1)
        b = np.zeros(w_shape[3], np.float32)
        if not backward:
            calls = {"fastnn": lambda: ops.conv2d(x, w, b, device=device),
                     "numpy": lambda: reference.conv2d(x, w, b)}
        else:
            dy = _normal(rng, reference.conv2d(x, w, b).shape)
            calls = {"fastnn": lambda: ops.conv2d_backward(x, w, dy, device=device),
                     "numpy": lambda: reference.conv2d_backward(x, w, dy)}
        if torch is not None:
            xt, bt = _nchw(torch, x, device), _tensor(torch, b, device)
            wt = _tensor(torch, w.transpose(3, 2, 0, 1), device)  # OIHW
            if not backward:
                calls["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt)
            else:
                dyt = _nchw(torch, dy, device)
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
    def setup(rng, torch, device):
        x = _normal(rng, shape)
        if not backward:
            calls = {"fastnn": lambda: ops.maxpool2d(x, device=device),
                     "numpy": lambda: reference.maxpool2d(x)}
        else:
            dy = _normal(rng, reference.maxpool2d(x).shape)
            calls = {"fastnn": lambda: ops.maxpool2d_backward(x, dy, device=device),
                     "numpy": lambda: reference.maxpool2d_backward(x, dy)}
        if torch is not None:
            aten, xt = torch.ops.aten, _nchw(torch, x, device)

            def forward():  # the training forward: it keeps the argmax for the backward
                return aten.max_pool2d_with_indices(xt, [2, 2], [2, 2])
            if not backward:
                calls["torch"] = forward
            else:
                dyt, indices = _nchw(torch, dy, device), forward()[1]
                calls["torch"] = lambda: aten.max_pool2d_with_indices_backward(
                    dyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)
        return calls
    return Case("maxpool2d", "backward" if backward else "forward", _shape(shape), None, setup)


def _dense(batch, n_in, n_out, backward):
    def setup(rng, torch, device):
        x, w = _normal(rng, (batch, n_in)), _normal(rng, (n_in, n_out), 0.1)
        b, dy = np.zeros(n_out, np.float32), _normal(rng, (batch, n_out))
        if not backward:
            calls = {"fastnn": lambda: ops.dense(x, w, b, device=device),
                     "numpy": lambda: reference.dense(x, w, b)}
        else:
            calls = {"fastnn": lambda: ops.dense_backward(x, w, dy, device=device),
                     "numpy": lambda: reference.dense_backward(x, w, dy)}
        if torch is not None:
            xt, bt = _tensor(torch, x, device), _tensor(torch, b, device)
            dyt = _tensor(torch, dy, device)
            wt = _tensor(torch, w.T, device)  # nn.Linear's (out, in)
            if not backward:
                calls["torch"] = lambda: torch.nn.functional.linear(xt, wt, bt)
            else:
                calls["torch"] = lambda: (dyt @ wt, dyt.t() @ xt, dyt.sum(0))
        return calls
    macs = batch * n_in * n_out
    return Case("dense", "backward" if backward else "forward",
                _shape((batch, n_in), (n_in, n_out)), (4 if backward else 2) * macs, setup)


def _relu(shape, backward):
    def setup(rng, torch, device):
        x, dy = _normal(rng, shape), _normal(rng, shape)
        calls = ({"fastnn": lambda: ops.relu_backward(x, dy, device=device),
                  "numpy": lambda: reference.relu_backward(x, dy)} if backward else
                 {"fastnn": lambda: ops.relu(x, device=device),
                  "numpy": lambda: reference.relu(x)})
        if torch is not None:
            xt, dyt = _nchw(torch, x, device), _nchw(torch, dy, device)
            calls["torch"] = ((lambda: torch.ops.aten.threshold_backward(dyt, xt, 0))
                              if backward else (lambda: torch.relu(xt)))
        return calls
    return Case("relu", "backward" if backward else "forward", _shape(shape), None, setup)


def _softmax_cross_entropy(batch):
    def setup(rng, torch, device):
        logits = _normal(rng, (batch, CLASSES), 3.0)
        labels = rng.integers(0, CLASSES, batch).astype(np.int32)
        calls = {"fastnn": lambda: ops.softmax_cross_entropy(logits, labels, device=device),
                 "numpy": lambda: reference.softmax_cross_entropy(logits, labels)}
        if torch is not None:
            zt = _tensor(torch, logits, device)
            yt = _tensor(torch, labels.astype(np.int64), device)

            def loss_and_gradient():  # as a training step gets both: autograd
                z = zt.detach().requires_grad_()
                loss = torch.nn.functional.cross_entropy(z, yt)
                return loss, torch.autograd.grad(loss, z)[0]
            calls["torch"] = loss_and_gradient
        return calls
    return Case("softmax_xent", "fused", _shape((batch, CLASSES)), None, setup)


def _torch_optimizer(torch, kind, parameter, device, **options):
    """A torch optimizer over one parameter; on CUDA its fused form (one launch, as fastnn's)
    where this torch has one."""
    if device == "cuda":
        try:
            return kind([parameter], fused=True, **options)
        except (TypeError, ValueError, RuntimeError):
            pass
    return kind([parameter], **options)


def _softmax(batch):
    def setup(rng, torch, device):
        logits = _normal(rng, (batch, CLASSES), 3.0)
        calls = {"fastnn": lambda: ops.softmax(logits, device=device),
                 "numpy": lambda: reference.softmax(logits)}
        if torch is not None:
            zt = _tensor(torch, logits, device)
            calls["torch"] = lambda: torch.softmax(zt, dim=1)
        return calls
    return Case("softmax", "forward", _shape((batch, CLASSES)), None, setup)


def _dropout(shape):
    def setup(rng, torch, device):
        x = _normal(rng, shape)

        def numpy_dropout():  # the mask of layer 0 at step 0 of seed 0, as fastnn draws it
            keep = reference_net.dropout_keep_mask(x.shape, DROPOUT_RATE, 0, 0, 0)
            mask = keep.astype(np.float32) / np.float32(1 - DROPOUT_RATE)
            return x * mask, mask
        calls = {"fastnn": lambda: ops.dropout(x, DROPOUT_RATE, device=device),
                 "numpy": numpy_dropout}
        if torch is not None:
            xt = _nchw(torch, x, device)
            calls["torch"] = lambda: torch.nn.functional.dropout(xt, DROPOUT_RATE, True)
        return calls
    return Case("dropout", "forward", _shape(shape), None, setup)


def _sgd():
    def setup(rng, torch, device):
        param, grad = _normal(rng, ADAM_PARAMETERS, 0.1), _normal(rng, ADAM_PARAMETERS, 0.01)
        velocity = np.zeros_like(param)
        p2, v2 = param.copy(), velocity.copy()

        def fastnn_step():
            ops.sgd_update(param, grad, velocity, 0.01, SGD_MOMENTUM, device=device)
            return param, velocity

        def numpy_step():
            reference.sgd_update(p2, grad, v2, 0.01, SGD_MOMENTUM)
            return p2, v2
        calls = {"fastnn": fastnn_step, "numpy": numpy_step}
        if torch is not None:
            pt = torch.nn.Parameter(_tensor(torch, param.copy(), device))
            pt.grad = _tensor(torch, grad, device)
            calls["torch"] = _torch_optimizer(torch, torch.optim.SGD, pt, device, lr=0.01,
                                              momentum=SGD_MOMENTUM).step
        return calls
    return Case("sgd_update", "update", f"{ADAM_PARAMETERS} params", None, setup)


def _adam():
    def setup(rng, torch, device):
        param, grad = _normal(rng, ADAM_PARAMETERS, 0.1), _normal(rng, ADAM_PARAMETERS, 0.01)
        m, v = np.zeros_like(param), np.zeros_like(param)
        p2, m2, v2 = param.copy(), m.copy(), v.copy()

        def fastnn_step():  # in place; returns the state, as the check compares it
            ops.adam_update(param, grad, m, v, 10, device=device)
            return param, m, v

        def numpy_step():
            reference.adam_update(p2, grad, m2, v2, 10)
            return p2, m2, v2
        calls = {"fastnn": fastnn_step, "numpy": numpy_step}
        if torch is not None:
            pt = torch.nn.Parameter(_tensor(torch, param.copy(), device))
            pt.grad = _tensor(torch, grad, device)
            calls["torch"] = _torch_optimizer(torch, torch.optim.Adam, pt, device, lr=1e-3,
                                              eps=1e-7).step
        return calls
    return Case("adam_update", "update", f"{ADAM_PARAMETERS} params", None, setup)


def _gemm():
    def setup(rng, torch, device):
        a, b = _normal(rng, (GEMM, GEMM)), _normal(rng, (GEMM, GEMM))
        calls = {"fastnn": lambda: ops.gemm(a, b, device=device), "numpy": lambda: a @ b}
        if torch is not None:
            at, bt = _tensor(torch, a, device), _tensor(torch, b, device)
            calls["torch"] = lambda: torch.mm(at, bt)
        return calls
    return Case("gemm", "forward", _shape((GEMM, GEMM), (GEMM, GEMM)), 2 * GEMM ** 3, setup)


def cases(batches=(BATCH,)):
    """Every op and direction; the batched ones once per batch size in ``batches``."""
    def per_batch(make):
        return [case for batch in batches for case in make(batch)]
    return (per_batch(lambda n: [_conv((n,) + x, w, backward) for backward in (False, True)
                                 for x, w in CONVS])
            + per_batch(lambda n: [_pool((n,) + s, backward) for backward in (False, True)
                                   for s in POOLS])
            + per_batch(lambda n: [_dense(n, i, o, backward) for backward in (False, True)
                                   for i, o in DENSES])
            + per_batch(lambda n: [_relu((n,) + RELU, False), _relu((n,) + RELU, True),
                                   _softmax_cross_entropy(n), _softmax(n),
                                   _dropout((n,) + RELU)])
            + per_batch(_activation_cases) + per_batch(_pool_norm_cases)
            + per_batch(_loss_cases) + per_batch(_augment_cases)
            + [_adam(), _sgd(), _gemm()])


# ==== activations (element-wise, softmax's gradient) ====

ACTIVATION_KINDS = ("sigmoid", "tanh", "gelu", "swish")  # the transcendental ones Keras users pick


def _activation(kind, shape, backward):
    def setup(rng, torch, device):
        x, dy = _normal(rng, shape), _normal(rng, shape)
        if not backward:
            calls = {"fastnn": lambda: ops.activation(x, kind, device=device),
                     "numpy": lambda: reference.activation(x, kind)}
        else:
            y = ops.activation(x, kind)  # a training step has the forward's output already
            calls = {"fastnn": lambda: ops.activation_backward(x, dy, kind, device=device, y=y),
                     "numpy": lambda: reference.activation_backward(x, dy, kind)}
        if torch is not None:
            aten, xt, dyt = torch.ops.aten, _nchw(torch, x, device), _nchw(torch, dy, device)
            forward = {"sigmoid": torch.sigmoid, "tanh": torch.tanh,
                       "gelu": torch.nn.functional.gelu, "swish": torch.nn.functional.silu}[kind]
            if not backward:
                calls["torch"] = lambda: forward(xt)
            else:  # autograd's own backward kernels, from the output or the input as each reads
                yt = forward(xt)
                calls["torch"] = {"sigmoid": lambda: aten.sigmoid_backward(dyt, yt),
                                  "tanh": lambda: aten.tanh_backward(dyt, yt),
                                  "gelu": lambda: aten.gelu_backward(dyt, xt),
                                  "swish": lambda: aten.silu_backward(dyt, xt)}[kind]
        return calls
    return Case(kind, "backward" if backward else "forward", _shape(shape), None, setup)


def _softmax_backward(batch):
    def setup(rng, torch, device):
        y = reference.softmax(_normal(rng, (batch, CLASSES), 3.0)).astype(np.float32)
        dy = _normal(rng, (batch, CLASSES))
        calls = {"fastnn": lambda: ops.softmax_backward(y, dy, device=device),
                 "numpy": lambda: reference.softmax_backward(y, dy)}
        if torch is not None:
            yt, dyt = _tensor(torch, y, device), _tensor(torch, dy, device)
            calls["torch"] = lambda: torch.ops.aten._softmax_backward_data(dyt, yt, 1,
                                                                          torch.float32)
        return calls
    return Case("softmax", "backward", _shape((batch, CLASSES)), None, setup)


def _activation_cases(batch):
    shape = (batch,) + RELU
    return ([_activation(kind, shape, backward) for kind in ACTIVATION_KINDS
             for backward in (False, True)] + [_softmax_backward(batch)])


# ==== pooling (average, 'same') and batch normalisation ====

BATCHNORM = (26, 26, 32)       # the first conv's output, as a conv -> BN -> ReLU stack has it
AVGPOOL = ((26, 26, 32), (2, 2))
GLOBAL_AVGPOOL = (5, 5, 64)    # the seed CNN's last feature map, pooled whole
BATCHNORM_EPSILON, BATCHNORM_MOMENTUM = 1e-3, 0.99  # Keras's defaults


def _avgpool(shape, pool, backward, label=""):
    def setup(rng, torch, device):
        x = _normal(rng, shape)
        if not backward:
            calls = {"fastnn": lambda: ops.avgpool2d(x, pool, device=device),
                     "numpy": lambda: reference.avgpool2d(x, pool)}
        else:
            dy = _normal(rng, reference.avgpool2d(x, pool).shape)
            calls = {"fastnn": lambda: ops.avgpool2d_backward(x, dy, pool, device=device),
                     "numpy": lambda: reference.avgpool2d_backward(x, dy, pool)}
        if torch is not None:
            xt = _nchw(torch, x, device)
            if not backward:
                calls["torch"] = lambda: torch.nn.functional.avg_pool2d(xt, pool)
            else:
                dyt = _nchw(torch, dy, device)
                calls["torch"] = lambda: torch.ops.aten.avg_pool2d_backward(
                    dyt, xt, list(pool), list(pool), [0, 0], False, True, None)
        return calls
    return Case("avgpool2d", "backward" if backward else "forward", _shape(shape) + label, None,
                setup)


def _batchnorm(shape, backward):
    def setup(rng, torch, device):
        channels = shape[-1]
        x = _normal(rng, shape, 2.0) + np.float32(1.0)
        gamma = _normal(rng, channels, 0.1) + np.float32(1.0)
        beta = _normal(rng, channels, 0.1)
        moving_mean, moving_variance = np.zeros(channels, np.float32), np.ones(channels, np.float32)
        hyper = {"epsilon": BATCHNORM_EPSILON, "momentum": BATCHNORM_MOMENTUM}
        if not backward:  # the training forward: batch statistics and the moving update
            calls = {"fastnn": lambda: ops.batchnorm(x, gamma, beta, moving_mean, moving_variance,
                                                     **hyper, device=device),
                     "numpy": lambda: reference.batchnorm_forward(x, gamma, beta, moving_mean,
                                                                  moving_variance, **hyper)}
        else:
            _, mean, inv_std, _, _ = reference.batchnorm_forward(x, gamma, beta, moving_mean,
                                                                 moving_variance, **hyper)
            dy = _normal(rng, shape)
            calls = {"fastnn": lambda: ops.batchnorm_backward(x, gamma, mean, inv_std, dy,
                                                              device=device),
                     "numpy": lambda: reference.batchnorm_backward(x, gamma, mean, inv_std, dy)}
        if torch is not None:
            aten, xt = torch.ops.aten, _nchw(torch, x, device)
            gt, bt, mt, vt = (_tensor(torch, a, device)
                              for a in (gamma, beta, moving_mean, moving_variance))

            def forward():  # torch's momentum weighs the batch: Keras's 0.99 is its 0.01
                return aten.native_batch_norm(xt, gt, bt, mt, vt, True, 1 - BATCHNORM_MOMENTUM,
                                              BATCHNORM_EPSILON)
            if not backward:
                calls["torch"] = forward
            else:
                _, saved_mean, saved_inv_std = forward()
                dyt = _nchw(torch, dy, device)
                calls["torch"] = lambda: aten.native_batch_norm_backward(
                    dyt, xt, gt, mt, vt, saved_mean, saved_inv_std, True, BATCHNORM_EPSILON,
                    [True, True, True])
        return calls
    return Case("batchnorm", "backward" if backward else "forward", _shape(shape), None, setup)


def _pool_norm_cases(batch):
    return ([_avgpool((batch,) + AVGPOOL[0], AVGPOOL[1], backward) for backward in (False, True)]
            + [_avgpool((batch,) + GLOBAL_AVGPOOL, GLOBAL_AVGPOOL[:2], backward, " global")
               for backward in (False, True)]
            + [_batchnorm((batch,) + BATCHNORM, backward) for backward in (False, True)])


# ==== losses (categorical with soft targets, sigmoid cross-entropy, regression) ====

def _loss_cases(batch):
    def case(op, shape, make_inputs, fastnn_loss, numpy_loss, torch_loss):
        """One fused loss: value and gradient. make_inputs(rng) -> (input, targets);
        torch_loss(torch.nn.functional) -> PyTorch's loss, its gradient by autograd, as a
        training step gets both."""
        def setup(rng, torch, device):
            x, t = make_inputs(rng)
            calls = {"fastnn": lambda: fastnn_loss(x, t, device=device),
                     "numpy": lambda: numpy_loss(x, t)}
            if torch is not None:
                xt, tt = _tensor(torch, x, device), _tensor(torch, t, device)
                loss_of = torch_loss(torch.nn.functional)

                def loss_and_gradient():
                    z = xt.detach().requires_grad_()
                    loss = loss_of(z, tt)
                    return loss, torch.autograd.grad(loss, z)[0]
                calls["torch"] = loss_and_gradient
            return calls
        return Case(op, "fused", _shape(shape), None, setup)

    wide = (batch, CLASSES)

    def soft(rng):  # logits and probability rows, as label smoothing or distillation gives
        return _normal(rng, wide, 3.0), reference.softmax(_normal(rng, wide)).astype(np.float32)

    def binary(shape):
        return lambda rng: (_normal(rng, shape, 3.0),
                            rng.integers(0, 2, shape).astype(np.float32))

    def mse(y, t, device="cpu"):
        return ops.regression_loss(y, t, "mean_squared_error", device=device)
    return [
        case("categorical_xent", wide, soft, ops.categorical_cross_entropy,
             reference.categorical_cross_entropy, lambda F: F.cross_entropy),  # probabilities
        *(case("sigmoid_xent", shape, binary(shape), ops.sigmoid_cross_entropy,
               reference.sigmoid_cross_entropy, lambda F: F.binary_cross_entropy_with_logits)
          for shape in ((batch, 1), wide)),
        case("mean_squared_error", wide, lambda rng: (_normal(rng, wide), _normal(rng, wide)),
             mse, lambda y, t: reference.regression_loss(y, t, "mean_squared_error"),
             lambda F: F.mse_loss),
    ]


# ---------------------------------------------------------------------------
# checking a result
# ---------------------------------------------------------------------------

def _arrays(value):
    """The arrays of an op's result (an array, a scalar, or a tuple of them), flattened."""
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    return [np.asarray(value, dtype=np.float64)]


def relative_error(got, expected):
    """The largest ||got - expected|| / ||expected|| over the results' arrays (inf when
    their structure or shapes differ)."""
    got, expected = _arrays(got), _arrays(expected)
    if len(got) != len(expected):
        return math.inf
    worst = 0.0
    for g, e in zip(got, expected):
        if g.shape != e.shape:
            return math.inf
        norm = np.linalg.norm(e)
        error = float(np.linalg.norm(g - e) / (norm if norm > 0 else 1.0))
        worst = max(worst, error if math.isfinite(error) else math.inf)
    return worst


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


def has_kernel_timer():
    return hasattr(_C, "time_kernels") and hasattr(_C, "last_kernel_seconds")


def kernel_timer(call):
    """timer(R) -> fastnn's kernel seconds per run of ``call``'s op: with _C.time_kernels(R)
    on, the op runs its kernel(s) once untimed, then R times timed (on CUDA: on device-
    resident inputs, between CUDA events), and _C.last_kernel_seconds() is the mean."""
    def timer(repeats):
        _C.time_kernels(repeats)
        try:
            call()
            return _C.last_kernel_seconds()
        finally:
            _C.time_kernels(0)
    return timer


def torch_cuda_timer(torch, call):
    """timer(R) -> seconds per call of ``call`` on the GPU: one untimed call (cuDNN's
    autotuning, the caching allocator), then R calls between two CUDA events."""
    def timer(repeats):
        call()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeats):
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / repeats
    return timer


def time_timers(timers, budget, samples):
    """({name: seconds of each sample}, {name: repeats}) of timer(R) -> seconds per run:
    R chosen from a first timer(1) so that a contender's samples take about `budget`,
    samples interleaved across the contenders."""
    reps = {}
    for name, timer in timers.items():
        estimate = timer(1)
        reps[name] = max(1, min(MAX_REPEATS, int(budget / samples / max(estimate, 1e-7))))
    seconds = {name: [] for name in timers}
    for _ in range(samples):
        for name, timer in timers.items():
            seconds[name].append(timer(reps[name]))
    return seconds, reps


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

def cuda_unavailable():
    """Why fastnn cannot run on a CUDA GPU in this process, or None when it can."""
    info = fastnn.build_info()
    if not info.get("cuda_compiled"):
        return "this fastnn was built without CUDA (no nvcc when it was installed)"
    if not info.get("cuda_devices"):
        error = info.get("cuda_error")
        return (f"fastnn sees no CUDA device: {error}" if error else
                "fastnn sees no CUDA device (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
                "hides it)")
    return None


def _torch_on_gpu(threads):
    """(torch, None) with TF32 off and cuDNN autotuning on, or (None, why it is skipped)."""
    torch, why = _common.import_torch(threads)
    if torch is not None and not torch.cuda.is_available():
        torch, why = None, f"torch {torch.__version__} sees no CUDA device"
    if torch is not None:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch, why


def main_args(args):
    out = _common.output_stream(args)
    cuda = args.device == "cuda"
    if cuda:
        why = cuda_unavailable()
        if why:
            print(f"error: bench ops --device cuda: no CUDA GPU visible: {why}", file=sys.stderr)
            return 1
        if not has_kernel_timer():
            print("error: bench ops --device cuda: this fastnn._C has no kernel timer "
                  "(time_kernels, last_kernel_seconds); rebuild fastnn from a tree that has it",
                  file=sys.stderr)
            return 1
    try:
        threads = _common.apply_runtime(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    selected = [c for c in cases(args.batch) if not args.filter or args.filter in c.name]
    if not selected:
        print(f"error: no op matches --filter {args.filter!r}", file=sys.stderr)
        return 2
    torch, torch_skipped = _torch_on_gpu(threads) if cuda else _common.import_torch(threads)
    kernel_column = not cuda and has_kernel_timer()

    facts = _common.machine_facts(torch)
    batches = ", ".join(map(str, args.batch))
    if cuda:
        facts.update(_common.device_facts(torch))
        print(f"fastnn bench ops --device cuda: the seed CNN's ops at batch {batches}, on the "
              f"GPU, float32 (TF32 off); kernel time on device-resident data (fastnn: "
              f"_C.time_kernels; PyTorch: CUDA events); best of {args.samples} samples, about "
              f"{args.budget} s per op and contender", file=out)
    else:
        print(f"fastnn bench ops: the seed CNN's ops at batch {batches}; best of "
              f"{args.samples} samples, about {args.budget} s per op and contender", file=out)
    _common.print_machine(facts, out)
    if cuda:
        _common.print_device(facts, out)
    if torch_skipped:
        print(f"skipped PyTorch: {torch_skipped}", file=out)

    rng = np.random.default_rng(0)
    results, failed = [], {}
    for case in selected:
        try:
            result = _run_case(case, rng, torch, args, cuda, kernel_column)
        except Exception as error:  # one broken op must not cost the others' numbers
            failed[case.name] = f"{type(error).__name__}: {error}"
            print(f"FAILED {case.name}: {failed[case.name]}", file=out, flush=True)
            continue
        results.append(result)
        if result["mismatch"]:
            print(f"MISMATCH {case.name}: fastnn against fastnn.reference, relative error "
                  f"{result['max_rel_error']:.3g} > {TOLERANCE}", file=out, flush=True)

    print(file=out)
    contenders = (["fastnn"] if cuda else ["fastnn", "numpy"]) + \
        (["torch"] if torch is not None else [])
    headers = (["op", "direction", "shape"] + [f"{c} ms" for c in contenders]
               + (["fastnn kernel ms"] if kernel_column else [])
               + [f"{c}/fastnn" for c in contenders[1:]] + ["fastnn GFLOP/s", "rel err"])
    rows = [[r["op"], r["direction"], r["shape"]]
            + [f"{r['ms'][c]:.4f}" if cuda else f"{r['ms'][c]:.3f}" for c in contenders]
            + ([f"{r['kernel_ms']:.3f}"] if kernel_column else [])
            + [f"{r['speedup'][c]:.2f}" for c in contenders[1:]]
            + [f"{r['gflops']['fastnn']:.1f}" if "gflops" in r else "",
               f"{r['max_rel_error']:.1e}"] for r in results]
    _common.table(headers, rows, out, text_columns=3)

    report = {"benchmark": "ops", "device": args.device, "batch": args.batch[0],
              "batches": args.batch, "samples": args.samples, "budget_seconds": args.budget,
              "precision": "float32", "tolerance": TOLERANCE, "machine": facts,
              "results": results, "skipped": {"torch": torch_skipped} if torch_skipped else {},
              "failed": failed}
    _print_floor(report, results, contenders, cuda, out)
    for name, why in failed.items():
        print(f"FAILED {name}: {why}", file=out)
    if args.json:
        _common.write_json(args.json, report)
    return 1 if failed or any(r["mismatch"] for r in results) else 0


def _run_case(case, rng, torch, args, cuda, kernel_column):
    """One op and direction: its result checked against the reference once, then timed."""
    calls = case.setup(rng, torch, args.device)
    error = relative_error(calls["fastnn"](), calls["numpy"]())
    repeats = None
    if cuda:
        timers = {"fastnn": kernel_timer(calls["fastnn"])}
        if "torch" in calls:
            timers["torch"] = torch_cuda_timer(torch, calls["torch"])
        samples, repeats = time_timers(timers, args.budget, args.samples)
    else:
        samples = time_op(calls, args.budget, args.samples)
    seconds = {name: min(times) for name, times in samples.items()}
    result = {"op": case.op, "direction": case.direction, "shape": case.shape,
              "ms": {name: s * 1e3 for name, s in seconds.items()},
              "median_ms": {name: statistics.median(t) * 1e3 for name, t in samples.items()},
              "speedup": {name: s / seconds["fastnn"] for name, s in seconds.items()
                          if name != "fastnn"},
              "max_rel_error": error, "mismatch": not error <= TOLERANCE}
    if repeats:
        result["repeats"] = repeats
    if kernel_column:  # fastnn's kernels alone, without the call's Python and conversions
        kernel, _ = time_timers({"fastnn": kernel_timer(calls["fastnn"])}, args.budget,
                                args.samples)
        result["kernel_ms"] = min(kernel["fastnn"]) * 1e3
    if case.flop:
        result["gflops"] = {name: case.flop / s / 1e9 for name, s in seconds.items()}
    return result


def _print_floor(report, results, contenders, cuda, out):
    """The SGEMM rate (NumPy's on the CPU, PyTorch's, else fastnn's, on the GPU) and the floor
    it sets: a training step's FLOP per image at that rate."""
    gemm = next((r for r in results if r["op"] == "gemm"), None)
    if gemm is None:
        return
    source = "numpy" if not cuda else "torch" if "torch" in gemm["gflops"] else "fastnn"
    sgemm = gemm["gflops"][source]
    floor = sgemm * 1e9 / TRAIN_FLOP_PER_IMAGE
    report["floor"] = {"sgemm_gflops": sgemm, "sgemm_of": source,
                       "train_flop_per_image": TRAIN_FLOP_PER_IMAGE,
                       "train_images_per_second": floor}
    rates = ", ".join(f"{c} {gemm['gflops'][c]:.0f}" for c in contenders)
    whose = {"numpy": "the machine's SGEMM rate (NumPy a @ b", "torch":
             "the GPU's SGEMM rate (PyTorch torch.mm, float32", "fastnn":
             "fastnn's GPU SGEMM rate (no PyTorch here"}[source]
    print(f"\nGEMM {GEMM}^3, GFLOP/s: {rates}. The floor: a training step costs "
          f"{TRAIN_FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image; at {whose}, {sgemm:.0f} "
          f"GFLOP/s) that is {floor:,.0f} images/s.", file=out)


if __name__ == "__main__":
    sys.exit(main())


# ==== augmentation (random image layers) ====

AUGMENT_IMAGE = (28, 28, 1)
AUGMENT_ROTATION = {"type": "augment", "mode": "rotation", "rotation": [-0.1, 0.1],
                    "fill_mode": "reflect", "fill_value": 0.0, "interpolation": "bilinear"}
AUGMENT_CONTRAST = {"type": "augment", "mode": "contrast", "contrast": [0.3, 0.3],
                    "value_range": [0.0, 255.0]}


def _augment_cases(batch):
    """RandomRotation (bilinear, reflect) and RandomContrast at MNIST's shape, training. PyTorch's
    natural equivalents draw per image too: affine_grid + grid_sample (bilinear, reflection
    padding) for the rotation, and mean / scale / clamp ops for the contrast."""
    shape = (batch,) + AUGMENT_IMAGE

    def case(op, spec, torch_call):
        def setup(rng, torch, device):
            x = (rng.random(shape) * 255).astype(np.float32)
            calls = {"fastnn": lambda: ops.augment(x, spec, 0, device=device),
                     "numpy": lambda: reference.augment(x, spec, 0)}
            if torch is not None:
                calls["torch"] = torch_call(torch, _nchw(torch, x, device))
            return calls
        return Case(op, "forward", _shape(shape), None, setup)

    def torch_rotation(torch, xt):
        def rotate():
            turns = torch.empty(batch, device=xt.device).uniform_(*AUGMENT_ROTATION["rotation"])
            angle = turns * (2 * math.pi)
            cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1),
                                 torch.stack([sin, cos, zero], 1)], 1)
            grid = torch.nn.functional.affine_grid(theta, list(xt.shape), align_corners=False)
            return torch.nn.functional.grid_sample(xt, grid, mode="bilinear",
                                                   padding_mode="reflection", align_corners=False)
        return rotate

    def torch_contrast(torch, xt):
        lower, upper = AUGMENT_CONTRAST["contrast"]

        def contrast():
            factor = torch.empty(batch, 1, 1, 1, device=xt.device).uniform_(1 - lower, 1 + upper)
            mean = xt.mean(dim=(2, 3), keepdim=True)
            return ((xt - mean) * factor + mean).clamp(*AUGMENT_CONTRAST["value_range"])
        return contrast

    return [case("augment_rotation", AUGMENT_ROTATION, torch_rotation),
            case("augment_contrast", AUGMENT_CONTRAST, torch_contrast)]
