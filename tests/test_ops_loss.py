"""The loss kernels beyond softmax_cross_entropy against fastnn.reference, on every backend
(test_ops.py's harness): categorical cross-entropy with any targets, sigmoid cross-entropy,
the regression losses. Shapes from one element to 70000 rows (past the CPU's thread
blocks), logits at scale 1 and 50 (exp far out of float range unless the max is taken
out first), targets one-hot, smoothed, soft or signed; the references' gradients against
finite differences; the mean's bits for 1 and 2 CPU threads; bad arguments.
"""
import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref
from test_ops import EXTREME_LOGITS, assert_close, backend, floats, rng_for, shape_id  # noqa: F401

SHAPES = [(1, 1), (3, 5), (17, 3), (64, 10), (5, 1000), (70000, 1)]
ELEMENT_SHAPES = [*SHAPES, (7,), (2, 3, 4), ()]  # the element-wise losses take any shape
SCALES = {"moderate": 1.0, "large": 50.0}
REGRESSIONS = {"mse": ("mean_squared_error", 1.0), "mae": ("mean_absolute_error", 1.0),
               "huber": ("huber", 1.0), "huber_0.3": ("huber", 0.3)}


def categorical_targets(rng, kind, n, classes):
    labels = rng.integers(0, classes, n)
    onehot = np.eye(classes, dtype=np.float32)[labels]
    if kind == "onehot":
        return onehot
    if kind == "smoothed":  # Keras's label_smoothing=0.1
        return (onehot * np.float32(0.9) + np.float32(0.1 / classes)).astype(np.float32)
    if kind == "soft":  # probability rows
        return ref.softmax(floats(rng, n, classes).astype(np.float64)).astype(np.float32)
    return floats(rng, n, classes)  # "signed": rows of any sign, not summing to 1


def categorical_terms(logits, targets):
    """The loss over the absolute values of its terms |t_j|·(logsumexp − z_j): the scale of
    a float32 sum whose signed terms cancel."""
    z = logits.astype(np.float64)
    lse = z.max(axis=1, keepdims=True) + np.log(np.exp(z - z.max(axis=1, keepdims=True))
                                                .sum(axis=1, keepdims=True))
    return np.mean((np.abs(targets) * (lse - z)).sum(axis=1))


# ---- categorical cross-entropy --------------------------------------------------------

TARGET_KINDS = ["onehot", "smoothed", "soft", "signed"]
# 70000 rows of one class (the CUDA kernel's grid-stride loop over rows) once: with one class
# loss and gradient are 0 whatever the targets, and the emulator takes ~10 s per case.
CATEGORICAL_CASES = [(shape, scale, kind) for shape in SHAPES for scale in SCALES
                     for kind in TARGET_KINDS
                     if shape != (70000, 1) or (scale, kind) == ("large", "soft")]


@pytest.mark.parametrize("shape, scale, targets_kind",
                         [pytest.param(shape, SCALES[scale], kind,
                                       id=f"{shape_id(shape)}-{scale}-{kind}")
                          for shape, scale, kind in CATEGORICAL_CASES])
def test_categorical_cross_entropy(backend, shape, scale, targets_kind):
    rng = rng_for("cce", shape, scale, targets_kind)
    logits = floats(rng, *shape, scale=scale)
    targets = categorical_targets(rng, targets_kind, *shape)
    loss, dlogits = ops.categorical_cross_entropy(logits, targets, device=backend)
    ref_loss, ref_dlogits = ref.categorical_cross_entropy(logits.astype(np.float64), targets)
    assert isinstance(loss, float) and dlogits.dtype == np.float32
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert_close(loss, ref_loss, "loss", categorical_terms(logits, targets))
    assert_close(dlogits, ref_dlogits, "dlogits")


@pytest.mark.parametrize("scale", SCALES.values(), ids=SCALES.keys())
def test_categorical_cross_entropy_one_hot_is_softmax_cross_entropy(backend, scale):
    rng = rng_for("cce_vs_sce", scale)
    logits, labels = floats(rng, 63, 10, scale=scale), rng.integers(0, 10, 63)
    loss, dlogits = ops.categorical_cross_entropy(logits, np.eye(10)[labels], device=backend)
    sparse_loss, sparse_dlogits = ops.softmax_cross_entropy(logits, labels, device=backend)
    assert_close(loss, sparse_loss, "loss")
    assert_close(dlogits, sparse_dlogits, "dlogits")


