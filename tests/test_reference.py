"""Checks of fastnn.reference, the NumPy spec: gradients against central finite
differences, forward ops against naive loops, Keras's padding arithmetic, stability
of the fused softmax cross-entropy, Adam and SGD against hand-computed examples, dtypes."""

import math

import numpy as np
import pytest

from fastnn import reference as ref


def numerical_grad(objective, array, eps=1e-6):
    """Central finite differences of the scalar objective() wrt every element of array.

    array is perturbed in place and restored, so objective must read it directly.
    """
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        original = array[idx]
        array[idx] = original + eps
        plus = objective()
        array[idx] = original - eps
        minus = objective()
        array[idx] = original
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def assert_grad_close(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (28, 3, 2, "same", (14, 0, 1)),
        (5, 2, 1, "same", (5, 0, 1)),
        (5, 3, 1, "same", (5, 1, 1)),
        (7, 3, 2, "SAME", (4, 1, 1)),
        (6, 5, 2, "same", (3, 1, 2)),
        (6, 1, 2, "same", (3, 0, 0)),
        (7, 1, 3, "same", (3, 0, 0)),
        (28, 5, 1, "valid", (24, 0, 0)),
        (7, 3, 2, "Valid", (3, 0, 0)),
        (4, 3, 3, "valid", (1, 0, 0)),
        (3, 3, 1, "valid", (1, 0, 0)),
    ],
)
def test_conv_output_size_follows_keras(size, kernel, stride, padding, expected):
    assert ref.conv_output_size(size, kernel, stride, padding) == expected


def test_conv_output_size_rejects_bad_input():
    with pytest.raises(ValueError):
        ref.conv_output_size(2, 3, 1, "valid")
    with pytest.raises(ValueError):
        ref.conv_output_size(5, 3, 1, "full")


def naive_conv2d(x, w, b, strides, padding):
    """Direct loops over every output element: independent of the im2col in ref."""
    sh, sw = (strides, strides) if np.isscalar(strides) else strides
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, top, _ = ref.conv_output_size(h, kh, sh, padding)
    ow, left, _ = ref.conv_output_size(wd, kw, sw, padding)
    y = np.zeros((n, oh, ow, cout))
    for bi in range(n):
        for p in range(oh):
            for q in range(ow):
                for o in range(cout):
                    acc = b[o]
                    for i in range(kh):
                        for j in range(kw):
                            r, c = p * sh + i - top, q * sw + j - left
                            if 0 <= r < h and 0 <= c < wd:
                                acc += x[bi, r, c, :] @ w[i, j, :, o]
                    y[bi, p, q, o] = acc
    return y


# (N, H, W, Cin, KH, KW, Cout, strides, padding)
CONV_CONFIGS = [
    (2, 5, 5, 3, 3, 3, 2, 1, "valid"),
    (1, 5, 5, 1, 3, 3, 2, 1, "same"),
    (1, 7, 6, 1, 3, 3, 2, 2, "same"),
    (2, 5, 4, 3, 2, 2, 3, 1, "same"),
    (1, 6, 5, 3, 2, 2, 2, 2, "same"),
    (2, 5, 5, 3, 1, 1, 4, 2, "same"),
    (1, 7, 5, 1, 5, 3, 2, (2, 1), "same"),
    (1, 6, 7, 3, 5, 3, 2, (1, 2), "valid"),
    (1, 4, 4, 2, 3, 3, 2, 3, "valid"),
]


def conv_inputs(rng, n, h, w, cin, kh, kw, cout):
    return (rng.standard_normal((n, h, w, cin)),
            rng.standard_normal((kh, kw, cin, cout)),
            rng.standard_normal(cout))


@pytest.mark.parametrize("n, h, w, cin, kh, kw, cout, strides, padding", CONV_CONFIGS)
def test_conv2d_matches_naive_loops(n, h, w, cin, kh, kw, cout, strides, padding):
    rng = np.random.default_rng(0)
    x, wt, b = conv_inputs(rng, n, h, w, cin, kh, kw, cout)
    y = ref.conv2d(x, wt, b, strides=strides, padding=padding)
    expected = naive_conv2d(x, wt, b, strides, padding)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_same_output_shapes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 28, 28, 1))
    w = rng.standard_normal((3, 3, 1, 4))
    assert ref.conv2d(x, w, None, strides=2, padding="same").shape == (1, 14, 14, 4)
    assert ref.conv2d(x, w, None, padding="same").shape == (1, 28, 28, 4)
    x = rng.standard_normal((2, 5, 5, 3))
    w = rng.standard_normal((2, 2, 3, 1))
    assert ref.conv2d(x, w, None, padding="same").shape == (2, 5, 5, 1)


