"""Max pooling with 'same' padding, average pooling and batch normalisation: fastnn.ops
against fastnn.reference on every backend (test_ops.py's harness and tolerance), the
reference's gradients against central finite differences, the same bits for any CPU thread
count, and the bindings' argument checks.

    pytest tests/test_ops_pool_norm.py          # every backend (cuda skips without a GPU)
    pytest -m gpu tests/test_ops_pool_norm.py   # the cuda backend only
"""
import numpy as np
import pytest

import fastnn
from fastnn import _C, ops
from fastnn import reference as ref
from test_ops import assert_close, backend, big, f64, floats, rng_for, shape_id  # noqa: F401


# ---- max pooling, 'same' ------------------------------------------------------------------
# (n, h, w, c, pool_size, strides): padding on both sides, only at the end, none at all
# ('same' that needs no pad), overlapping windows, strides past the pool, a pool larger
# than the input, a 1x1 input.
MAXPOOL_SAME_CASES = [
    (64, 26, 26, 32, (2, 2), None),  # the seed CNN's first pool: no pad needed
    (64, 11, 11, 64, (2, 2), None),  # odd size: one pad row and column at the end
    (2, 7, 7, 3, (3, 3), (2, 2)),    # one pad each side
    (3, 9, 8, 17, (3, 3), (1, 1)),   # overlapping, pad before and after
    (2, 4, 4, 5, (3, 3), (3, 3)),    # stride = pool, pad before
    (2, 7, 6, 3, (2, 3), (3, 2)),    # stride past the pool along H
    (1, 3, 4, 5, (5, 5), (1, 1)),    # pool larger than the input
    (1, 5, 7, 1, (2, 2), None),      # batch 1, one channel
    (2, 1, 1, 3, (2, 2), (1, 1)),    # 1x1 input
]


def pool_id(case):
    n, h, w, c, p, s = case[:6]
    return f"n{n}_{h}x{w}x{c}_p{p[0]}x{p[1]}_s{s}" + "".join(f"_{x}" for x in case[6:])


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", MAXPOOL_SAME_CASES, ids=pool_id)
def test_maxpool2d_same(backend, case, ties):
    n, h, w, c, pool_size, strides = case
    rng = rng_for("maxpool_same", case, ties)
    x = floats(rng, n, h, w, c)
    if ties:  # few distinct values: most windows tie, the first maximum inside x must win
        x = np.round(x).clip(-1, 1).astype(np.float32)
    y = ref.maxpool2d(x.astype(np.float64), pool_size, strides, "same")
    dy = floats(rng, *y.shape)
    assert np.array_equal(ops.maxpool2d(x, pool_size, strides, "same", device=backend),
                          y.astype(np.float32))
    dx = ops.maxpool2d_backward(x, dy, pool_size, strides, "same", device=backend)
    assert_close(dx, ref.maxpool2d_backward(*f64(x, dy), pool_size, strides, "same"), "dx")