@pytest.mark.parametrize("targets_kind", ["onehot", "soft"])
def test_categorical_cross_entropy_extreme_logits(backend, targets_kind):
    targets = (np.eye(3, dtype=np.float32) if targets_kind == "onehot"
               else np.full((3, 3), 1 / 3, np.float32))
    loss, dlogits = ops.categorical_cross_entropy(EXTREME_LOGITS, targets, device=backend)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    ref_loss, ref_dlogits = ref.categorical_cross_entropy(EXTREME_LOGITS.astype(np.float64),
                                                          targets)
    assert_close(loss, ref_loss, "loss")
    assert_close(dlogits, ref_dlogits, "dlogits")


def test_categorical_cross_entropy_confident_row_keeps_its_digits(backend):
    """A row sure of its label: loss and gradient about e^-40, not rounded to 0."""
    logits = np.array([[40.0, 0.0, 0.0]], np.float32)
    targets = np.array([[1.0, 0.0, 0.0]], np.float32)
    loss, dlogits = ops.categorical_cross_entropy(logits, targets, device=backend)
    ref_loss, ref_dlogits = ref.categorical_cross_entropy(logits.astype(np.float64), targets)
    assert loss > 0 and dlogits[0, 0] < 0
    assert_close(loss, ref_loss, "loss")
    assert_close(dlogits, ref_dlogits, "dlogits")


# ---- sigmoid cross-entropy ------------------------------------------------------------

@pytest.mark.parametrize("targets_kind", ["binary", "soft"])
@pytest.mark.parametrize("scale", SCALES.values(), ids=SCALES.keys())
@pytest.mark.parametrize("shape", ELEMENT_SHAPES, ids=shape_id)
def test_sigmoid_cross_entropy(backend, shape, scale, targets_kind):
    rng = rng_for("bce", shape, scale, targets_kind)
    logits = floats(rng, *shape, scale=scale)
    targets = rng.random(shape, dtype=np.float32)
    if targets_kind == "binary":
        targets = np.round(targets)
    loss, dlogits = ops.sigmoid_cross_entropy(logits, targets, device=backend)
    ref_loss, ref_dlogits = ref.sigmoid_cross_entropy(logits.astype(np.float64), targets)
    assert isinstance(loss, float) and dlogits.shape == shape
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert_close(loss, ref_loss, "loss")
    assert_close(dlogits, ref_dlogits, "dlogits")


def test_sigmoid_cross_entropy_extreme_logits(backend):
    logits = np.array([3e38, -3e38, 1e30, -1e30, 40.0, -40.0, 0.0], np.float32)
    for targets in (np.array([1, 0, 1, 0, 1, 0, 1], np.float32),
                    np.array([0.25, 0.75, 0.5, 0.5, 1.0, 0.0, 0.5], np.float32)):
        loss, dlogits = ops.sigmoid_cross_entropy(logits, targets, device=backend)
        assert np.isfinite(loss) and np.isfinite(dlogits).all()
        ref_loss, ref_dlogits = ref.sigmoid_cross_entropy(logits.astype(np.float64), targets)
        assert_close(loss, ref_loss, "loss")
        assert_close(dlogits, ref_dlogits, "dlogits")
    # right and sure (|z| = 40 with t = 1 at z > 0, t = 0 at z < 0): about e^-40, not 0
    loss, dlogits = ops.sigmoid_cross_entropy(logits[4:6], np.array([1, 0], np.float32),
                                              device=backend)
    assert loss > 0 and dlogits[0] < 0 < dlogits[1]
    assert_close(dlogits, ref.sigmoid_cross_entropy(logits[4:6].astype(np.float64), [1, 0])[1],
                 "dlogits")


# ---- regression losses ----------------------------------------------------------------

@pytest.mark.parametrize("regression", REGRESSIONS.values(), ids=REGRESSIONS.keys())
@pytest.mark.parametrize("scale", SCALES.values(), ids=SCALES.keys())
@pytest.mark.parametrize("shape", ELEMENT_SHAPES, ids=shape_id)
def test_regression_loss(backend, shape, scale, regression):
    kind, delta = regression
    rng = rng_for("regression", shape, scale, kind, delta)
    y, targets = floats(rng, *shape, scale=scale), floats(rng, *shape)
    loss, dy = ops.regression_loss(y, targets, kind, delta, device=backend)
    ref_loss, ref_dy = ref.regression_loss(y.astype(np.float64), targets, kind, delta)
    assert isinstance(loss, float) and dy.shape == shape and dy.dtype == np.float32
    assert_close(loss, ref_loss, "loss")
    assert_close(dy, ref_dy, "dy")