def test_conv2d_same_even_kernel_pads_bottom_right():
    # 2x2 ones kernel on size 5, 'same': pads (0, 1), so the last row and column
    # each see one row/column of zeros and y[4, 4] is x[4, 4] alone.
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    y = ref.conv2d(x, np.ones((2, 2, 1, 1)), None, padding="same")
    assert y[0, 0, 0, 0] == x[0, 0:2, 0:2, 0].sum()
    assert y[0, 4, 4, 0] == x[0, 4, 4, 0]


def test_conv2d_without_bias_equals_zero_bias():
    rng = np.random.default_rng(2)
    x, w, _ = conv_inputs(rng, 2, 5, 5, 3, 3, 3, 4)
    np.testing.assert_array_equal(ref.conv2d(x, w, None), ref.conv2d(x, w, np.zeros(4)))


@pytest.mark.parametrize("n, h, w, cin, kh, kw, cout, strides, padding", CONV_CONFIGS)
def test_conv2d_backward_matches_finite_differences(n, h, w, cin, kh, kw, cout, strides, padding):
    rng = np.random.default_rng(3)
    x, wt, b = conv_inputs(rng, n, h, w, cin, kh, kw, cout)
    r = rng.standard_normal(ref.conv2d(x, wt, b, strides, padding).shape)

    def objective():
        return np.sum(ref.conv2d(x, wt, b, strides, padding) * r)

    dx, dw, db = ref.conv2d_backward(x, wt, r, strides, padding)
    assert dx.shape == x.shape and dw.shape == wt.shape and db.shape == b.shape
    assert_grad_close(dx, numerical_grad(objective, x))
    assert_grad_close(dw, numerical_grad(objective, wt))
    assert_grad_close(db, numerical_grad(objective, b))


def test_conv2d_rejects_mismatched_shapes():
    x = np.zeros((1, 5, 5, 3))
    with pytest.raises(ValueError):
        ref.conv2d(x, np.zeros((3, 3, 2, 4)), None)
    with pytest.raises(ValueError):
        ref.conv2d(x[0], np.zeros((3, 3, 3, 4)), None)
    with pytest.raises(ValueError):
        ref.conv2d(x, np.zeros((3, 3, 3, 4)), None, padding="full")
    with pytest.raises(ValueError):
        ref.conv2d_backward(x, np.zeros((3, 3, 3, 4)), np.zeros((1, 5, 5, 4)))


# ---------------------------------------------------------------------------
# dense and gemm
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_transposes(trans_a, trans_b):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 5))
    b = rng.standard_normal((5, 4))
    a_stored = a.T.copy() if trans_a else a
    b_stored = b.T.copy() if trans_b else b
    c = ref.gemm(a_stored, b_stored, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(c, a @ b, rtol=1e-14, atol=1e-14)


def test_gemm_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ref.gemm(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError):
        ref.gemm(np.zeros(3), np.zeros((3, 4)))


def test_dense_forward():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    np.testing.assert_allclose(ref.dense(x, w, b), x @ w + b, rtol=1e-14)
    np.testing.assert_allclose(ref.dense(x, w, None), x @ w, rtol=1e-14)


@pytest.mark.parametrize("n, n_in, n_out", [(1, 3, 2), (4, 5, 3)])
def test_dense_backward_matches_finite_differences(n, n_in, n_out):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, n_in))
    w = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out)
    r = rng.standard_normal((n, n_out))

    def objective():
        return np.sum(ref.dense(x, w, b) * r)

    dx, dw, db = ref.dense_backward(x, w, r)
    assert_grad_close(dx, numerical_grad(objective, x))
    assert_grad_close(dw, numerical_grad(objective, w))
    assert_grad_close(db, numerical_grad(objective, b))


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------

# (shape, pool_size, strides)
POOL_CONFIGS = [
    ((2, 6, 6, 3), (2, 2), None),
    ((1, 5, 7, 2), (2, 3), None),
    ((1, 5, 6, 2), 3, 1),
    ((2, 7, 5, 2), (3, 2), (2, 1)),
    ((1, 7, 7, 1), 2, 3),
]


def naive_maxpool2d(x, pool_size, strides):
    ph, pw = (pool_size, pool_size) if np.isscalar(pool_size) else pool_size
    if strides is None:
        strides = (ph, pw)
    sh, sw = (strides, strides) if np.isscalar(strides) else strides
    n, h, w, c = x.shape
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    y = np.empty((n, oh, ow, c))
    for p in range(oh):
        for q in range(ow):
            y[:, p, q, :] = x[:, p * sh:p * sh + ph, q * sw:q * sw + pw, :].max(axis=(1, 2))
    return y