def test_maxpool2d_same_never_takes_the_padding(backend):
    """Every input negative: a padded position (0 for a zero pad) must never be the maximum,
    nor take a gradient."""
    x = -np.arange(1, 1 + 2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    y = ops.maxpool2d(x, 3, 2, "same", device=backend)
    assert y.shape == (2, 3, 3, 3) and (y < 0).all()
    assert np.array_equal(y, ref.maxpool2d(x, 3, 2, "same").astype(np.float32))
    dx = ops.maxpool2d_backward(x, np.ones_like(y), 3, 2, "same", device=backend)
    assert dx.sum() == y.size  # every output's gradient lands inside x


def test_maxpool2d_padding_defaults_to_valid(backend):
    x = floats(rng_for("maxpool_default"), 2, 5, 5, 3)
    assert np.array_equal(ops.maxpool2d(x, 2, device=backend),
                          ops.maxpool2d(x, 2, padding="valid", device=backend))
    # the binding's old positional form (no padding argument) still works
    assert np.array_equal(_C.maxpool2d(x, 2, 2, 2, 2, device=backend),
                          ops.maxpool2d(x, 2, device=backend))


# ---- average pooling ----------------------------------------------------------------------
# (n, h, w, c, pool_size, strides, padding)
AVGPOOL_CASES = [
    (64, 26, 26, 32, (2, 2), None, "valid"),  # after the seed CNN's first conv
    (2, 11, 11, 5, (2, 2), None, "valid"),     # odd size: the last row and column dropped
    (2, 11, 11, 5, (2, 2), None, "same"),      # ... or padded, and not counted
    (3, 9, 8, 17, (3, 3), (1, 1), "valid"),    # overlapping windows
    (3, 9, 8, 17, (3, 3), (1, 1), "same"),
    (2, 10, 9, 3, (3, 2), (2, 1), "same"),
    (2, 7, 7, 3, (2, 2), (3, 3), "valid"),     # strides past the pool: gaps
    (2, 8, 7, 5, (2, 3), (3, 4), "same"),
    (1, 3, 4, 17, (5, 5), (2, 2), "same"),     # pool larger than the input
    (1, 5, 7, 1, (2, 2), None, "valid"),       # batch 1, one channel
    (1, 7, 7, 3, (7, 7), None, "valid"),       # global average pools: window = image
    (2, 28, 28, 1, (28, 28), None, "valid"),
    (3, 1, 1, 5, (1, 1), None, "valid"),
    (64, 5, 5, 64, (5, 5), None, "valid"),     # the seed CNN's last map, pooled whole
    pytest.param((1024, 11, 11, 64, (2, 2), None, "same"), marks=big,
                 id="n1024_11x11x64_p2x2_sNone_same"),
]


@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=pool_id)
def test_avgpool2d(backend, case):
    n, h, w, c, pool_size, strides, padding = case
    rng = rng_for("avgpool", case)
    x = floats(rng, n, h, w, c)
    y = ref.avgpool2d(x.astype(np.float64), pool_size, strides, padding)
    assert_close(ops.avgpool2d(x, pool_size, strides, padding, device=backend), y, "y")
    dy = floats(rng, *y.shape)
    dx = ops.avgpool2d_backward(x, dy, pool_size, strides, padding, device=backend)
    assert_close(dx, ref.avgpool2d_backward(*f64(x, dy), pool_size, strides, padding), "dx")


def test_avgpool2d_same_counts_only_the_input(backend):
    """'same' averages over the positions inside x: a constant input stays constant, at the
    edges too (a zero pad that were counted would pull them towards 0)."""
    x = np.full((2, 5, 5, 3), 4.0, np.float32)
    y = ops.avgpool2d(x, 3, 2, "same", device=backend)
    assert y.shape == (2, 3, 3, 3) and np.allclose(y, 4.0, rtol=1e-6, atol=0)
    # the gradient of the mean of everything is 1 / x.size everywhere
    dx = ops.avgpool2d_backward(x, np.ones((2, 1, 1, 3), np.float32), (5, 5), device=backend)
    assert np.allclose(dx, 1 / 25, rtol=1e-6, atol=0)


# ---- batch normalisation ------------------------------------------------------------------
# Shapes (..., channels): rows 1 (a variance of 0), 7, the conv -> BN shapes of a BatchNorm
# CNN (64x26x26x32, 64x11x11x64), channel counts 1, 3, 5, 17 (vector tails), 4-D and 2-D.
BATCHNORM_SHAPES = [(1, 3), (1, 17), (7, 1), (7, 5), (64, 17), (3, 2, 2, 3), (1, 1, 1, 5),
                    (100, 64), (64, 26, 26, 32), (64, 11, 11, 64), (2, 3, 5, 130)]
AFFINE = {"gamma_beta": (True, True), "no_gamma": (False, True), "no_beta": (True, False),
          "neither": (False, False)}


def batchnorm_inputs(rng, shape, with_gamma=True, with_beta=True):
    """x with a per-channel offset and scale (the mean is far from 0), gamma, beta, and moving
    statistics to update."""
    c = shape[-1]
    x = floats(rng, *shape) * (0.5 + np.abs(floats(rng, c))) + 3 * floats(rng, c)
    gamma = (1 + 0.5 * floats(rng, c)) if with_gamma else None
    beta = floats(rng, c) if with_beta else None
    moving_mean, moving_variance = floats(rng, c), 0.5 + np.abs(floats(rng, c))
    return x.astype(np.float32), gamma, beta, moving_mean, moving_variance


def check_close(got, expected, names, terms=None):
    for i, (name, out, exp) in enumerate(zip(names, got, expected)):
        assert out.dtype == np.float32, name
        assert_close(out, exp, name, None if terms is None else terms[i])


