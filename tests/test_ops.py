"""Every fastnn.ops kernel against fastnn.reference, on every backend this process has.

One harness over (op, direction, backend, shape), as ggml's test-backend-ops: the backend
is an axis, not a second file. It takes the values cpu-portable, cpu-avx2, cpu-avx512 (the
CPU ISA paths this machine supports; the op runs with device='cpu' and that path set) and
cuda (device='cuda'; marked `gpu`, skipped, with the reason, where the process sees no CUDA
GPU). Every op test runs on every backend with the same cases and the same inputs. The
kernel runs in float32, the reference in float64 on the same float32 inputs, and they must
agree to ||out - ref|| / ||ref|| < 1e-5 (or bit for bit, where the op is exact). Inputs are
fresh random numbers each session; the seed is printed on failure and FASTNN_TEST_SEED=<seed>
replays it.

    pytest tests/test_ops.py                 # every backend (cuda skips without a GPU)
    pytest -m "not gpu" tests/test_ops.py    # the CPU backends only
    pytest -m gpu tests/test_ops.py          # the cuda backend only

Cases marked `big` (sized for a GPU: gemm 1024^3, relu 1<<22, ...) run on the cuda backend
only: they would double the CPU suite's time and the CPU blocking is crossed by the smaller
shapes; FASTNN_TEST_BIG=1 runs them on the CPU backends too. Under tools/cuda_emu the whole
cuda half takes well under a minute, so nothing is left out there.
"""
import contextlib
import os
import secrets
import zlib

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref
from fastnn.reference_net import dropout_keep_mask

SEED = int(os.environ.get("FASTNN_TEST_SEED", secrets.randbelow(2**32)))
INFO = fastnn.build_info()
ISAS = INFO["cpu_isa_available"]
HAS_GPU = INFO["cuda_devices"] > 0
BIG_ON_CPU = os.environ.get("FASTNN_TEST_BIG", "") not in ("", "0")
TOLERANCE = 1e-5


# ---- the backend axis ---------------------------------------------------------------------

def _no_gpu_reason():
    reason = "no CUDA GPU in this process"
    if INFO.get("cuda_error"):
        reason += f" ({INFO['cuda_error']})"
    return reason


BACKENDS = [f"cpu-{isa}" for isa in ISAS] + [
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not HAS_GPU, reason=_no_gpu_reason())])]

big = pytest.mark.big


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The device to pass the op: 'cpu' with the backend's ISA path set (and the previous
    one restored after), or 'cuda'."""
    if request.param == "cuda":
        yield "cuda"
        return
    if request.node.get_closest_marker("big") and not BIG_ON_CPU:
        pytest.skip("big case: cuda backend only (FASTNN_TEST_BIG=1 runs it on the CPU too)")
    previous = fastnn.get_cpu_isa()
    fastnn.set_cpu_isa(request.param[len("cpu-"):])
    try:
        yield "cpu"
    finally:
        fastnn.set_cpu_isa(previous)


# ---- helpers ------------------------------------------------------------------------------

def rng_for(*key):
    """A generator for one test case: the session seed mixed with the case's identity."""
    # crc32, not hash(): str hashes change with every interpreter (PYTHONHASHSEED), and
    # FASTNN_TEST_SEED must replay the same data.
    return np.random.default_rng([SEED, *(zlib.crc32(str(k).encode()) for k in key)])


def floats(rng, *shape, scale=1.0):
    x = rng.standard_normal(shape, dtype=np.float32)  # float32 directly: half the time
    if scale != 1.0:
        x *= np.float32(scale)
    return x