@pytest.mark.parametrize("delta", [1.0, 0.5, 2.0])
def test_huber_at_delta(backend, delta):
    """|y − t| exactly delta (both branches give delta²/2 and gradient ±delta), and either
    side of it."""
    rng = rng_for("huber_boundary", delta)
    targets = (rng.integers(-8, 8, 40) * 0.25).astype(np.float32)
    offsets = np.array([delta, -delta, 0.0, delta * 1.5, -delta * 0.5], np.float32)
    y = targets + np.resize(offsets, 40)
    e = y.astype(np.float64) - targets
    assert np.count_nonzero(np.abs(e) == delta) == 16  # exact in float32
    loss, dy = ops.regression_loss(y, targets, "huber", delta, device=backend)
    ref_loss, ref_dy = ref.regression_loss(y.astype(np.float64), targets, "huber", delta)
    assert_close(loss, ref_loss, "loss")
    assert_close(dy, ref_dy, "dy")
    at = np.abs(e) == delta
    assert np.array_equal(dy[at], (np.sign(e[at]) * delta / 40).astype(np.float32))


def test_mean_absolute_error_at_zero(backend):
    """y == t: a zero gradient there (sign(0) = 0, as TensorFlow's), and zero loss when all are."""
    rng = rng_for("mae_zero")
    targets = floats(rng, 50)
    y = targets.copy()
    y[::2] += 1.0
    loss, dy = ops.regression_loss(y, targets, "mean_absolute_error", device=backend)
    ref_loss, ref_dy = ref.regression_loss(y.astype(np.float64), targets, "mean_absolute_error")
    assert_close(loss, ref_loss, "loss")
    assert np.array_equal(dy, ref_dy.astype(np.float32))
    assert (dy[1::2] == 0).all()
    for kind in ("mean_absolute_error", "mean_squared_error", "huber"):
        loss, dy = ops.regression_loss(targets, targets, kind, device=backend)
        assert loss == 0.0 and (dy == 0).all()


# ---- determinism ----------------------------------------------------------------------

def loss_calls(rng):
    logits, soft = floats(rng, 9001, 7, scale=5.0), rng.random((9001, 7), dtype=np.float32)
    z, t = floats(rng, 70000, scale=5.0), rng.random(70000, dtype=np.float32)
    return {"categorical": lambda device: ops.categorical_cross_entropy(logits, soft, device),
            "sigmoid": lambda device: ops.sigmoid_cross_entropy(z, t, device),
            **{name: (lambda device, r=r: ops.regression_loss(z, t, *r, device=device))
               for name, r in REGRESSIONS.items()}}


@pytest.mark.usefixtures("restore_runtime")
def test_same_bits_for_any_thread_count(backend):
    """The mean and the gradient do not depend on the CPU's thread count (fixed blocks, in
    order), nor, on CUDA, on the run (fixed-shape reductions, no float atomics)."""
    calls = loss_calls(rng_for("loss_threads"))
    for name, call in calls.items():
        if backend == "cpu":
            fastnn.set_num_threads(1)
        first = call(backend)
        if backend == "cpu":
            fastnn.set_num_threads(2)
        second = call(backend)
        assert first[0] == second[0], name
        assert np.array_equal(first[1], second[1]), name


# ---- the references' gradients against finite differences ------------------------------