def distinct_values(rng, shape):
    """Values at least 0.1 apart, so no finite-difference step changes an argmax."""
    return rng.permutation(math.prod(shape)).reshape(shape) * 0.1


@pytest.mark.parametrize("shape, pool_size, strides", POOL_CONFIGS)
def test_maxpool2d_matches_naive_loops(shape, pool_size, strides):
    x = np.random.default_rng(7).standard_normal(shape)
    np.testing.assert_array_equal(ref.maxpool2d(x, pool_size, strides),
                                  naive_maxpool2d(x, pool_size, strides))


@pytest.mark.parametrize("shape, pool_size, strides", POOL_CONFIGS)
def test_maxpool2d_backward_matches_finite_differences(shape, pool_size, strides):
    rng = np.random.default_rng(8)
    x = distinct_values(rng, shape)
    r = rng.standard_normal(ref.maxpool2d(x, pool_size, strides).shape)

    def objective():
        return np.sum(ref.maxpool2d(x, pool_size, strides) * r)

    dx = ref.maxpool2d_backward(x, r, pool_size, strides)
    assert_grad_close(dx, numerical_grad(objective, x))


def test_maxpool2d_backward_ties_go_to_first_maximum():
    # All-equal windows: each gradient lands on its window's top-left element.
    x = np.zeros((1, 4, 4, 1))
    dy = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(ref.maxpool2d_backward(x, dy)[0, :, :, 0], expected)

    # Tie between (0, 1) and (1, 0): row-major order picks (0, 1).
    x = np.array([[0.0, 5.0], [5.0, 1.0]]).reshape(1, 2, 2, 1)
    dx = ref.maxpool2d_backward(x, np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_maxpool2d_backward_overlapping_windows_add():
    # Row [3, 5, 5], pool (1, 2), stride 1: window [3, 5] picks column 1, and the
    # tied window [5, 5] also picks column 1 (its first maximum), so both add there.
    x = np.array([3.0, 5.0, 5.0]).reshape(1, 1, 3, 1)
    dy = np.array([2.0, 7.0]).reshape(1, 1, 2, 1)
    dx = ref.maxpool2d_backward(x, dy, pool_size=(1, 2), strides=1)
    np.testing.assert_array_equal(dx.ravel(), [0.0, 9.0, 0.0])

    # A single peak shared by all four 2x2 windows of a 3x3 input collects all of dy.
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 9.0
    dy = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    dx = ref.maxpool2d_backward(x, dy, pool_size=2, strides=1)
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


def test_maxpool2d_rejects_pool_larger_than_input():
    with pytest.raises(ValueError):
        ref.maxpool2d(np.zeros((1, 1, 4, 1)), pool_size=2)


# ---------------------------------------------------------------------------
# relu
# ---------------------------------------------------------------------------

def test_relu_forward_and_zero_gradient_at_zero():
    x = np.array([-2.0, -0.0, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(ref.relu(x), [0.0, 0.0, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(ref.relu_backward(x, np.full(5, 7.0)), [0.0, 0.0, 0.0, 7.0, 7.0])


def test_relu_backward_matches_finite_differences():
    rng = np.random.default_rng(9)
    # Magnitudes of at least 0.1 keep every finite-difference step on one side of the kink.
    x = rng.uniform(0.1, 1.0, (3, 4, 5)) * rng.choice([-1.0, 1.0], (3, 4, 5))
    r = rng.standard_normal(x.shape)

    def objective():
        return np.sum(ref.relu(x) * r)

    assert_grad_close(ref.relu_backward(x, r), numerical_grad(objective, x))


# ---------------------------------------------------------------------------
# softmax and cross-entropy
# ---------------------------------------------------------------------------

def test_softmax_rows():
    rng = np.random.default_rng(10)
    logits = rng.standard_normal((4, 6))
    p = ref.softmax(logits)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=1e-14)
    np.testing.assert_array_equal(ref.softmax(np.array([[1e30, 0.0, -1e30]])), [[1.0, 0.0, 0.0]])


def test_softmax_cross_entropy_value():
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    loss, _ = ref.softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), labels])), rel=1e-13)


@pytest.mark.parametrize("n, classes", [(1, 3), (5, 4)])
def test_softmax_cross_entropy_gradient_matches_finite_differences(n, classes):
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((n, classes)) * 3
    labels = rng.integers(0, classes, n)

    def objective():
        return ref.softmax_cross_entropy(logits, labels)[0]

    _, dlogits = ref.softmax_cross_entropy(logits, labels)
    assert_grad_close(dlogits, numerical_grad(objective, logits))