FORWARD_NAMES = ("y", "mean", "inv_std", "moving_mean", "moving_variance")


@pytest.mark.parametrize("affine", AFFINE.values(), ids=AFFINE.keys())
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_training(backend, shape, affine):
    rng = rng_for("batchnorm", shape, affine)
    x, gamma, beta, moving_mean, moving_variance = batchnorm_inputs(rng, shape, *affine)
    before = (moving_mean.copy(), moving_variance.copy())
    got = ops.batchnorm(x, gamma, beta, moving_mean, moving_variance, epsilon=1e-3,
                        momentum=0.9, device=backend)
    expected = ref.batchnorm_forward(*f64(x, gamma, beta, moving_mean, moving_variance),
                                     epsilon=1e-3, momentum=0.9)
    check_close(got, expected, FORWARD_NAMES)
    assert got[0].shape == shape
    # the inputs are left alone: the updated statistics come back as new arrays
    assert np.array_equal(moving_mean, before[0]) and np.array_equal(moving_variance, before[1])
    if shape[:-1] == (1,) * (len(shape) - 1):  # one row: variance 0, y = beta exactly
        assert np.array_equal(got[0], np.broadcast_to(beta if beta is not None else 0, shape))


@pytest.mark.parametrize("affine", AFFINE.values(), ids=AFFINE.keys())
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_inference(backend, shape, affine):
    rng = rng_for("batchnorm_inference", shape, affine)
    x, gamma, beta, moving_mean, moving_variance = batchnorm_inputs(rng, shape, *affine)
    got = ops.batchnorm(x, gamma, beta, moving_mean, moving_variance, training=False,
                        device=backend)
    expected = ref.batchnorm_forward(*f64(x, gamma, beta, moving_mean, moving_variance),
                                     training=False)
    check_close(got, expected, FORWARD_NAMES)
    assert np.array_equal(got[3], moving_mean) and np.array_equal(got[4], moving_variance)


@pytest.mark.parametrize("with_gamma", [True, False], ids=["gamma", "no_gamma"])
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=shape_id)
def test_batchnorm_backward(backend, shape, with_gamma):
    rng = rng_for("batchnorm_backward", shape, with_gamma)
    x, gamma, beta, moving_mean, moving_variance = batchnorm_inputs(rng, shape, with_gamma)
    _, mean, inv_std, _, _ = ops.batchnorm(x, gamma, beta, moving_mean, moving_variance,
                                           device=backend)
    dy = floats(rng, *shape)
    got = ops.batchnorm_backward(x, gamma, mean, inv_std, dy, device=backend)
    expected = ref.batchnorm_backward(*f64(x, gamma, mean, inv_std, dy))
    axes = tuple(range(len(shape) - 1))
    xhat = (x.astype(np.float64) - mean) * inv_std
    # dgamma and dbeta sum terms of both signs: judged against the sums of |term|
    terms = (None, np.abs(dy * xhat).sum(axis=axes), np.abs(dy, dtype=np.float64).sum(axis=axes))
    check_close(got, expected, ("dx", "dgamma", "dbeta"), terms)


def test_batchnorm_constant_channel(backend):
    """A channel that never varies: variance 0, inv_std = 1/sqrt(epsilon), y = beta."""
    x = np.full((50, 3), 2.5, np.float32)
    x[:, 1] = np.linspace(-1, 1, 50)
    beta = np.array([0.5, 0.0, -1.0], np.float32)
    y, mean, inv_std, _, new_variance = ops.batchnorm(x, None, beta, np.zeros(3), np.ones(3),
                                                      epsilon=1e-3, device=backend)
    assert mean[0] == 2.5 and inv_std[0] == pytest.approx(1 / np.sqrt(1e-3), rel=1e-6)
    assert np.array_equal(y[:, 0], np.full(50, 0.5, np.float32))
    assert new_variance[0] == pytest.approx(0.99, rel=1e-6)  # 1 * 0.99 + 0 * 0.01


