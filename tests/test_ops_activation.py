"""The element-wise activations and the softmax's gradient: fastnn.ops against
fastnn.reference on every backend (test_ops.py's harness and tolerance), the reference's
gradients against central finite differences and its forms against Keras's formulas, the
conventions at the kinks, and the bindings' argument checks.

    pytest tests/test_ops_activation.py          # every backend (cuda skips without a GPU)
    pytest -m gpu tests/test_ops_activation.py   # the cuda backend only
"""
import math

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref
from test_ops import SEED, assert_close, backend, floats, rng_for, shape_id  # noqa: F401

# (kind, parameters): every kind once with Keras's defaults, the parameterised kinds again.
ACTIVATION_CASES = [
    ("linear", {}), ("relu", {}),
    ("relu_clipped", {"alpha": 0.1, "beta": 6.0, "gamma": 0.5}),
    ("relu_clipped", {"alpha": 0.0, "beta": math.inf, "gamma": 0.0}),  # a plain ReLU
    ("relu_clipped", {"alpha": 0.2, "beta": 1.5, "gamma": -1.0}),
    ("relu6", {}), ("sigmoid", {}), ("tanh", {}),
    ("elu", {"alpha": 1.0}), ("elu", {"alpha": 0.5}), ("selu", {}),
    ("gelu", {}), ("gelu_tanh", {}), ("swish", {}), ("silu", {}),
    ("leaky_relu", {"alpha": 0.2}), ("softplus", {}), ("softsign", {}),
    ("hard_sigmoid", {}), ("hard_swish", {}), ("hard_silu", {}),
    ("exponential", {}), ("mish", {}),
    ("affine", {"alpha": 1 / 255, "beta": -0.5}),
]
# Counts 1, 3, 5, 17 (vector tails), 1000, 70000 (five of the CPU's 16 Ki-float thread
# blocks), and one 4-D array.
SHAPES = [(1,), (3,), (5,), (17,), (1000,), (70000,), (2, 3, 5, 7)]


def case_id(case):
    kind, params = case
    return "-".join([kind] + [f"{k[0]}{v:g}" for k, v in params.items()])


def kinks(params):
    """Where the piecewise kinds change slope or are cut off: each is also tested exactly."""
    points = [0.0, -3.0, 3.0, 6.0, params.get("gamma", 0.0), params.get("beta", 0.0)]
    return [p for p in points if math.isfinite(p)]


def inputs(rng, shape, kind, params):
    """Normal values (sd 4) with every 7th element special: the kinks exactly, next to them,
    large magnitudes (±30, where sigmoid-like forms must not overflow or cancel) and mish's
    switch to x past 20. exponential keeps to [-10, 10]: e^30 would outweigh the rest."""
    x = floats(rng, *shape, scale=4.0)
    special = []
    for k in kinks(params):
        special += [k, k - 1e-3, k + 1e-3]
    special += [30.0, -30.0, 20.5, 19.5, 9.0, -9.0, 1e-6, -1e-6]
    if kind == "exponential":
        np.clip(x, -10.0, 10.0, out=x)
        special = [s for s in special if abs(s) <= 10.0]
    flat = x.reshape(-1)
    flat[::7] = np.resize(np.array(special, np.float32), flat[::7].shape)
    return x


# ---- every kind against the reference, forward and backward -------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=case_id)
def test_activation(backend, case, shape):
    kind, params = case
    rng = rng_for("activation", kind, str(params), shape)
    x, dy = inputs(rng, shape, kind, params), floats(rng, *shape)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y = ops.activation(x, kind, **params, device=backend)
    assert y.dtype == np.float32 and y.shape == shape
    assert_close(y, ref.activation(x64, kind, **params), "y")
    dx = ops.activation_backward(x, dy, kind, **params, device=backend)
    assert dx.dtype == np.float32 and dx.shape == shape
    assert_close(dx, ref.activation_backward(x64, dy64, kind, **params), "dx")
    # The forward's output passed in (as the engine does) gives the same bits.
    assert np.array_equal(ops.activation_backward(x, dy, kind, **params, device=backend, y=y), dx)