def test_softmax_cross_entropy_huge_logits_are_exact():
    # After subtracting the row max, exp gives exactly [1, 0], so logsumexp is exactly
    # the max and loss = max - logit[label] with no rounding.
    logits = np.array([[1e30, 0.0]])
    loss, dlogits = ref.softmax_cross_entropy(logits, np.array([0]))
    assert loss == 0.0
    np.testing.assert_array_equal(dlogits, [[0.0, 0.0]])

    loss, dlogits = ref.softmax_cross_entropy(logits, np.array([1]))
    assert loss == 1e30
    np.testing.assert_array_equal(dlogits, [[1.0, -1.0]])

    logits = np.array([[-1e30, 0.0, 5.0], [1e30, -1e30, 0.0]])
    loss, dlogits = ref.softmax_cross_entropy(logits, np.array([2, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert loss == pytest.approx(np.log1p(np.exp(-5.0)) / 2, rel=1e-14)

    logits32 = np.array([[1e30, -1e30]], np.float32)
    loss32, dlogits32 = ref.softmax_cross_entropy(logits32, np.array([1]))
    assert np.isfinite(loss32) and np.all(np.isfinite(dlogits32))
    assert loss32 == pytest.approx(2e30, rel=1e-6)


def test_softmax_cross_entropy_rejects_bad_labels():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError):
        ref.softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError):
        ref.softmax_cross_entropy(logits, np.array([0, 1, 2]))


# ---------------------------------------------------------------------------
# adam
# ---------------------------------------------------------------------------

def test_adam_update_two_steps_by_hand():
    lr, beta_1, beta_2, epsilon = 0.01, 0.9, 0.999, 1e-7
    param0 = [0.5, -1.0, 2.0]
    grads = [[0.1, -0.2, 0.3], [-0.05, 0.4, 0.0]]

    # Keras 3's Adam in plain Python floats, element by element.
    expected_param, m_e, v_e = list(param0), [0.0] * 3, [0.0] * 3
    expected_after_step = []
    for step, g in enumerate(grads, start=1):
        alpha = lr * math.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
        for k in range(3):
            m_e[k] += (g[k] - m_e[k]) * (1 - beta_1)
            v_e[k] += (g[k] * g[k] - v_e[k]) * (1 - beta_2)
            expected_param[k] -= alpha * m_e[k] / (math.sqrt(v_e[k]) + epsilon)
        expected_after_step.append(list(expected_param))

    param = np.array(param0)
    m, v = np.zeros(3), np.zeros(3)
    param_id, m_id, v_id = id(param), id(m), id(v)
    for step, g in enumerate(grads, start=1):
        assert ref.adam_update(param, np.array(g), m, v, step, lr, beta_1, beta_2, epsilon) is None
        np.testing.assert_allclose(param, expected_after_step[step - 1], rtol=1e-15, atol=0)
        if step == 1:
            # Step 1 moves each weight by almost exactly lr against its gradient's sign
            # (less only by epsilon's share): Adam's bias correction at work.
            np.testing.assert_allclose(param0 - param, lr * np.sign(g), rtol=1e-4)
    assert (id(param), id(m), id(v)) == (param_id, m_id, v_id)
    np.testing.assert_allclose(m, m_e, rtol=1e-15)
    np.testing.assert_allclose(v, v_e, rtol=1e-15)


def test_adam_update_keeps_float32():
    param = np.array([0.5, -1.0, 2.0], np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    ref.adam_update(param, np.array([0.1, -0.2, 0.3], np.float32), m, v, step=1)
    assert param.dtype == m.dtype == v.dtype == np.float32
    np.testing.assert_allclose(param, [0.499, -0.999, 1.999], rtol=1e-6)
    with pytest.raises(ValueError):
        ref.adam_update(param, param, m, v, step=0)


# ---------------------------------------------------------------------------
# sgd
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.5, True)],
                         ids=["plain", "momentum", "nesterov"])