def assert_close(out, expected, what, terms=None):
    """||out - expected|| / ||expected|| < TOLERANCE; with `terms` (the same sums over the
    terms' absolute values), / ||terms|| instead: a float32 sum's error scales with its
    terms, so an output of few elements that cancels to near 0 (a bias gradient with one
    channel, a 1x1 dense layer) would otherwise fail by chance, about once in 100 sessions."""
    out = np.asarray(out, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert out.shape == expected.shape, f"{what}: shape {out.shape} != {expected.shape}"
    norm = np.linalg.norm(expected if terms is None else terms)
    error = np.linalg.norm(out - expected) / (norm if norm > 0 else 1.0)
    assert error < TOLERANCE, f"{what}: relative error {error:.3g} (FASTNN_TEST_SEED={SEED})"


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


class Terms(list):
    """The `terms` of arrays updated in place over several steps (optimizer state): per
    element |start| + the sum of |each step's change|, from the float64 reference. A state
    of few elements can drift to near 0 (a param or a momentum that cancels)."""

    def __init__(self, arrays):
        super().__init__(None if a is None else np.abs(a) for a in arrays)
        self._arrays = arrays

    @contextlib.contextmanager
    def step(self):
        before = [None if a is None else a.copy() for a in self._arrays]
        yield
        for total, now, then in zip(self, self._arrays, before):
            if total is not None:
                total += np.abs(now - then)


def shape_id(shape):
    return "x".join(map(str, shape))


# ---- conv2d -----------------------------------------------------------------------------
# (n, h, w, cin, kh, kw, cout, strides, padding)
CONV_CASES = [
    (64, 28, 28, 1, 3, 3, 32, 1, "valid"),    # the seed CNN's three convolutions
    (64, 13, 13, 32, 3, 3, 64, 1, "valid"),
    (64, 5, 5, 64, 3, 3, 64, 1, "valid"),
    (1, 7, 9, 3, 3, 3, 5, 1, "valid"),         # batch 1, odd sizes
    (3, 11, 10, 17, 3, 3, 17, 2, "valid"),
    (2, 11, 10, 5, 3, 3, 3, 2, "same"),
    (2, 9, 8, 1, 5, 3, 17, (2, 1), "same"),   # non-square kernel and strides
    (5, 6, 7, 3, 2, 2, 64, 1, "same"),         # even kernel: the extra pad is bottom/right
    (1, 4, 4, 64, 1, 1, 1, 1, "valid"),        # 1x1 kernel, one output channel
    (2, 3, 5, 3, 5, 5, 4, 1, "same"),          # kernel larger than the input
    (4, 8, 8, 3, 3, 3, 33, (1, 2), "valid"),
    (2, 21, 19, 5, 3, 2, 37, (2, 1), "valid"),  # implicit GEMM with strides, cout past NR
    (63, 9, 9, 2, 3, 3, 7, 1, "valid"),        # batch 63
    (2, 6, 7, 130, 1, 3, 8, 1, "valid"),       # kernel row of 390 floats: the im2col path
    (2, 4, 3, 2, 2, 1, 400, 1, "valid"),       # cout 400: dx by a plain GEMM per image
]


def conv_id(case):
    n, h, w, cin, kh, kw, cout, s, p = case
    return f"n{n}_{h}x{w}x{cin}_k{kh}x{kw}x{cout}_s{s}_{p}"


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_id)
def test_conv2d_forward(backend, case):
    n, h, w, cin, kh, kw, cout, strides, padding = case
    rng = rng_for("conv", case)
    x, k, b = floats(rng, n, h, w, cin), floats(rng, kh, kw, cin, cout), floats(rng, cout)
    expected = ref.conv2d(*f64(x, k, b), strides, padding)
    assert_close(ops.conv2d(x, k, b, strides, padding, device=backend), expected, "y")
    assert_close(ops.conv2d(x, k, None, strides, padding, device=backend), expected - b,
                 "y without bias")


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_id)
def test_conv2d_backward(backend, case):
    n, h, w, cin, kh, kw, cout, strides, padding = case
    rng = rng_for("conv_backward", case)
    x, k = floats(rng, n, h, w, cin), floats(rng, kh, kw, cin, cout)
    oh, _, _ = ref.conv_output_size(h, kh, strides if np.isscalar(strides) else strides[0], padding)
    ow, _, _ = ref.conv_output_size(w, kw, strides if np.isscalar(strides) else strides[1], padding)
    dy = floats(rng, n, oh, ow, cout)
    expected = ref.conv2d_backward(*f64(x, k, dy), strides, padding)
    got = ops.conv2d_backward(x, k, dy, strides, padding, device=backend)
    terms = (None, None, np.abs(dy, dtype=np.float64).sum(axis=(0, 1, 2)))
    for name, out, exp, t in zip(("dx", "dw", "db"), got, expected, terms):
        assert_close(out, exp, name, t)