def test_relu_kind_matches_relu_op(backend):
    rng = rng_for("relu_kind")
    x, dy = floats(rng, 1000), floats(rng, 1000)
    x[::5] = 0.0
    assert np.array_equal(ops.activation(x, "relu", device=backend), ops.relu(x, device=backend))
    assert np.array_equal(ops.activation_backward(x, dy, "relu", device=backend),
                          ops.relu_backward(x, dy, device=backend))


# ---- the kinks ----------------------------------------------------------------------------
# (kind, parameters, x, the gradient there): one side's slope, as TensorFlow's gradients.
KINK_GRADIENTS = [
    ("relu", {}, 0.0, 0.0),
    ("relu6", {}, 0.0, 0.0), ("relu6", {}, 6.0, 0.0),
    ("leaky_relu", {"alpha": 0.2}, 0.0, 0.2),
    ("elu", {"alpha": 0.5}, 0.0, 0.5),
    ("selu", {}, 0.0, 1.0507009873554804934 * 1.6732632423543772848),
    ("hard_sigmoid", {}, -3.0, 0.0), ("hard_sigmoid", {}, 3.0, 0.0),
    ("hard_swish", {}, -3.0, 0.0), ("hard_swish", {}, 3.0, 1.0),
    ("relu_clipped", {"alpha": 0.1, "beta": 6.0, "gamma": 0.5}, 0.5, 0.1),
    ("relu_clipped", {"alpha": 0.1, "beta": 6.0, "gamma": 0.5}, 6.0, 0.0),
    ("relu_clipped", {"alpha": 0.0, "beta": math.inf, "gamma": 0.0}, 0.0, 0.0),
]


@pytest.mark.parametrize("kind, params, x, grad", KINK_GRADIENTS,
                         ids=[f"{k}-{x:g}" for k, _, x, _ in KINK_GRADIENTS])
def test_gradient_at_kink(backend, kind, params, x, grad):
    assert ref.activation_backward(np.array([x]), np.array([1.0]), kind, **params)[0] == \
        pytest.approx(grad, rel=1e-15)
    dx = ops.activation_backward(np.array([x], np.float32), np.array([1.0], np.float32), kind,
                                 **params, device=backend)
    assert dx[0] == pytest.approx(grad, rel=1e-6)


def test_relu_clipped_values_at_its_corners(backend):
    """x >= threshold takes min(x, max_value) (ops.h), below it slope·(x − threshold)."""
    x = np.array([-1.0, 0.5, 2.0, 6.0, 7.0], np.float32)
    y = ops.activation(x, "relu_clipped", alpha=0.1, beta=6.0, gamma=0.5, device=backend)
    assert_close(y, [-0.15, 0.5, 2.0, 6.0, 6.0], "y")


# ---- softmax's gradient -------------------------------------------------------------------
# (5000, 10) crosses the CPU's blocks of rows.
SOFTMAX_SHAPES = [(1, 1), (3, 5), (17, 17), (64, 10), (5, 1000), (5000, 10)]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=shape_id)
def test_softmax_backward(backend, shape):
    rng = rng_for("softmax_backward", shape)
    y = ref.softmax(floats(rng, *shape, scale=3.0).astype(np.float64)).astype(np.float32)
    dy = floats(rng, *shape)
    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    dx = ops.softmax_backward(y, dy, device=backend)
    assert dx.dtype == np.float32 and dx.shape == shape
    # A row's dx cancels to near 0 where dy is nearly constant: measure against the terms.
    terms = y64 * (np.abs(dy64) + (np.abs(dy64) * y64).sum(axis=1, keepdims=True))
    assert_close(dx, ref.softmax_backward(y64, dy64), "dx", terms)
    assert np.array_equal(ops.softmax_backward(y, dy, device=backend), dx)  # fixed order


