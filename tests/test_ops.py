"""Every fastnn.ops kernel against fastnn.reference, on every CPU ISA path this machine has.

One harness over (op, direction, ISA path, shape), as ggml's test-backend-ops: the kernel
runs in float32, the reference in float64 on the same float32 inputs, and they must agree
to ||out - ref|| / ||ref|| < 1e-5. Inputs are fresh random numbers each session; the seed
is printed on failure and FASTNN_TEST_SEED=<seed> replays it.
"""
import os
import secrets
import zlib

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref

SEED = int(os.environ.get("FASTNN_TEST_SEED", secrets.randbelow(2**32)))
ISAS = fastnn.build_info()["cpu_isa_available"]
TOLERANCE = 1e-5


@pytest.fixture(params=ISAS)
def isa(request):
    previous = fastnn.get_cpu_isa()
    fastnn.set_cpu_isa(request.param)
    yield request.param
    fastnn.set_cpu_isa(previous)


def rng_for(*key):
    """A generator for one test case: the session seed mixed with the case's identity."""
    # crc32, not hash(): str hashes change with every interpreter (PYTHONHASHSEED), and
    # FASTNN_TEST_SEED must replay the same data.
    return np.random.default_rng([SEED, *(zlib.crc32(str(k).encode()) for k in key)])


def floats(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def assert_close(out, expected, what):
    out = np.asarray(out, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert out.shape == expected.shape, f"{what}: shape {out.shape} != {expected.shape}"
    norm = np.linalg.norm(expected)
    error = np.linalg.norm(out - expected) / (norm if norm > 0 else 1.0)
    assert error < TOLERANCE, f"{what}: relative error {error:.3g} (FASTNN_TEST_SEED={SEED})"


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


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
def test_conv2d_forward(isa, case):
    n, h, w, cin, kh, kw, cout, strides, padding = case
    rng = rng_for("conv", case)
    x, k, b = floats(rng, n, h, w, cin), floats(rng, kh, kw, cin, cout), floats(rng, cout)
    expected = ref.conv2d(*f64(x, k, b), strides, padding)
    assert_close(ops.conv2d(x, k, b, strides, padding), expected, "y")
    assert_close(ops.conv2d(x, k, None, strides, padding), expected - b, "y without bias")


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_id)
def test_conv2d_backward(isa, case):
    n, h, w, cin, kh, kw, cout, strides, padding = case
    rng = rng_for("conv_backward", case)
    x, k = floats(rng, n, h, w, cin), floats(rng, kh, kw, cin, cout)
    oh, _, _ = ref.conv_output_size(h, kh, strides if np.isscalar(strides) else strides[0], padding)
    ow, _, _ = ref.conv_output_size(w, kw, strides if np.isscalar(strides) else strides[1], padding)
    dy = floats(rng, n, oh, ow, cout)
    expected = ref.conv2d_backward(*f64(x, k, dy), strides, padding)
    for name, out, exp in zip(("dx", "dw", "db"), ops.conv2d_backward(x, k, dy, strides, padding),
                              expected):
        assert_close(out, exp, name)


# ---- dense and gemm -----------------------------------------------------------------------
# (m, k, n): tails that are not multiples of any vector width; k > 256, m > 96 and n > 512
# cross the GEMM's cache blocks.
GEMM_SHAPES = [(1, 1, 1), (1, 9, 32), (7, 13, 33), (64, 576, 64), (97, 300, 65), (5, 3, 600),
               (200, 17, 10), (63, 64, 10)]


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm(isa, shape, trans_a, trans_b):
    m, k, n = shape
    rng = rng_for("gemm", shape, trans_a, trans_b)
    a = floats(rng, *((k, m) if trans_a else (m, k)))
    b = floats(rng, *((n, k) if trans_b else (k, n)))
    expected = ref.gemm(*f64(a, b), trans_a=trans_a, trans_b=trans_b)
    assert_close(ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b), expected, "c")


# (batch, features_in, features_out): the seed CNN's two dense layers, then awkward ones.
DENSE_SHAPES = [(64, 576, 64), (64, 64, 10), (1, 1, 1), (63, 100, 17), (3, 5, 1), (130, 7, 33)]


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense(isa, shape):
    n, fin, fout = shape
    rng = rng_for("dense", shape)
    x, w, b, dy = floats(rng, n, fin), floats(rng, fin, fout), floats(rng, fout), floats(rng, n, fout)
    assert_close(ops.dense(x, w, b), ref.dense(*f64(x, w, b)), "y")
    assert_close(ops.dense(x, w, None), ref.dense(*f64(x, w), None), "y without bias")
    for name, out, exp in zip(("dx", "dw", "db"), ops.dense_backward(x, w, dy),
                              ref.dense_backward(*f64(x, w, dy))):
        assert_close(out, exp, name)