# ---- dense and gemm -----------------------------------------------------------------------
# (m, k, n): tails that are not multiples of any vector width; k > 256, m > 96 and n > 512
# cross the GEMM's cache blocks; k = 1; and one large square product.
GEMM_SHAPES = [(1, 1, 1), (1, 9, 32), (7, 13, 33), (7, 13, 5), (33, 1, 65), (64, 576, 64),
               (97, 300, 65), (5, 3, 600), (100, 300, 600), (200, 17, 10), (63, 64, 10),
               pytest.param((1024, 1024, 1024), marks=big, id="1024x1024x1024")]


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=shape_id)
def test_gemm(backend, shape, trans_a, trans_b):
    m, k, n = shape
    rng = rng_for("gemm", shape, trans_a, trans_b)
    a = floats(rng, *((k, m) if trans_a else (m, k)))
    b = floats(rng, *((n, k) if trans_b else (k, n)))
    expected = ref.gemm(*f64(a, b), trans_a=trans_a, trans_b=trans_b)
    assert_close(ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, device=backend), expected, "c")


# (batch, features_in, features_out): the seed CNN's two dense layers, then awkward ones,
# then a large batch.
DENSE_SHAPES = [(64, 576, 64), (64, 64, 10), (1, 1, 1), (1, 3, 1), (63, 100, 17), (3, 5, 1),
                (130, 7, 33), (63, 64, 10), (1024, 576, 64)]


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=shape_id)
def test_dense(backend, shape):
    n, fin, fout = shape
    rng = rng_for("dense", shape)
    x, w, b, dy = floats(rng, n, fin), floats(rng, fin, fout), floats(rng, fout), floats(rng, n, fout)
    abs_x, abs_w, abs_b = (np.abs(a, dtype=np.float64) for a in (x, w, b))
    assert_close(ops.dense(x, w, b, device=backend), ref.dense(*f64(x, w, b)), "y",
                 ref.dense(abs_x, abs_w, abs_b))
    assert_close(ops.dense(x, w, None, device=backend), ref.dense(*f64(x, w), None),
                 "y without bias", ref.dense(abs_x, abs_w, None))
    terms = (None, None, np.abs(dy, dtype=np.float64).sum(axis=0))
    for name, out, exp, t in zip(("dx", "dw", "db"), ops.dense_backward(x, w, dy, device=backend),
                                 ref.dense_backward(*f64(x, w, dy)), terms):
        assert_close(out, exp, name, t)


# ---- max pooling --------------------------------------------------------------------------
# (n, h, w, c, pool_size, strides)
POOL_CASES = [
    (64, 26, 26, 32, (2, 2), None),  # the seed CNN's two pools
    (64, 11, 11, 64, (2, 2), None),  # odd size: the last row and column are dropped
    (1, 5, 7, 1, (2, 2), None),
    (1, 5, 7, 3, (2, 3), (1, 2)),
    (3, 9, 8, 17, (3, 3), (1, 1)),   # overlapping windows
    (3, 9, 9, 17, (3, 3), (2, 2)),
    (2, 10, 9, 5, (2, 3), (2, 1)),
    (2, 7, 7, 3, (3, 2), (3, 3)),    # stride larger than the pool: gaps
    (2, 8, 8, 1, (2, 2), (3, 3)),
    (1, 4, 4, 64, (4, 4), None),     # one window covers the whole image
    pytest.param((1024, 11, 11, 64, (2, 2), None), marks=big,
                 id="n1024_11x11x64_p2x2_sNone"),  # a large batch
]