def test_sgd_update_two_steps_by_hand(momentum, nesterov):
    lr = 0.1
    param0 = [0.5, -1.0, 2.0]
    grads = [[0.1, -0.2, 0.3], [-0.05, 0.4, 0.0]]

    # Keras 3's SGD in plain Python floats, element by element.
    expected_param, u = list(param0), [0.0] * 3
    expected_after_step = []
    for g in grads:
        for k in range(3):
            if momentum == 0:
                expected_param[k] -= lr * g[k]
            else:
                u[k] = momentum * u[k] - lr * g[k]
                expected_param[k] += momentum * u[k] - lr * g[k] if nesterov else u[k]
        expected_after_step.append(list(expected_param))

    param = np.array(param0)
    velocity = np.zeros(3)
    param_id, velocity_id = id(param), id(velocity)
    for step, g in enumerate(grads):
        assert ref.sgd_update(param, np.array(g), velocity, lr, momentum, nesterov) is None
        np.testing.assert_allclose(param, expected_after_step[step], rtol=1e-15, atol=0)
        if step == 0 and not nesterov:
            # From zero velocity the first step is plain SGD's, with or without momentum.
            np.testing.assert_allclose(param, np.array(param0) - lr * np.array(g), rtol=1e-15)
    assert (id(param), id(velocity)) == (param_id, velocity_id)
    np.testing.assert_allclose(velocity, u, rtol=1e-15, atol=0)


def test_sgd_update_without_momentum_needs_no_velocity():
    param, grad = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    ref.sgd_update(param, grad, None, lr=0.2)
    np.testing.assert_allclose(param, [0.9, -2.05], rtol=1e-15)
    velocity = np.array([3.0, 4.0])
    ref.sgd_update(param, grad, velocity, lr=0.2)  # momentum 0: velocity is left alone
    np.testing.assert_allclose(param, [0.8, -2.1], rtol=1e-15)
    assert velocity.tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="velocity"):
        ref.sgd_update(param, grad, None, lr=0.2, momentum=0.9)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_on_a_constant_gradient_reaches_terminal_velocity(nesterov):
    """With a constant gradient g, velocity -> -lr * g / (1 - momentum), and each step then
    moves param by that much (Nesterov's look-ahead step is the same at the fixed point)."""
    lr, momentum, g = 0.01, 0.9, np.array([1.0, -3.0])
    param, velocity = np.zeros(2), np.zeros(2)
    for _ in range(400):
        ref.sgd_update(param, g, velocity, lr, momentum, nesterov)
    terminal = -lr * g / (1 - momentum)
    np.testing.assert_allclose(velocity, terminal, rtol=1e-12)
    before = param.copy()
    ref.sgd_update(param, g, velocity, lr, momentum, nesterov)
    np.testing.assert_allclose(param - before, terminal, rtol=1e-12)


def test_sgd_update_keeps_float32():
    param, velocity = np.array([0.5, -1.0, 2.0], np.float32), np.zeros(3, np.float32)
    grad = np.array([0.1, -0.2, 0.3], np.float32)
    ref.sgd_update(param, grad, velocity, lr=0.01, momentum=0.9, nesterov=True)
    assert param.dtype == velocity.dtype == np.float32
    np.testing.assert_allclose(velocity, [-0.001, 0.002, -0.003], rtol=1e-6)
    np.testing.assert_allclose(param, [0.5 - 0.0019, -1.0 + 0.0038, 2.0 - 0.0057], rtol=1e-6)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

def all_outputs(dtype):
    """Every public op's outputs for inputs of one dtype, flattened to a list."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 5, 5, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    dy_conv = rng.standard_normal((2, 3, 3, 4)).astype(dtype)
    xd = rng.standard_normal((2, 6)).astype(dtype)
    wd = rng.standard_normal((6, 4)).astype(dtype)
    dy_pool = rng.standard_normal((2, 2, 2, 3)).astype(dtype)
    return [
        ref.conv2d(x, w, b),
        *ref.conv2d_backward(x, w, dy_conv),
        ref.dense(xd, wd, b),
        *ref.dense_backward(xd, wd, xd @ wd),
        ref.gemm(xd, wd),
        ref.maxpool2d(x),
        ref.maxpool2d_backward(x, dy_pool),
        ref.relu(x),
        ref.relu_backward(x, x),
        ref.softmax(xd),
        *ref.softmax_cross_entropy(xd, np.array([0, 5])),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_keep_input_dtype(dtype):
    assert all(np.asarray(out).dtype == dtype for out in all_outputs(dtype))


def test_dtype_promotion():
    x32 = np.ones((1, 3, 3, 1), np.float32)
    assert ref.conv2d(x32, np.ones((2, 2, 1, 1)), None).dtype == np.float64
    x_int, w_int = np.ones((1, 3, 3, 1), np.int64), np.ones((2, 2, 1, 1), np.int32)
    assert ref.conv2d(x_int, w_int, None).dtype == np.float64
    assert ref.relu(np.arange(3)).dtype == np.float64