# ---- same bits, whatever the thread count -------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 26, 26, 32), (7744, 64), (1000, 5)], ids=shape_id)
def test_batchnorm_same_bits_any_threads(backend, shape, restore_runtime):
    """The row reductions have a fixed shape: on the CPU the same bits for 1, 2, 3 and 7
    threads; on CUDA, run after run."""
    rng = rng_for("batchnorm_bits", shape)
    x, gamma, beta, moving_mean, moving_variance = batchnorm_inputs(rng, shape)
    dy = floats(rng, *shape)

    def run():
        forward = ops.batchnorm(x, gamma, beta, moving_mean, moving_variance, device=backend)
        return forward + ops.batchnorm_backward(x, gamma, forward[1], forward[2], dy,
                                                device=backend)
    counts = [1, 2, 3, 7] if backend == "cpu" else [None, None]
    results = []
    for threads in counts:
        if threads:
            fastnn.set_num_threads(threads)
        results.append(run())
    for result in results[1:]:
        for a, b in zip(results[0], result):
            assert np.array_equal(a, b)


def test_avgpool2d_backward_same_bits_any_threads(backend, restore_runtime):
    rng = rng_for("avgpool_bits")
    x, dy = floats(rng, 3, 9, 8, 17), floats(rng, 3, 9, 8, 17)
    results = []
    for threads in ([1, 2, 5] if backend == "cpu" else [None, None]):
        if threads:
            fastnn.set_num_threads(threads)
        results.append(ops.avgpool2d_backward(x, dy, 3, 1, "same", device=backend))
    for result in results[1:]:
        assert np.array_equal(results[0], result)


# ---- the reference's gradients against finite differences ---------------------------------