def pool_id(case):
    n, h, w, c, p, s = case
    return f"n{n}_{h}x{w}x{c}_p{p[0]}x{p[1]}_s{s}"


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_maxpool2d(backend, case, ties):
    n, h, w, c, pool_size, strides = case
    rng = rng_for("pool", case, ties)
    x = floats(rng, n, h, w, c)
    if ties:  # few distinct values: most windows tie, the first maximum must win
        x = np.round(x).clip(-1, 1).astype(np.float32)
    y = ref.maxpool2d(x.astype(np.float64), pool_size, strides)
    dy = floats(rng, *y.shape)
    assert np.array_equal(ops.maxpool2d(x, pool_size, strides, device=backend),
                          y.astype(np.float32))
    dx = ops.maxpool2d_backward(x, dy, pool_size, strides, device=backend)
    assert_close(dx, ref.maxpool2d_backward(*f64(x, dy), pool_size, strides), "dx")


# ---- relu ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (17,), (3, 5, 7), (16385,), (64, 26, 26, 32),
                                   pytest.param((1 << 22,), marks=big,
                                                id="4194304")], ids=shape_id)
def test_relu(backend, shape):
    rng = rng_for("relu", shape)
    x, dy = floats(rng, *shape), floats(rng, *shape)
    x.ravel()[::7] = 0.0  # exact zeros: gradient 0 there
    y = ops.relu(x, device=backend)
    assert np.array_equal(y, np.maximum(x, 0))
    assert_close(y, ref.relu(x.astype(np.float64)), "y")
    assert np.array_equal(ops.relu_backward(x, dy, device=backend),
                          np.where(x > 0, dy, 0).astype(np.float32))


# ---- softmax and softmax cross-entropy ----------------------------------------------------

XENT_SHAPES = [(64, 10), (1, 10), (63, 10), (5, 1), (3, 1000), (1024, 17)]
EXTREME_LOGITS = np.array([[1e30, 0.0, -1e30], [-3e38, 3e38, 0.0], [0.0, 0.0, 0.0]], np.float32)


@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["moderate", "large"])
@pytest.mark.parametrize("shape", XENT_SHAPES, ids=shape_id)
def test_softmax_cross_entropy(backend, shape, scale):
    n, classes = shape
    rng = rng_for("xent", shape, scale)
    logits = floats(rng, n, classes, scale=scale)
    labels = rng.integers(0, classes, n)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels, device=backend)
    ref_loss, ref_dlogits = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert_close(loss, ref_loss, "loss")
    assert_close(dlogits, ref_dlogits, "dlogits")


def test_softmax_cross_entropy_extreme_logits(backend):
    labels = np.array([0, 1, 2])
    loss, dlogits = ops.softmax_cross_entropy(EXTREME_LOGITS, labels, device=backend)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx(np.log(3) / 3, rel=1e-6)
    assert_close(dlogits, ref.softmax_cross_entropy(EXTREME_LOGITS.astype(np.float64), labels)[1],
                 "dlogits")


@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["moderate", "large"])
@pytest.mark.parametrize("shape", [*XENT_SHAPES, (1, 1), (7, 33)], ids=shape_id)
def test_softmax(backend, shape, scale):
    rng = rng_for("softmax", shape, scale)
    logits = floats(rng, *shape, scale=scale)
    probs = ops.softmax(logits, device=backend)
    assert probs.dtype == np.float32
    assert_close(probs, ref.softmax(logits.astype(np.float64)), "probabilities")
    assert np.allclose(probs.sum(axis=1, dtype=np.float64), 1.0, rtol=0, atol=1e-5)