def test_softmax_backward_is_the_gradient_of_softmax(backend):
    """Through the forward: sum(softmax(z) * dy) differentiated by finite differences."""
    rng = rng_for("softmax_backward_fd")
    z, dy = rng.standard_normal((4, 7)), rng.standard_normal((4, 7))
    h, numeric = 1e-6, np.zeros_like(z)
    for index in np.ndindex(z.shape):
        step = np.zeros_like(z)
        step[index] = h
        numeric[index] = ((ref.softmax(z + step) * dy).sum()
                          - (ref.softmax(z - step) * dy).sum()) / (2 * h)
    np.testing.assert_allclose(ref.softmax_backward(ref.softmax(z), dy), numeric,
                               rtol=1e-6, atol=1e-9)
    dx = ops.softmax_backward(ref.softmax(z).astype(np.float32), dy.astype(np.float32),
                              device=backend)
    assert_close(dx, numeric, "dx")


# ---- threads ------------------------------------------------------------------------------

@pytest.mark.usefixtures("restore_runtime")
def test_results_do_not_depend_on_thread_count():
    rng = rng_for("activation_threads")
    x, dy = floats(rng, 70000, scale=4.0), floats(rng, 70000)
    y = ref.softmax(floats(rng, 5000, 10).astype(np.float64)).astype(np.float32)
    p = floats(rng, 5000, 10)

    def run():
        out = [ops.softmax_backward(y, p)]
        for kind, params in ACTIVATION_CASES:
            out.append(ops.activation(x, kind, **params))
            out.append(ops.activation_backward(x, dy, kind, **params))
        return out
    fastnn.set_num_threads(1)
    single = run()
    fastnn.set_num_threads(max(2, fastnn.build_info()["max_threads"]))
    for a, b in zip(single, run()):
        assert np.array_equal(a, b)


# ---- the reference itself -----------------------------------------------------------------

@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=case_id)
def test_reference_gradient_matches_finite_differences(case):
    kind, params = case
    rng = np.random.default_rng([SEED, 17])
    x = np.concatenate([rng.uniform(-4, 4, 300), rng.uniform(-25, 25, 100)])
    x = x[np.min(np.abs(x[:, None] - np.array(kinks(params))[None, :]), axis=1) > 1e-4]
    h = 1e-6
    numeric = (ref.activation(x + h, kind, **params)
               - ref.activation(x - h, kind, **params)) / (2 * h)
    analytic = ref.activation_backward(x, np.ones_like(x), kind, **params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8,
                               err_msg=f"{kind} {params} (FASTNN_TEST_SEED={SEED})")


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def _softplus(v):
    return math.log(1 + math.exp(v))


# The definitions of ops.h's comment on Act (Keras 3's), written plainly, for moderate x.
KERAS_FORMULAS = {
    "linear": lambda v, a, b, g: v,
    "relu": lambda v, a, b, g: max(v, 0.0),
    "relu_clipped": lambda v, a, b, g: min(v, b) if v >= g else a * (v - g),
    "relu6": lambda v, a, b, g: min(max(v, 0.0), 6.0),
    "sigmoid": lambda v, a, b, g: _sigmoid(v),
    "tanh": lambda v, a, b, g: math.tanh(v),
    "elu": lambda v, a, b, g: v if v > 0 else a * (math.exp(v) - 1),
    "selu": lambda v, a, b, g: 1.0507009873554805 * (v if v > 0 else
                                                     1.6732632423543772 * (math.exp(v) - 1)),
    "gelu": lambda v, a, b, g: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
    "gelu_tanh": lambda v, a, b, g: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi)
                                                             * (v + 0.044715 * v ** 3))),
    "swish": lambda v, a, b, g: v * _sigmoid(v),
    "silu": lambda v, a, b, g: v * _sigmoid(v),
    "leaky_relu": lambda v, a, b, g: v if v >= 0 else a * v,
    "softplus": lambda v, a, b, g: _softplus(v),
    "softsign": lambda v, a, b, g: v / (1 + abs(v)),
    "hard_sigmoid": lambda v, a, b, g: min(max(v + 3, 0.0), 6.0) / 6,
    "hard_swish": lambda v, a, b, g: v * min(max(v + 3, 0.0), 6.0) / 6,
    "hard_silu": lambda v, a, b, g: v * min(max(v + 3, 0.0), 6.0) / 6,
    "exponential": lambda v, a, b, g: math.exp(v),
    "mish": lambda v, a, b, g: v * math.tanh(_softplus(v)),
    "affine": lambda v, a, b, g: v * a + b,
}