def numeric_gradient(f, a, step=1e-6):
    """d f / d a by central differences, a float64 array perturbed in place."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        keep = a[i]
        a[i] = keep + step
        up = f()
        a[i] = keep - step
        down = f()
        a[i] = keep
        grad[i] = (up - down) / (2 * step)
    return grad


@pytest.mark.parametrize("case", [((2, 5, 4, 3), (2, 2), None, "valid"),
                                  ((2, 5, 4, 3), (3, 3), (1, 1), "same"),
                                  ((1, 5, 5, 2), (2, 3), (3, 2), "same"),
                                  ((2, 4, 4, 1), (4, 4), None, "valid")],
                         ids=lambda case: "_".join(map(str, case)))
def test_reference_pool_gradients(case):
    shape, pool_size, strides, padding = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)  # distinct values: max pooling is differentiable there
    r = rng.standard_normal(ref.avgpool2d(x, pool_size, strides, padding).shape)
    for forward, backward in ((ref.avgpool2d, ref.avgpool2d_backward),
                              (ref.maxpool2d, ref.maxpool2d_backward)):
        numeric = numeric_gradient(
            lambda: np.sum(forward(x, pool_size, strides, padding) * r), x)
        np.testing.assert_allclose(backward(x, r, pool_size, strides, padding), numeric,
                                   rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(7, 3), (2, 3, 2, 4), (5, 1)], ids=shape_id)
@pytest.mark.parametrize("with_gamma", [True, False], ids=["gamma", "no_gamma"])
def test_reference_batchnorm_gradients(shape, with_gamma):
    rng = np.random.default_rng(11)
    c = shape[-1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma = 1 + 0.3 * rng.standard_normal(c) if with_gamma else None
    beta = rng.standard_normal(c)
    r = rng.standard_normal(shape)

    def loss():
        return np.sum(ref.batchnorm_forward(x, gamma, beta, np.zeros(c), np.ones(c))[0] * r)
    _, mean, inv_std, _, _ = ref.batchnorm_forward(x, gamma, beta, np.zeros(c), np.ones(c))
    dx, dgamma, dbeta = ref.batchnorm_backward(x, gamma, mean, inv_std, r)
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dbeta, numeric_gradient(loss, beta), rtol=1e-6, atol=1e-8)
    if with_gamma:
        np.testing.assert_allclose(dgamma, numeric_gradient(loss, gamma), rtol=1e-6, atol=1e-8)


def test_reference_batchnorm_matches_keras_formulas():
    """Keras 3: moving = moving * momentum + batch * (1 - momentum), batch variance biased;
    inference normalises with the moving statistics."""
    x = np.array([[1.0, 10.0], [3.0, 10.0], [8.0, 13.0]])
    y, mean, inv_std, mm, mv = ref.batchnorm_forward(x, None, None, np.array([1.0, 2.0]),
                                                     np.array([4.0, 5.0]), 1e-3, 0.9)
    np.testing.assert_allclose(mean, [4.0, 11.0])
    np.testing.assert_allclose(1 / inv_std ** 2 - 1e-3, [26 / 3, 2.0])  # biased: / 3
    np.testing.assert_allclose(mm, [1 * 0.9 + 4 * 0.1, 2 * 0.9 + 11 * 0.1])
    np.testing.assert_allclose(mv, [4 * 0.9 + 26 / 30, 5 * 0.9 + 0.2])
    y, *_ = ref.batchnorm_forward(x, np.array([2.0, 1.0]), np.array([0.0, 1.0]),
                                  np.array([1.0, 2.0]), np.array([4.0, 5.0]), 1e-3, 0.9,
                                  training=False)
    np.testing.assert_allclose(y, (x - [1.0, 2.0]) / np.sqrt(np.array([4.0, 5.0]) + 1e-3)
                               * [2.0, 1.0] + [0.0, 1.0])


# ---- bad arguments ------------------------------------------------------------------------

def test_pool_bad_arguments():
    x = np.zeros((2, 5, 5, 3), np.float32)
    for op in (ops.avgpool2d, ops.maxpool2d):
        with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
            op(x, 2, padding="full")
        with pytest.raises(TypeError, match="padding"):
            op(x, 2, padding=1)
        with pytest.raises(ValueError, match="x must be a 4-D array"):
            op(np.zeros((5, 5, 3), np.float32), 2)
        with pytest.raises(ValueError, match="larger than the input"):
            op(x, 6)
        with pytest.raises(ValueError, match="pool_size"):
            op(x, 0)
        op(x, 6, padding="same")  # 'same' takes any pool size
    for op in (ops.avgpool2d_backward, ops.maxpool2d_backward):
        with pytest.raises(ValueError, match="dy must have shape"):
            op(x, np.zeros((2, 2, 2, 3), np.float32), 2, padding="same")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        _C.avgpool2d(x, 2, 2, 2, 2, "full")
    with pytest.raises(ValueError, match="strides"):
        _C.avgpool2d_backward(x, x, 2, 2, 0, 2, "valid")


def test_batchnorm_bad_arguments():
    x = np.zeros((4, 3), np.float32)
    c3, c2 = np.ones(3, np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        ops.batchnorm(np.zeros(3, np.float32), c3, c3, c3, c3)
    with pytest.raises(ValueError, match="x must not be empty"):
        ops.batchnorm(np.zeros((0, 3), np.float32), c3, c3, c3, c3)
    for position, name in enumerate(("gamma", "beta", "moving_mean", "moving_variance")):
        args = [c3, c3, c3, c3]
        args[position] = c2
        with pytest.raises(ValueError, match=f"{name} must have shape \\(3,\\)"):
            ops.batchnorm(x, *args)
    for epsilon in (0.0, -1e-3, float("nan"), float("inf"), 1e-300):
        with pytest.raises(ValueError, match="epsilon"):
            _C.batchnorm(x, c3, c3, c3, c3, epsilon, 0.99, True)
    for momentum in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="momentum"):
            _C.batchnorm(x, c3, c3, c3, c3, 1e-3, momentum, True)
        with pytest.raises(ValueError, match="momentum"):
            ops.batchnorm(x, c3, c3, c3, c3, momentum=momentum)
    with pytest.raises(ValueError, match="epsilon"):
        ops.batchnorm(x, c3, c3, c3, c3, epsilon=0)
    with pytest.raises(TypeError, match="training"):
        ops.batchnorm(x, c3, c3, c3, c3, training="yes")
    with pytest.raises(TypeError, match="epsilon"):
        ops.batchnorm(x, c3, c3, c3, c3, epsilon="small")
    with pytest.raises(ValueError, match="dy must have shape \\(4, 3\\)"):
        ops.batchnorm_backward(x, c3, c3, c3, np.zeros((3, 4), np.float32))
    for position, name in ((0, "gamma"), (1, "mean"), (2, "inv_std")):
        args = [c3, c3, c3]
        args[position] = c2
        with pytest.raises(ValueError, match=f"{name} must have shape \\(3,\\)"):
            ops.batchnorm_backward(x, *args, x)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        ops.batchnorm(x, c3, c3, c3, c3, device="gpu")