def test_softmax_extreme_logits(backend):
    probs = ops.softmax(EXTREME_LOGITS, device=backend)
    assert np.isfinite(probs).all()
    assert_close(probs, ref.softmax(EXTREME_LOGITS.astype(np.float64)), "probabilities")
    assert_close(probs, [[1, 0, 0], [0, 1, 0], [1 / 3, 1 / 3, 1 / 3]], "probabilities")


# ---- optimizers ---------------------------------------------------------------------------

OPTIMIZER_SIZES = [1, 17, 93322, 100003, pytest.param(1 << 20, marks=big)]


@pytest.mark.parametrize("hyper", [{}, {"lr": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}],
                         ids=["keras_defaults", "custom"])
@pytest.mark.parametrize("size", OPTIMIZER_SIZES)
def test_adam_update(backend, size, hyper):
    rng = rng_for("adam", size, str(hyper))
    param = floats(rng, size)
    m, v = np.zeros(size, np.float32), np.zeros(size, np.float32)
    expected = f64(param, m, v)
    terms = Terms(expected)
    for step in range(1, 5):
        grad = floats(rng, size)
        ops.adam_update(param, grad, m, v, step, **hyper, device=backend)
        with terms.step():
            ref.adam_update(expected[0], grad.astype(np.float64), expected[1], expected[2], step,
                            **hyper)
    for name, out, exp, t in zip(("param", "m", "v"), (param, m, v), expected, terms):
        assert_close(out, exp, name, t)


@pytest.mark.parametrize("step", [3, 10**6], ids=["early", "late"])
def test_adam_update_from_state(backend, step):
    """From nonzero moments; far into training (step 10**6) the bias corrections vanish."""
    rng = rng_for("adam_state", step)
    param, grad = floats(rng, 50), floats(rng, 50)
    m, v = floats(rng, 50), np.abs(floats(rng, 50))
    expected = f64(param, m, v)
    ops.adam_update(param, grad, m, v, step, device=backend)
    ref.adam_update(expected[0], grad.astype(np.float64), expected[1], expected[2], step)
    for name, out, exp in zip(("param", "m", "v"), (param, m, v), expected):
        assert_close(out, exp, name)


SGD_HYPERS = {"plain": {}, "custom_lr": {"lr": 0.3},
              "momentum": {"lr": 0.1, "momentum": 0.9},
              "nesterov": {"lr": 0.05, "momentum": 0.5, "nesterov": True}}


@pytest.mark.parametrize("hyper", SGD_HYPERS.values(), ids=SGD_HYPERS.keys())
@pytest.mark.parametrize("size", OPTIMIZER_SIZES)
def test_sgd_update(backend, size, hyper):
    rng = rng_for("sgd", size, str(hyper))
    param = floats(rng, size)
    velocity = np.zeros(size, np.float32) if hyper.get("momentum") else None
    expected = f64(param, velocity)
    terms = Terms(expected)
    for _ in range(4):
        grad = floats(rng, size)
        ops.sgd_update(param, grad, velocity, **hyper, device=backend)
        with terms.step():
            ref.sgd_update(expected[0], grad.astype(np.float64), expected[1], **hyper)
    assert_close(param, expected[0], "param", terms[0])
    if velocity is not None:
        assert_close(velocity, expected[1], "velocity", terms[1])


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_sgd_update_from_velocity(backend, nesterov):
    rng = rng_for("sgd_velocity", nesterov)
    param, grad, velocity = floats(rng, 50), floats(rng, 50), floats(rng, 50)
    expected = f64(param, velocity)
    ops.sgd_update(param, grad, velocity, lr=0.02, momentum=0.8, nesterov=nesterov, device=backend)
    ref.sgd_update(expected[0], grad.astype(np.float64), expected[1], 0.02, 0.8, nesterov)
    assert_close(param, expected[0], "param")
    assert_close(velocity, expected[1], "velocity")