# ---- max pooling --------------------------------------------------------------------------
# (n, h, w, c, pool_size, strides)
POOL_CASES = [
    (64, 26, 26, 32, (2, 2), None),  # the seed CNN's two pools
    (64, 11, 11, 64, (2, 2), None),  # odd size: the last row and column are dropped
    (1, 5, 7, 1, (2, 2), None),
    (3, 9, 8, 17, (3, 3), (1, 1)),   # overlapping windows
    (2, 10, 9, 5, (2, 3), (2, 1)),
    (2, 7, 7, 3, (3, 2), (3, 3)),    # stride larger than the pool: gaps
    (1, 4, 4, 64, (4, 4), None),     # one window covers the whole image
]


def pool_id(case):
    n, h, w, c, p, s = case
    return f"n{n}_{h}x{w}x{c}_p{p[0]}x{p[1]}_s{s}"


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_maxpool2d(isa, case, ties):
    n, h, w, c, pool_size, strides = case
    rng = rng_for("pool", case, ties)
    x = floats(rng, n, h, w, c)
    if ties:  # few distinct values: most windows tie, the first maximum must win
        x = np.round(x).clip(-1, 1).astype(np.float32)
    y = ref.maxpool2d(x.astype(np.float64), pool_size, strides)
    dy = floats(rng, *y.shape)
    assert np.array_equal(ops.maxpool2d(x, pool_size, strides), y.astype(np.float32))
    dx = ops.maxpool2d_backward(x, dy, pool_size, strides)
    assert_close(dx, ref.maxpool2d_backward(*f64(x, dy), pool_size, strides), "dx")


# ---- relu ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (17,), (64, 26, 26, 32), (3, 5, 7), (16385,)],
                         ids=lambda s: "x".join(map(str, s)))
def test_relu(isa, shape):
    rng = rng_for("relu", shape)
    x, dy = floats(rng, *shape), floats(rng, *shape)
    x.ravel()[::7] = 0.0  # exact zeros: gradient 0 there
    assert np.array_equal(ops.relu(x), np.maximum(x, 0))
    assert_close(ops.relu(x), ref.relu(x.astype(np.float64)), "y")
    assert np.array_equal(ops.relu_backward(x, dy), np.where(x > 0, dy, 0).astype(np.float32))


# ---- softmax cross-entropy ----------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["moderate", "large"])
@pytest.mark.parametrize("shape", [(64, 10), (1, 10), (63, 10), (5, 1), (3, 1000), (1024, 17)],
                         ids=lambda s: "x".join(map(str, s)))
def test_softmax_cross_entropy(isa, shape, scale):
    n, classes = shape
    rng = rng_for("xent", shape, scale)
    logits = floats(rng, n, classes, scale=scale)
    labels = rng.integers(0, classes, n)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    ref_loss, ref_dlogits = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert_close(loss, ref_loss, "loss")
    assert_close(dlogits, ref_dlogits, "dlogits")


def test_softmax_cross_entropy_extreme_logits(isa):
    logits = np.array([[1e30, 0.0, -1e30], [-3e38, 3e38, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 1, 2])
    loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx(np.log(3) / 3, rel=1e-6)
    assert_close(dlogits, ref.softmax_cross_entropy(logits.astype(np.float64), labels)[1], "dlogits")


# ---- adam ---------------------------------------------------------------------------------

@pytest.mark.parametrize("hyper", [{}, {"lr": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}],
                         ids=["keras_defaults", "custom"])
@pytest.mark.parametrize("size", [1, 17, 93322, 100003])
def test_adam_update(isa, size, hyper):
    rng = rng_for("adam", size, str(hyper))
    param = floats(rng, size)
    m, v = np.zeros(size, np.float32), np.zeros(size, np.float32)
    expected = f64(param, m, v)
    for step in range(1, 5):
        grad = floats(rng, size)
        ops.adam_update(param, grad, m, v, step, **hyper)
        ref.adam_update(expected[0], grad.astype(np.float64), expected[1], expected[2], step, **hyper)
    for name, out, exp in zip(("param", "m", "v"), (param, m, v), expected):
        assert_close(out, exp, name)


def test_adam_update_late_step(isa):
    """Far into training the bias corrections vanish: alpha -> lr."""
    rng = rng_for("adam_late")
    param, grad = floats(rng, 50), floats(rng, 50)
    m, v = np.abs(floats(rng, 50)), np.abs(floats(rng, 50))
    expected = f64(param, m, v)
    ops.adam_update(param, grad, m, v, 10**6)
    ref.adam_update(expected[0], grad.astype(np.float64), expected[1], expected[2], 10**6)
    for name, out, exp in zip(("param", "m", "v"), (param, m, v), expected):
        assert_close(out, exp, name)