def finite_differences(loss, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (loss(plus) - loss(minus)) / (2 * h)
    return grad


def assert_gradient(loss_and_gradient, x, what):
    _, grad = loss_and_gradient(x)
    numeric = finite_differences(lambda v: loss_and_gradient(v)[0], x)
    error = np.linalg.norm(grad - numeric) / np.linalg.norm(numeric)
    assert error < 1e-6, f"{what}: relative error {error:.3g} against finite differences"


@pytest.mark.parametrize("targets_kind", TARGET_KINDS)
def test_reference_categorical_cross_entropy_gradient(targets_kind):
    rng = rng_for("cce_fd", targets_kind)
    targets = categorical_targets(rng, targets_kind, 4, 5).astype(np.float64)
    assert_gradient(lambda z: ref.categorical_cross_entropy(z, targets),
                    floats(rng, 4, 5, scale=3.0).astype(np.float64), "dlogits")


def test_reference_sigmoid_cross_entropy_gradient():
    rng = rng_for("bce_fd")
    targets = rng.random((4, 5))
    assert_gradient(lambda z: ref.sigmoid_cross_entropy(z, targets),
                    floats(rng, 4, 5, scale=3.0).astype(np.float64), "dlogits")


@pytest.mark.parametrize("regression", REGRESSIONS.values(), ids=REGRESSIONS.keys())
def test_reference_regression_loss_gradient(regression):
    rng = rng_for("regression_fd", *regression)
    targets = rng.standard_normal((4, 5))
    assert_gradient(lambda y: ref.regression_loss(y, targets, *regression),
                    rng.standard_normal((4, 5)), "dy")


def test_reference_sigmoid_cross_entropy_is_the_textbook_formula():
    rng = rng_for("bce_formula")
    z, t = rng.standard_normal(50) * 3, rng.random(50)
    p = 1 / (1 + np.exp(-z))
    loss, dlogits = ref.sigmoid_cross_entropy(z, t)
    assert loss == pytest.approx(np.mean(-t * np.log(p) - (1 - t) * np.log(1 - p)), rel=1e-9)
    assert np.allclose(dlogits, (p - t) / 50, rtol=1e-9, atol=1e-15)


# ---- bad arguments --------------------------------------------------------------------

X = np.zeros((2, 3), np.float32)
BAD_CALLS = {
    "cce-targets-shape": (lambda: ops.categorical_cross_entropy(X, np.zeros((2, 4))), ValueError,
                          r"targets must have shape \(2, 3\) \(one target per element of "
                          r"logits\), got \(2, 4\)"),
    "cce-logits-1d": (lambda: ops.categorical_cross_entropy(X[0], X[0]), ValueError,
                      r"logits must be a 2-D array \(N, classes\), got shape \(3,\)"),
    "cce-empty": (lambda: ops.categorical_cross_entropy(X[:0], X[:0]), ValueError,
                  r"logits must not be empty"),
    "cce-nan-targets": (lambda: ops.categorical_cross_entropy(X, [[0, 0, np.nan]] * 2),
                        ValueError, r"targets must be finite, got nan at flat index 2"),
    "cce-inf-logits": (lambda: ops.categorical_cross_entropy([[0, np.inf, 0]] * 2, X),
                       ValueError, r"logits must be finite, got inf at flat index 1"),
    "cce-string-targets": (lambda: ops.categorical_cross_entropy(X, "abc"), TypeError,
                           r"targets must be an array of real numbers"),
    "bce-targets-shape": (lambda: ops.sigmoid_cross_entropy(X, X.T), ValueError,
                          r"targets must have shape \(2, 3\) \(one target per element of "
                          r"logits\), got \(3, 2\)"),
    "bce-empty": (lambda: ops.sigmoid_cross_entropy(np.zeros(0), np.zeros(0)), ValueError,
                  r"logits must not be empty"),
    "bce-inf-targets": (lambda: ops.sigmoid_cross_entropy([0.0, 1.0], [0.0, -np.inf]),
                        ValueError, r"targets must be finite, got -inf at flat index 1"),
    "regression-kind": (lambda: ops.regression_loss(X, X, "mse"), ValueError,
                        r"kind must be 'mean_squared_error', 'mean_absolute_error' or 'huber', "
                        r"got 'mse'"),
    "regression-kind-type": (lambda: ops.regression_loss(X, X, 2), TypeError,
                             r"kind must be .* got int 2"),
    "regression-targets-shape": (lambda: ops.regression_loss(X, X[:1], "huber"), ValueError,
                                 r"targets must have shape \(2, 3\) \(one target per element "
                                 r"of y\), got \(1, 3\)"),
    "regression-nan-targets": (lambda: ops.regression_loss([1.0], [np.nan], "mean_squared_error"),
                               ValueError, r"targets must be finite, got nan at flat index 0"),
    "regression-empty": (lambda: ops.regression_loss([], [], "huber"), ValueError,
                         r"y must not be empty"),
    "huber-delta-zero": (lambda: ops.regression_loss(X, X, "huber", 0.0), ValueError,
                         r"delta must be > 0 and finite in float32 for kind='huber', got 0"),
    "huber-delta-negative": (lambda: ops.regression_loss(X, X, "huber", -1), ValueError,
                             r"delta must be > 0 .* got -1"),
    "huber-delta-nan": (lambda: ops.regression_loss(X, X, "huber", float("nan")), ValueError,
                        r"delta must be > 0 .* got nan"),
    "huber-delta-overflow": (lambda: ops.regression_loss(X, X, "huber", 1e39), ValueError,
                             r"delta must be > 0 and finite in float32"),
    "huber-delta-type": (lambda: ops.regression_loss(X, X, "huber", "1"), TypeError,
                         r"delta must be a real number, got str"),
    "loss-device": (lambda: ops.sigmoid_cross_entropy(X, X, device="gpu"), ValueError,
                    r"device must be 'cpu' or 'cuda', got 'gpu'"),
}


@pytest.mark.parametrize("call, exc, match", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_delta_is_ignored_by_the_other_kinds():
    loss, dy = ops.regression_loss([1.0, 3.0], [0.0, 0.0], "mean_squared_error", delta=-1.0)
    assert loss == 5.0 and np.array_equal(dy, np.array([1.0, 3.0], np.float32))