def test_sgd_update_without_momentum(backend):
    """momentum 0: param -= lr * grad, with or without a velocity array (Keras keeps none)."""
    rng = rng_for("sgd_no_momentum")
    param, grad = floats(rng, 50), floats(rng, 50)
    expected = param.astype(np.float64)
    ref.sgd_update(expected, grad.astype(np.float64), None, lr=0.1)
    ops.sgd_update(param, grad, np.zeros(50, np.float32), lr=0.1, device=backend)
    assert_close(param, expected, "param")
    with pytest.raises((TypeError, ValueError), match="velocity"):
        ops.sgd_update(param, grad, None, lr=0.1, momentum=0.9, device=backend)


# ---- dropout ------------------------------------------------------------------------------
# (seed, layer_index, iteration): seeds past 2**32 catch a truncated seed.
DROPOUT_KEYS = {"zero": (0, 0, 0), "key": (2**33 + 12345, 3, 41), "late": (7, 1, 10**6)}


@pytest.mark.parametrize("key", DROPOUT_KEYS.values(), ids=DROPOUT_KEYS.keys())
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(1,), (17,), (3, 5, 7), (63, 100), (100003,),
                                   (64, 13, 13, 32)], ids=shape_id)
def test_dropout(backend, shape, rate, key):
    seed, layer_index, iteration = key
    rng = rng_for("dropout", shape, rate, key)
    x = floats(rng, *shape)
    y, mask = ops.dropout(x, rate, seed=seed, layer_index=layer_index, iteration=iteration,
                          device=backend)
    assert y.dtype == mask.dtype == np.float32 and y.shape == mask.shape == shape
    keep = dropout_keep_mask(shape, rate, seed, layer_index, iteration)
    scale = np.float32(1.0 / (1.0 - rate))
    assert np.array_equal(mask, np.where(keep, scale, np.float32(0))), \
        f"mask differs at {np.count_nonzero(mask != np.where(keep, scale, 0))} elements"
    assert np.array_equal(y, x * mask)
    if rate == 0.0:
        assert (mask == 1).all() and np.array_equal(y, x)


# ---- determinism --------------------------------------------------------------------------

def test_same_inputs_same_bits(backend):
    """Reductions (filter and bias gradients, the loss) come out bit for bit the same when run
    again on the same inputs: no float atomics, no order that depends on scheduling."""
    rng = rng_for("determinism")
    x, k = floats(rng, 256, 13, 13, 32), floats(rng, 3, 3, 32, 64)
    dy = floats(rng, 256, 11, 11, 64)
    first = ops.conv2d_backward(x, k, dy, device=backend)
    second = ops.conv2d_backward(x, k, dy, device=backend)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    xd, wd, dyd = floats(rng, 1000, 300), floats(rng, 300, 65), floats(rng, 1000, 65)
    for a, b in zip(ops.dense_backward(xd, wd, dyd, device=backend),
                    ops.dense_backward(xd, wd, dyd, device=backend)):
        assert np.array_equal(a, b)
    logits, labels = floats(rng, 1024, 10, scale=5.0), rng.integers(0, 10, 1024)
    assert ops.softmax_cross_entropy(logits, labels, device=backend)[0] == \
        ops.softmax_cross_entropy(logits, labels, device=backend)[0]


# ---- the device argument ------------------------------------------------------------------

@pytest.mark.skipif(HAS_GPU, reason="this process has a GPU")
def test_cuda_without_gpu_refuses_cleanly():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(RuntimeError, match="device='cuda'") as refusal:
        ops.relu(x, device="cuda")
    if INFO.get("cuda_error"):  # a CUDA error, not "no GPU", is named (issue 11, defect 3)
        assert INFO["cuda_error"] in str(refusal.value)
    with pytest.raises(RuntimeError, match="device='cuda'"):
        ops.gemm(x, x.T, device="cuda")
    assert (ops.relu(x) == x).all()  # the CPU still works after the refusal


def test_bad_device_names_the_argument():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'gpu'"):
        ops.relu(x, device="gpu")
    with pytest.raises(TypeError, match="device must be"):
        ops.relu(x, device=0)