@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=case_id)
def test_reference_matches_keras_formulas(case):
    kind, params = case
    a, b, g = (params.get(k, 0.0) for k in ("alpha", "beta", "gamma"))
    x = np.concatenate([np.linspace(-8, 8, 161), kinks(params)])
    expected = [KERAS_FORMULAS[kind](float(v), a, b, g) for v in x]
    np.testing.assert_allclose(ref.activation(x, kind, **params), expected, rtol=1e-12,
                               atol=1e-13)


def test_every_kind_is_tested():
    assert {kind for kind, _ in ACTIVATION_CASES} == set(ref.ACTIVATION_KINDS) == \
        set(KERAS_FORMULAS)


# ---- argument checks ----------------------------------------------------------------------

def test_unknown_kind_names_the_supported_ones():
    x = np.ones(3, np.float32)
    for call in (lambda: ops.activation(x, "relux"),
                 lambda: ops.activation_backward(x, x, "relux")):
        with pytest.raises(ValueError, match="kind must be one of") as error:
            call()
        message = str(error.value)
        assert "got 'relux'" in message
        for kind in ref.ACTIVATION_KINDS:
            assert f"'{kind}'" in message
    with pytest.raises(ValueError, match="kind must be one of"):
        ref.activation(x, "relux")


def test_softmax_is_not_an_element_wise_kind():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="softmax_backward"):
        ops.activation(x, "softmax")
    with pytest.raises(ValueError, match="softmax_backward"):
        ops.activation_backward(x, x, "softmax")


def test_bad_activation_arguments():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="kind must be"):
        ops.activation(x, 3)
    with pytest.raises(ValueError, match="alpha must be finite"):
        ops.activation(x, "elu", alpha=math.nan)
    with pytest.raises(ValueError, match="gamma must be finite"):
        ops.activation(x, "relu_clipped", gamma=-math.inf)
    with pytest.raises(ValueError, match="alpha must be finite in float32"):
        ops.activation(x, "leaky_relu", alpha=1e300)
    with pytest.raises(ValueError, match="beta must be finite"):
        ops.activation(x, "affine", alpha=1.0, beta=math.inf)
    with pytest.raises(ValueError, match="beta must be finite"):
        ops.activation(x, "relu_clipped", beta=-math.inf)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        ops.activation(x, "elu", alpha="1")
    with pytest.raises(ValueError, match="x must not be empty"):
        ops.activation(np.ones((0, 3), np.float32), "relu")
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\)"):
        ops.activation_backward(x, np.ones((3, 2), np.float32), "tanh")
    with pytest.raises(ValueError, match=r"y must have shape \(2, 3\)"):
        ops.activation_backward(x, x, "exponential", y=np.ones(6, np.float32))
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        ops.activation(x, "relu", device="gpu")


def test_bad_softmax_backward_arguments():
    y = np.full((2, 3), 1 / 3, np.float32)
    with pytest.raises(ValueError, match="y must be a 2-D array"):
        ops.softmax_backward(y.ravel(), y.ravel())
    with pytest.raises(ValueError, match="y must not be empty"):
        ops.softmax_backward(np.ones((0, 3), np.float32), np.ones((0, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\)"):
        ops.softmax_backward(y, np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="y must be 2-D"):
        ref.softmax_backward(y.ravel(), y.ravel())
