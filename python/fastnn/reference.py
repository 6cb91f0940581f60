"""NumPy reference implementation of every fastnn op and its gradient: the spec.

Each C++/CUDA kernel in ``fastnn.ops`` mirrors one function here and is tested
against it. Layouts are the Keras ones: activations NHWC, conv weights HWIO
(kh, kw, cin, cout), dense weights (in, out). Every function computes in the
floating dtype of its inputs (mixed dtypes promote; integers become float64).
Backward functions return the gradients of ``sum(y * dy)`` with respect to the
forward inputs, where ``y`` is the forward output and ``dy`` the upstream gradient.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _compute_dtype(*arrays):
    """The floating dtype the inputs (None skipped) promote to; integers compute in float64."""
    dtype = np.result_type(*(np.asarray(a) for a in arrays if a is not None))
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _pair(value, name):
    """An int or a pair of ints -> (rows, cols), both positive."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_ndim(array, ndim, name):
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------

def conv_output_size(size, kernel, stride, padding):
    """Output length and padding of one spatial axis, by Keras/TensorFlow's rule.

    'valid': out = (size - kernel) // stride + 1, no padding.
    'same':  out = ceil(size / stride),
             pad_total = max((out - 1) * stride + kernel - size, 0),
             pad_before = pad_total // 2, pad_after = pad_total - pad_before
             (the odd pad goes at the bottom/right, as in TensorFlow).

    Returns (out, pad_before, pad_after).
    """
    mode = str(padding).lower()
    if mode == "valid":
        if size < kernel:
            raise ValueError(f"size {size} is smaller than kernel {kernel} with 'valid' padding")
        return (size - kernel) // stride + 1, 0, 0
    if mode == "same":
        out = -(-size // stride)
        pad_total = max((out - 1) * stride + kernel - size, 0)
        pad_before = pad_total // 2
        return out, pad_before, pad_total - pad_before
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def _conv_geometry(x, w, strides, padding):
    """Check conv shapes; return (strides, (oh, ow), ((top, bottom), (left, right)))."""
    _check_ndim(x, 4, "x")
    _check_ndim(w, 4, "w")
    if x.shape[3] != w.shape[2]:
        raise ValueError(
            f"x has {x.shape[3]} channels but w expects {w.shape[2]} (w shape {w.shape})")
    sh, sw = _pair(strides, "strides")
    oh, top, bottom = conv_output_size(x.shape[1], w.shape[0], sh, padding)
    ow, left, right = conv_output_size(x.shape[2], w.shape[1], sw, padding)
    return (sh, sw), (oh, ow), ((top, bottom), (left, right))


def _tap(a, i, j, strides, out_size):
    """View of a (N, H, W, C) at window element (i, j) of every output position.

    Element [n, p, q, c] is a[n, p*sh + i, q*sw + j, c], for p < OH and q < OW: a strided
    view, so the ops below loop over the few window elements, never over the pixels.
    """
    (sh, sw), (oh, ow) = strides, out_size
    return a[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]


def _im2col(x, kh, kw, strides, pads):
    """The receptive fields of the padded input as one matrix (im2col).

    Returns col (N*OH*OW, KH*KW*Cin): row (n, p, q), column (i, j, c) holds
    xpad[n, p*sh + i, q*sw + j, c]. The columns run in HWIO order, so that
    col @ w.reshape(-1, Cout) is the convolution: one copy and one matmul.
    """
    xpad = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    windows = sliding_window_view(xpad, (kh, kw), axis=(1, 2))[:, ::strides[0], ::strides[1]]
    n, oh, ow, cin = windows.shape[:4]  # windows is (N, OH, OW, Cin, KH, KW)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin)


def conv2d(x, w, b, strides=(1, 1), padding="valid"):
    """2-D convolution (cross-correlation, as Keras Conv2D).

    x (N, H, W, Cin), w (KH, KW, Cin, Cout), b (Cout,) or None.
    y[n, p, q, o] = b[o] + sum_{i, j, c} xpad[n, p*sh + i, q*sw + j, c] * w[i, j, c, o]
    where xpad is x zero-padded as conv_output_size says.
    Returns y (N, OH, OW, Cout).
    """
    dtype = _compute_dtype(x, w, b)
    x = np.asarray(x, dtype=dtype)
    w = np.asarray(w, dtype=dtype)
    strides, (oh, ow), pads = _conv_geometry(x, w, strides, padding)
    kh, kw, _, cout = w.shape
    col = _im2col(x, kh, kw, strides, pads)
    y = (col @ w.reshape(-1, cout)).reshape(x.shape[0], oh, ow, cout)
    if b is not None:
        y += np.asarray(b, dtype=dtype)
    return y


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid"):
    """Gradients of conv2d.

    x (N, H, W, Cin), w (KH, KW, Cin, Cout), dy (N, OH, OW, Cout).
    dw[i, j, c, o] = sum_{n, p, q} xpad[n, p*sh + i, q*sw + j, c] * dy[n, p, q, o]
    db[o]          = sum_{n, p, q} dy[n, p, q, o]
    dxpad[n, p*sh + i, q*sw + j, c] += sum_o dy[n, p, q, o] * w[i, j, c, o]
    and dx is dxpad with the padding cropped off.
    Returns (dx, dw, db) shaped like x, w and (Cout,).
    """
    return _conv2d_backward(x, w, dy, strides, padding, input_grad=True)


def _conv2d_backward(x, w, dy, strides, padding, input_grad):
    """conv2d_backward; with input_grad False, dx is None: a network's first layer needs none."""
    dtype = _compute_dtype(x, w, dy)
    x = np.asarray(x, dtype=dtype)
    w = np.asarray(w, dtype=dtype)
    dy = np.asarray(dy, dtype=dtype)
    strides, (oh, ow), pads = _conv_geometry(x, w, strides, padding)
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    if dy.shape != (n, oh, ow, cout):
        raise ValueError(f"dy must have shape {(n, oh, ow, cout)}, got {dy.shape}")

    # In im2col form y2d = col @ w.reshape(-1, Cout), so dw is col.T @ dy2d.
    dy2d = dy.reshape(-1, cout)
    dw = (_im2col(x, kh, kw, strides, pads).T @ dy2d).reshape(w.shape)
    db = dy2d.sum(axis=0)
    if not input_grad:
        return None, dw, db

    # col2im: kernel tap (i, j) sent every output (p, q) to input (p*sh + i, q*sw + j), so
    # it gets back dy @ w[i, j].T there. One batched matmul gives all taps, each contiguous.
    dtaps = np.matmul(dy2d, w.transpose(0, 1, 3, 2))  # (KH, KW, N*OH*OW, Cin)
    (top, _), (left, _) = pads
    dxpad = np.zeros((n, h + sum(pads[0]), wd + sum(pads[1]), cin), dtype=dtype)
    for i, j in np.ndindex(kh, kw):
        _tap(dxpad, i, j, strides, (oh, ow))[...] += dtaps[i, j].reshape(n, oh, ow, cin)
    dx = dxpad[:, top:top + h, left:left + wd, :]
    return dx, dw, db


# ---------------------------------------------------------------------------
# dense and gemm
# ---------------------------------------------------------------------------

def gemm(a, b, trans_a=False, trans_b=False):
    """Matrix product op(a) @ op(b) of 2-D arrays, where op(m) is m.T if its flag is set."""
    dtype = _compute_dtype(a, b)
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    _check_ndim(a, 2, "a")
    _check_ndim(b, 2, "b")
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: op(a) {a.shape} @ op(b) {b.shape}")
    return a @ b


def dense(x, w, b):
    """Fully connected layer: y = x @ w + b.

    x (N, in), w (in, out), b (out,) or None. Returns y (N, out).
    """
    dtype = _compute_dtype(x, w, b)
    y = gemm(np.asarray(x, dtype=dtype), np.asarray(w, dtype=dtype))
    if b is not None:
        y += np.asarray(b, dtype=dtype)
    return y


def dense_backward(x, w, dy):
    """Gradients of dense: dx = dy @ w.T, dw = x.T @ dy, db = dy summed over the batch.

    x (N, in), w (in, out), dy (N, out). Returns (dx, dw, db).
    """
    dtype = _compute_dtype(x, w, dy)
    dy = np.asarray(dy, dtype=dtype)
    dx = gemm(dy, w, trans_b=True)
    dw = gemm(x, dy, trans_a=True)
    return dx, dw, dy.sum(axis=0)


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------

def _pool_geometry(x, pool_size, strides, padding="valid"):
    """Check pool arguments; return ((PH, PW), (sh, sw), (OH, OW), ((top, bottom), (left, right)))
    with the output size and padding of conv_output_size."""
    _check_ndim(x, 4, "x")
    ph, pw = _pair(pool_size, "pool_size")
    sh, sw = _pair(pool_size if strides is None else strides, "strides")
    oh, top, bottom = conv_output_size(x.shape[1], ph, sh, padding)  # raises if it does not fit
    ow, left, right = conv_output_size(x.shape[2], pw, sw, padding)
    return (ph, pw), (sh, sw), (oh, ow), ((top, bottom), (left, right))


def _pad_spatial(a, pads, value):
    """a (N, H, W, C) padded along H and W with `value` (a itself when pads are all 0)."""
    if not any(pads[0] + pads[1]):
        return a
    return np.pad(a, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def maxpool2d(x, pool_size=(2, 2), strides=None, padding="valid"):
    """Max pooling (Keras MaxPooling2D).

    x (N, H, W, C); strides None means strides = pool_size.
    y[n, p, q, c] = max_{i < PH, j < PW} x[n, p*sh - top + i, q*sw - left + j, c]
    over the window positions inside x: 'same' padding's positions are never the maximum.
    OH, OW and the padding are conv_output_size's ('valid': OH = (H - PH) // sh + 1).
    Returns y (N, OH, OW, C).
    """
    x = np.asarray(x, dtype=_compute_dtype(x))
    (ph, pw), strides, out_size, pads = _pool_geometry(x, pool_size, strides, padding)
    xpad = _pad_spatial(x, pads, -np.inf)
    taps = [_tap(xpad, i, j, strides, out_size) for i, j in np.ndindex(ph, pw)]
    y = taps[0].copy()
    for tap in taps[1:]:
        np.maximum(y, tap, out=y)
    return y


def maxpool2d_backward(x, dy, pool_size=(2, 2), strides=None, padding="valid"):
    """Gradient of maxpool2d.

    x (N, H, W, C), dy (N, OH, OW, C). Each dy[n, p, q, c] goes to the position of
    the maximum of its window; on ties, to the first maximum in row-major window
    order (rows top to bottom, each row left to right) among the positions inside x.
    Where windows overlap (stride < pool) the contributions add. Returns dx shaped like x.
    """
    dtype = _compute_dtype(x, dy)
    x = np.asarray(x, dtype=dtype)
    dy = np.asarray(dy, dtype=dtype)
    (ph, pw), strides, out_size, pads = _pool_geometry(x, pool_size, strides, padding)
    y = maxpool2d(x, (ph, pw), strides, padding)
    if dy.shape != y.shape:
        raise ValueError(f"dy must have shape {y.shape}, got {dy.shape}")

    # np.ndindex walks the window row-major, so the first element equal to the maximum
    # takes the gradient: `routed` keeps every later tie out, `inside` the padding.
    xpad = _pad_spatial(x, pads, -np.inf)
    routed = np.zeros(y.shape, dtype=bool)
    overlapping = strides[0] < ph or strides[1] < pw
    dxpad = np.zeros_like(xpad)
    inside = (None if xpad is x else
              _pad_spatial(np.ones((1,) + x.shape[1:3] + (1,), dtype=bool), pads, False))
    for i, j in np.ndindex(ph, pw):
        hit = _tap(xpad, i, j, strides, out_size) == y
        if inside is not None:
            hit &= _tap(inside, i, j, strides, out_size)
        hit &= ~routed
        routed |= hit
        dx_tap = _tap(dxpad, i, j, strides, out_size)
        if overlapping:  # an element of several windows collects from each
            dx_tap += hit * dy
        else:            # each element is in one window at most: write, skip the add
            np.multiply(hit, dy, out=dx_tap)
    (top, _), (left, _) = pads
    return dxpad[:, top:top + x.shape[1], left:left + x.shape[2], :]


# ---------------------------------------------------------------------------
# relu
# ---------------------------------------------------------------------------

def relu(x):
    """y = max(x, 0), elementwise."""
    x = np.asarray(x, dtype=_compute_dtype(x))
    return np.maximum(x, 0)


def relu_backward(x, dy):
    """dx = dy * (x > 0): the gradient at x == 0 is 0, as in TensorFlow."""
    dtype = _compute_dtype(x, dy)
    x = np.asarray(x, dtype=dtype)
    return np.asarray(dy, dtype=dtype) * (x > 0)


# ---------------------------------------------------------------------------
# softmax and cross-entropy
# ---------------------------------------------------------------------------

def softmax(logits):
    """Row-wise softmax of logits (N, C): exp(z - max(z)) / sum(exp(z - max(z)))."""
    logits = np.asarray(logits, dtype=_compute_dtype(logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch and its gradient.

    logits (N, C), labels int (N,) in [0, C).
    loss    = mean_n (logsumexp(logits[n]) - logits[n, labels[n]])
    dlogits = (softmax(logits) - onehot(labels)) / N
    Both are computed on z = logits - rowmax, so they stay finite for any finite
    logits. Returns (loss, dlogits); loss is a 0-d scalar of the compute dtype.
    """
    logits = np.asarray(logits, dtype=_compute_dtype(logits))
    labels = np.asarray(labels)
    _check_ndim(logits, 2, "logits")
    n, classes = logits.shape
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be an int array of shape {(n,)}, got {labels.dtype} {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"labels must lie in [0, {classes}), got range [{labels.min()}, {labels.max()}]")

    rows = np.arange(n)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    sum_e = e.sum(axis=1)
    # logsumexp(z) = log(1 + others), others = the sum without the row maximum's e = 1
    # (its first occurrence): log1p keeps the digits of a confident row's tiny loss,
    # which log(sum_e) would round away.
    others = e.copy()
    others[rows, z.argmax(axis=1)] = 0
    loss = np.mean(np.log1p(others.sum(axis=1)) - z[rows, labels])
    dlogits = e / sum_e[:, None]
    # softmax - 1 at the label, as -(sum of the other classes' e) / sum_e: p - 1 would
    # cancel to nothing for a confident row.
    rest = e.copy()
    rest[rows, labels] = 0
    dlogits[rows, labels] = -rest.sum(axis=1) / sum_e
    dlogits /= n
    return loss, dlogits


# ---------------------------------------------------------------------------
# adam
# ---------------------------------------------------------------------------

def adam_update(param, grad, m, v, step, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step, Keras 3 semantics; updates param, m and v in place, returns None.

    step counts from 1. alpha is computed in Python float64, the rest in the arrays' dtype:
        alpha  = lr * sqrt(1 - beta_2**step) / (1 - beta_1**step)
        m     += (grad - m) * (1 - beta_1)
        v     += (grad * grad - v) * (1 - beta_2)
        param -= alpha * m / (sqrt(v) + epsilon)
    """
    if step < 1:
        raise ValueError(f"step counts from 1, got {step}")
    alpha = lr * math.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
    m += (grad - m) * (1 - beta_1)
    v += (grad * grad - v) * (1 - beta_2)
    param -= alpha * m / (np.sqrt(v) + epsilon)


# ---------------------------------------------------------------------------
# sgd
# ---------------------------------------------------------------------------

def sgd_update(param, grad, velocity, lr=0.01, momentum=0.0, nesterov=False):
    """One SGD step, Keras 3 semantics; updates param (and velocity) in place, returns None.

    In the arrays' dtype:
        momentum == 0:  param -= lr * grad           (velocity is neither read nor written;
                                                      it may be None)
        otherwise:      velocity = momentum * velocity - lr * grad
                        param   += momentum * velocity - lr * grad   if nesterov
                        param   += velocity                           otherwise
    """
    if momentum == 0:
        param -= lr * grad
        return
    if velocity is None:
        raise ValueError(f"velocity must be an array when momentum != 0 (got momentum {momentum})")
    velocity *= momentum
    velocity -= lr * grad
    if nesterov:
        param += momentum * velocity - lr * grad
    else:
        param += velocity


# ==== activations (element-wise, softmax's gradient) ====
# Keras 3's element-wise activations (keras.activations, ops.h's Act) by name, and the
# gradient of each from x. Parameters per kind: elu alpha (Keras's default 1.0);
# leaky_relu alpha (negative_slope; Keras's default 0.2); relu_clipped, Keras's
# layers.ReLU, alpha = negative_slope, beta = max_value (math.inf for none), gamma =
# threshold; affine (layers.Rescaling) y = x * alpha + beta. The others take none.
# At a kink the gradient is one side's slope, as TensorFlow's gradients pick it: relu,
# relu6, hard_sigmoid 0 at every kink; leaky_relu, elu, selu the left slope at 0;
# relu_clipped alpha at x == gamma (0 for a plain ReLU) and 0 from x == beta on;
# hard_swish 0 at -3 and 1 at 3 (the product rule of x * hard_sigmoid(x) there).

_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717
_GELU_TANH_C = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x):
    """1 / (1 + e^-x) as exp(-log(1 + e^-x)): no overflow for any x."""
    return np.exp(-np.logaddexp(0.0, -x))


def _gelu_tanh_u(x):
    return _GELU_TANH_C * (x + _GELU_CUBIC * x ** 3)


def _gelu_tanh_grad(x):
    t = np.tanh(_gelu_tanh_u(x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_TANH_C * (1 + 3 * _GELU_CUBIC * x * x)


def _mish_grad(x):
    t = np.tanh(np.logaddexp(0.0, x))
    return t + x * (1 - t * t) * _sigmoid(x)


def _tanh_grad(x):
    """1 - tanh(x)^2 as 4e / (1 + e)^2, e = e^(-2|x|): no cancellation for large |x|."""
    e = np.exp(-2 * np.abs(x))
    return 4 * e / (1 + e) ** 2


# name -> (forward, gradient), each f(x, alpha, beta, gamma).
_ACTIVATIONS = {
    "linear": (lambda x, a, b, g: x.copy(), lambda x, a, b, g: np.ones_like(x)),
    "relu": (lambda x, a, b, g: np.maximum(x, 0), lambda x, a, b, g: x > 0),
    "relu_clipped": (lambda x, a, b, g: np.where(x >= g, np.minimum(x, b), a * (x - g)),
                     lambda x, a, b, g: np.where(x > g, x < b, a)),
    "relu6": (lambda x, a, b, g: np.clip(x, 0, 6), lambda x, a, b, g: (x > 0) & (x < 6)),
    "sigmoid": (lambda x, a, b, g: _sigmoid(x), lambda x, a, b, g: _sigmoid(x) * _sigmoid(-x)),
    "tanh": (lambda x, a, b, g: np.tanh(x), lambda x, a, b, g: _tanh_grad(x)),
    "elu": (lambda x, a, b, g: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
            lambda x, a, b, g: np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0)))),
    "selu": (lambda x, a, b, g: _SELU_SCALE * np.where(
                 x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
             lambda x, a, b, g: _SELU_SCALE * np.where(
                 x > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(x, 0)))),
    "gelu": (lambda x, a, b, g: 0.5 * x * _erfc(-x / math.sqrt(2)),
             lambda x, a, b, g: 0.5 * _erfc(-x / math.sqrt(2))
             + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (lambda x, a, b, g: 0.5 * x * (1 + np.tanh(_gelu_tanh_u(x))),
                  lambda x, a, b, g: _gelu_tanh_grad(x)),
    "swish": (lambda x, a, b, g: x * _sigmoid(x),
              lambda x, a, b, g: _sigmoid(x) * (1 + x * _sigmoid(-x))),
    "leaky_relu": (lambda x, a, b, g: np.where(x >= 0, x, a * x),
                   lambda x, a, b, g: np.where(x > 0, 1.0, a)),
    "softplus": (lambda x, a, b, g: np.logaddexp(0.0, x), lambda x, a, b, g: _sigmoid(x)),
    "softsign": (lambda x, a, b, g: x / (1 + np.abs(x)),
                 lambda x, a, b, g: 1 / (1 + np.abs(x)) ** 2),
    "hard_sigmoid": (lambda x, a, b, g: np.clip(x + 3, 0, 6) / 6,
                     lambda x, a, b, g: np.where((x > -3) & (x < 3), 1 / 6, 0.0)),
    "hard_swish": (lambda x, a, b, g: x * np.clip(x + 3, 0, 6) / 6,
                   lambda x, a, b, g: np.where(x <= -3, 0.0, np.where(x >= 3, 1.0,
                                                                      (2 * x + 3) / 6))),
    "exponential": (lambda x, a, b, g: np.exp(x), lambda x, a, b, g: np.exp(x)),
    "mish": (lambda x, a, b, g: x * np.tanh(np.logaddexp(0.0, x)),
             lambda x, a, b, g: _mish_grad(x)),
    "affine": (lambda x, a, b, g: x * a + b, lambda x, a, b, g: np.full_like(x, a)),
}
_ACTIVATION_ALIASES = {"silu": "swish", "hard_silu": "hard_swish"}
ACTIVATION_KINDS = tuple(_ACTIVATIONS) + tuple(_ACTIVATION_ALIASES)


def _activation_pair(kind):
    name = _ACTIVATION_ALIASES.get(kind, kind)
    if name not in _ACTIVATIONS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, ACTIVATION_KINDS))}, "
                         f"got {kind!r}" + (" (softmax is not element-wise: use softmax and "
                                            "softmax_backward)" if kind == "softmax" else ""))
    return _ACTIVATIONS[name]


def activation(x, kind, alpha=0.0, beta=0.0, gamma=0.0):
    """y = the element-wise activation named ``kind`` of x (the kinds and their
    parameters: the comment above)."""
    x = np.asarray(x, dtype=_compute_dtype(x))
    with np.errstate(over="ignore"):  # exponential's e^x may overflow to inf, as it should
        return np.asarray(_activation_pair(kind)[0](x, alpha, beta, gamma), dtype=x.dtype)


def activation_backward(x, dy, kind, alpha=0.0, beta=0.0, gamma=0.0):
    """dx = dy * activation'(x), the derivative analytic, from x alone."""
    dtype = _compute_dtype(x, dy)
    x = np.asarray(x, dtype=dtype)
    with np.errstate(over="ignore"):
        grad = np.asarray(_activation_pair(kind)[1](x, alpha, beta, gamma), dtype=dtype)
    return np.asarray(dy, dtype=dtype) * grad


def softmax_backward(y, dy):
    """dx = y * (dy - sum_j dy_j * y_j) per row: the gradient of sum(softmax(z) * dy) wrt z,
    given y = softmax(z) (N, C) and dy (N, C)."""
    dtype = _compute_dtype(y, dy)
    y, dy = np.asarray(y, dtype=dtype), np.asarray(dy, dtype=dtype)
    _check_ndim(y, 2, "y")
    if dy.shape != y.shape:
        raise ValueError(f"dy must have the shape of y {y.shape}, got {dy.shape}")
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))



# ==== pooling (average, 'same') and batch normalisation ====

# ---------------------------------------------------------------------------
# average pooling and batch normalisation
# ---------------------------------------------------------------------------

def _pool_counts(x_shape, pool_size, strides, out_size, pads):
    """(1, OH, OW, 1): how many of each window's positions lie inside the input."""
    inside = _pad_spatial(np.ones((1,) + tuple(x_shape[1:3]) + (1,)), pads, 0)
    return sum(_tap(inside, i, j, strides, out_size) for i, j in np.ndindex(*pool_size))


def avgpool2d(x, pool_size=(2, 2), strides=None, padding="valid"):
    """Average pooling (Keras AveragePooling2D; GlobalAveragePooling2D is pool_size = (H, W)).

    x (N, H, W, C); strides None means strides = pool_size. y[n, p, q, c] is the mean of
    x[n, p*sh - top + i, q*sw - left + j, c] over the window positions i < PH, j < PW that
    lie inside x: 'same' padding's positions are not counted (TensorFlow's rule).
    Returns y (N, OH, OW, C).
    """
    x = np.asarray(x, dtype=_compute_dtype(x))
    pool, strides, out_size, pads = _pool_geometry(x, pool_size, strides, padding)
    xpad = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    total = sum(_tap(xpad, i, j, strides, out_size) for i, j in np.ndindex(*pool))
    return total / _pool_counts(x.shape, pool, strides, out_size, pads)


def avgpool2d_backward(x, dy, pool_size=(2, 2), strides=None, padding="valid"):
    """Gradient of avgpool2d: each dy[n, p, q, c] / count(p, q) goes to every position of
    its window inside x; where windows overlap the contributions add. x gives the shape.
    Returns dx shaped like x.
    """
    dtype = _compute_dtype(x, dy)
    x = np.asarray(x, dtype=dtype)
    dy = np.asarray(dy, dtype=dtype)
    pool, strides, out_size, pads = _pool_geometry(x, pool_size, strides, padding)
    n, h, w, c = x.shape
    if dy.shape != (n,) + out_size + (c,):
        raise ValueError(f"dy must have shape {(n,) + out_size + (c,)}, got {dy.shape}")
    share = dy / _pool_counts(x.shape, pool, strides, out_size, pads)
    (top, bottom), (left, right) = pads
    dxpad = np.zeros((n, h + top + bottom, w + left + right, c), dtype=dtype)
    for i, j in np.ndindex(*pool):
        _tap(dxpad, i, j, strides, out_size)[...] += share
    return dxpad[:, top:top + h, left:left + w, :]


def batchnorm_forward(x, gamma, beta, moving_mean, moving_variance, epsilon=1e-3,
                      momentum=0.99, training=True):
    """Batch normalisation over the last axis (Keras 3 BatchNormalization, axis=-1).

    x (..., C); gamma, beta, moving_mean, moving_variance (C,); gamma None means 1,
    beta None means 0. training: mean and var are the batch's, per channel over every
    other axis, var the biased variance; inference: the moving ones.
        inv_std = 1 / sqrt(var + epsilon)
        y       = (x - mean) * inv_std * gamma + beta
    Training updates the moving statistics (returned, the inputs are not changed):
        new_moving = moving * momentum + batch_statistic * (1 - momentum)
    and inference returns them unchanged.
    Returns (y, mean, inv_std, new_moving_mean, new_moving_variance).
    """
    dtype = _compute_dtype(x, gamma, beta, moving_mean, moving_variance)
    x = np.asarray(x, dtype=dtype)
    moving_mean = np.asarray(moving_mean, dtype=dtype)
    moving_variance = np.asarray(moving_variance, dtype=dtype)
    if training:
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axis=axes)
        var = np.square(x - mean).mean(axis=axes)  # two passes: no cancellation
        new_mean = moving_mean * momentum + mean * (1 - momentum)
        new_variance = moving_variance * momentum + var * (1 - momentum)
    else:
        mean, var = moving_mean, moving_variance
        new_mean, new_variance = moving_mean.copy(), moving_variance.copy()
    inv_std = 1 / np.sqrt(var + epsilon)
    y = (x - mean) * inv_std
    if gamma is not None:
        y *= np.asarray(gamma, dtype=dtype)
    if beta is not None:
        y += np.asarray(beta, dtype=dtype)
    return y, mean, inv_std, new_mean, new_variance


def batchnorm_backward(x, gamma, mean, inv_std, dy):
    """Gradients of batchnorm_forward in training (the batch statistics depend on x).

    x, dy (..., C); gamma (C,) or None (1); mean, inv_std (C,) as the forward returned.
    With xhat = (x - mean) * inv_std and rows = x.size / C:
        dbeta  = sum dy,  dgamma = sum dy * xhat   (over every axis but the last)
        dx     = gamma * inv_std / rows * (rows * dy - dbeta - xhat * dgamma)
    Returns (dx, dgamma, dbeta).
    """
    dtype = _compute_dtype(x, gamma, mean, inv_std, dy)
    x = np.asarray(x, dtype=dtype)
    dy = np.asarray(dy, dtype=dtype)
    inv_std = np.asarray(inv_std, dtype=dtype)
    axes = tuple(range(x.ndim - 1))
    rows = x.size // x.shape[-1]
    xhat = (x - np.asarray(mean, dtype=dtype)) * inv_std
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    scale = inv_std if gamma is None else np.asarray(gamma, dtype=dtype) * inv_std
    dx = scale / rows * (rows * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


# ==== losses (categorical with soft targets, sigmoid cross-entropy, regression) ====


def _check_targets(targets, shape):
    if targets.shape != shape:
        raise ValueError(f"targets must have shape {shape} (one per element), got {targets.shape}")


def categorical_cross_entropy(logits, targets):
    """Mean categorical cross-entropy of softmax(logits) against any real targets, and its
    gradient.

    logits (N, C), targets (N, C): one-hot, label-smoothed, soft, or rows not summing to 1.
    loss    = mean_n sum_j t[n, j] * (logsumexp(logits[n]) - logits[n, j])
    dlogits = (softmax(logits) * T - t) / N,   T[n] = sum_j t[n, j]
    On z = logits - rowmax, e = exp(z), S = sum_j e_j: logsumexp(z) = log1p(others) as in
    softmax_cross_entropy, and dlogits_j = (e_j * (T - t_j) - t_j * S_j) / (S * N) with
    S_j = S - e_j, the sum of the other classes' e: p_j * T - t_j would cancel to nothing
    for a confident row. Returns (loss, dlogits); loss is a 0-d scalar.
    """
    dtype = _compute_dtype(logits, targets)
    logits = np.asarray(logits, dtype=dtype)
    targets = np.asarray(targets, dtype=dtype)
    _check_ndim(logits, 2, "logits")
    _check_targets(targets, logits.shape)
    n = logits.shape[0]
    rows, top = np.arange(n), logits.argmax(axis=1)
    z = logits - logits[rows, top][:, None]
    e = np.exp(z)
    rest = e.copy()
    rest[rows, top] = 0
    others = rest.sum(axis=1)  # S - 1, summed without the 1 so that no digit is lost
    others_e = 1 + others[:, None] - e  # S - e_j
    others_e[rows, top] = others
    total = targets.sum(axis=1, keepdims=True)
    loss = np.mean(total[:, 0] * np.log1p(others) - (targets * z).sum(axis=1))
    dlogits = (e * (total - targets) - targets * others_e) / (1 + others[:, None]) / n
    return loss, dlogits


def sigmoid_cross_entropy(logits, targets):
    """Mean binary cross-entropy of sigmoid(logits) against targets, and its gradient.

    logits and targets of any one shape, count elements in all; targets any real numbers.
    loss    = mean(max(z, 0) - z * t + log1p(exp(-|z|)))
    dlogits = (sigmoid(z) - t) / count
    With s = sigmoid(-|z|) = e / (1 + e), e = exp(-|z|): sigmoid(z) - t is (1 - t) - s for
    z >= 0, else s - t, and max(z, 0) - z * t is z * (1 - t) or -z * t, so that neither
    rounds a confident prediction's tiny value away. Returns (loss, dlogits).
    """
    dtype = _compute_dtype(logits, targets)
    z = np.asarray(logits, dtype=dtype)
    t = np.asarray(targets, dtype=dtype)
    _check_targets(t, z.shape)
    e = np.exp(-np.abs(z))
    s = e / (1 + e)
    positive = z >= 0
    loss = np.mean(np.where(positive, z * (1 - t), -z * t) + np.log1p(e))
    dlogits = np.where(positive, (1 - t) - s, s - t) / z.size
    return loss, dlogits


_REGRESSION_KINDS = ("mean_squared_error", "mean_absolute_error", "huber")


def regression_loss(y, targets, kind, delta=1.0):
    """Mean regression loss over all elements and its gradient wrt y, Keras 3's losses.

    y and targets of any one shape, count elements in all; e = y - targets.
    'mean_squared_error':  mean(e**2),  dy = 2 e / count
    'mean_absolute_error': mean(|e|),   dy = sign(e) / count   (0 at e == 0)
    'huber':               mean(|e| <= delta ? e**2 / 2 : delta * (|e| - delta / 2)),
                           dy = (|e| <= delta ? e : delta * sign(e)) / count
    Returns (loss, dy).
    """
    if kind not in _REGRESSION_KINDS:
        raise ValueError(f"kind must be one of {_REGRESSION_KINDS}, got {kind!r}")
    if kind == "huber" and not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    dtype = _compute_dtype(y, targets)
    y = np.asarray(y, dtype=dtype)
    targets = np.asarray(targets, dtype=dtype)
    _check_targets(targets, y.shape)
    e = y - targets
    if kind == "mean_squared_error":
        loss, dy = np.mean(e * e), 2 * e
    elif kind == "mean_absolute_error":
        loss, dy = np.mean(np.abs(e)), np.sign(e)
    else:
        quadratic = np.abs(e) <= delta
        loss = np.mean(np.where(quadratic, 0.5 * e * e, delta * (np.abs(e) - 0.5 * delta)))
        dy = np.where(quadratic, e, delta * np.sign(e))
    return loss, dy / y.size


# ---- the counter-based hash behind dropout's, the epoch order's and augmentation's coins

_MASK64 = (1 << 64) - 1


def _splitmix64_int(z):
    """splitmix64 of one Python int, wrapping mod 2**64."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _splitmix64_array(z):
    """splitmix64 of a uint64 array, in place (NumPy array arithmetic wraps mod 2**64)."""
    z += np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


# ==== augmentation (random image layers) ====

# Keras 3's random image layers (RandomFlip, RandomTranslation, RandomRotation, RandomZoom,
# RandomCrop, RandomContrast) as one op, the spec of csrc/augment.h. Each random quantity
# is the coin u = (splitmix64(stream + k) >> 40) * 2**-24 with k = 16 * image + quantity
# (the slots below); a uniform on [lo, hi) is lo + u * (hi - lo). Drawn per image, as
# Keras draws them, except the crop's offset: one per batch (image 0's slots), as Keras.

AUGMENT_DRAWS = 16
(AUGMENT_FLIP, AUGMENT_ROTATION, AUGMENT_ZOOM_HEIGHT, AUGMENT_ZOOM_WIDTH,
 AUGMENT_TRANSLATE_HEIGHT, AUGMENT_TRANSLATE_WIDTH, AUGMENT_CONTRAST, AUGMENT_CROP_TOP,
 AUGMENT_CROP_LEFT) = range(9)
AUGMENT_MODES = ("flip", "translation", "rotation", "zoom", "crop", "contrast")
AUGMENT_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
AUGMENT_INTERPOLATIONS = ("bilinear", "nearest")


def augment_coins(stream, images, quantity):
    """u in [0, 1) for `quantity` of images 0 .. images-1 (float64, on a 2**-24 grid)."""
    z = np.arange(images, dtype=np.uint64) * np.uint64(AUGMENT_DRAWS)
    z += np.uint64((int(stream) + quantity) % 2**64)
    return (_splitmix64_array(z) >> np.uint64(40)).astype(np.float64) * 2.0 ** -24


def _augment_uniform(lo, hi, stream, images, quantity):
    return lo + augment_coins(stream, images, quantity) * (hi - lo)


def augment_crop_window(h, w, height, width, stream, training):
    """RandomCrop's input window (top, left, crop_h, crop_w) for the batch: a random offset
    when training on an input larger than the target on both axes (Keras's condition),
    else the largest centred window of the target's aspect (resized to the target)."""
    if training and h > height and w > width:
        top = int(np.floor(augment_coins(stream, 1, AUGMENT_CROP_TOP)[0] * (h - height + 1)))
        left = int(np.floor(augment_coins(stream, 1, AUGMENT_CROP_LEFT)[0] * (w - width + 1)))
        return top, left, height, width
    crop_h = max(min(h, int(float(w * height) / width)), 1)
    crop_w = max(min(w, int(float(h * width) / height)), 1)
    return (h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w


def augment_parameters(spec, stream, n, h, w):
    """The training draws of n images of h x w: {'flips': (n,) bool} for flip, {'matrices':
    (n, 6)} for rotation, zoom and translation (Keras's a0 a1 a2 b0 b1 b2: output pixel
    (row i, column j) reads the input at x = a0*j + a1*i + a2, y = b0*j + b1*i + b2),
    {'contrast': (n,)} for contrast."""
    mode = spec["mode"]
    if mode == "flip":
        return {"flips": augment_coins(stream, n, AUGMENT_FLIP) <= 0.5}  # Keras's <=
    matrices = np.zeros((n, 6))
    matrices[:, 0] = matrices[:, 4] = 1.0
    if mode == "rotation":
        lo, hi = spec["rotation"]
        angle = _augment_uniform(lo, hi, stream, n, AUGMENT_ROTATION) * 360.0 * (math.pi / 180.0)
        cos, sin = np.cos(angle), np.sin(angle)
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        matrices[:, 0], matrices[:, 1] = cos, -sin
        matrices[:, 2] = cx - cx * cos + cy * sin
        matrices[:, 3], matrices[:, 4] = sin, cos
        matrices[:, 5] = cy - cx * sin - cy * cos
    elif mode == "zoom":
        zy = 1.0 + _augment_uniform(*spec["zoom_height"], stream, n, AUGMENT_ZOOM_HEIGHT)
        width = spec.get("zoom_width")
        zx = zy if width is None else 1.0 + _augment_uniform(*width, stream, n, AUGMENT_ZOOM_WIDTH)
        matrices[:, 0], matrices[:, 2] = zx, (w - 1) / 2.0 * (1.0 - zx)
        matrices[:, 4], matrices[:, 5] = zy, (h - 1) / 2.0 * (1.0 - zy)
    elif mode == "translation":
        ty = _augment_uniform(*spec["translate_height"], stream, n, AUGMENT_TRANSLATE_HEIGHT) * h
        tx = _augment_uniform(*spec["translate_width"], stream, n, AUGMENT_TRANSLATE_WIDTH) * w
        matrices[:, 2], matrices[:, 5] = -tx, -ty
    elif mode == "contrast":
        lower, upper = spec["contrast"]
        return {"contrast": _augment_uniform(1.0 - lower, 1.0 + upper, stream, n,
                                             AUGMENT_CONTRAST)}
    else:
        raise ValueError(f"augment_parameters: mode {mode!r} has no per-image draws")
    return {"matrices": matrices}


def _fix_index(index, size, fill_mode):
    """Keras's (jax.scipy.ndimage.map_coordinates') index under each fill mode."""
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a
        r = np.mod(index, 2 * size)
        return np.where(r < size, r, 2 * size - 1 - r)
    if fill_mode == "wrap":
        return np.mod(index, size)
    return np.clip(index, 0, size - 1)  # nearest; constant's outside reads are masked


def _round_half_away(v):
    """lax.round's rounding (Keras's nearest): halves away from zero, exactly."""
    t = np.trunc(v)
    return np.where(v - t >= 0.5, t + 1, np.where(v - t <= -0.5, t - 1, t))


def affine_transform(x, matrices, interpolation="bilinear", fill_mode="reflect",
                     fill_value=0.0):
    """Keras's ops.image.affine_transform of x (N, H, W, C) by matrices (N, 6) (the first
    six entries of Keras's 8; no projective part), in float64: bilinear reads the four
    neighbours of floor(coordinate), nearest rounds half away from zero, and with fill
    'constant' every neighbour outside the image reads fill_value."""
    x = np.asarray(x, dtype=np.float64)
    n, h, w, _ = x.shape
    i, j = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                       indexing="ij")
    out = np.zeros_like(x)
    for b in range(n):
        a0, a1, a2, b0, b1, b2 = np.asarray(matrices[b], dtype=np.float64)[:6]
        xs, ys = a0 * j + (a1 * i + a2), b0 * j + (b1 * i + b2)  # the kernels' order
        if interpolation == "nearest":
            nodes_y, nodes_x = [(_round_half_away(ys), 1.0)], [(_round_half_away(xs), 1.0)]
        else:
            fy, fx = np.floor(ys), np.floor(xs)
            nodes_y = [(fy, 1.0 - (ys - fy)), (fy + 1.0, ys - fy)]
            nodes_x = [(fx, 1.0 - (xs - fx)), (fx + 1.0, xs - fx)]
        for iy, wy in nodes_y:
            for ix, wx in nodes_x:
                iy_, ix_ = iy.astype(np.int64), ix.astype(np.int64)
                value = x[b, _fix_index(iy_, h, fill_mode), _fix_index(ix_, w, fill_mode)]
                if fill_mode == "constant":
                    inside = (iy_ >= 0) & (iy_ < h) & (ix_ >= 0) & (ix_ < w)
                    value = np.where(inside[..., None], value, fill_value)
                out[b] += (np.asarray(wy) * wx)[..., None] * value
    return out


def _resize_taps(out, size):
    src = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0.0, size - 1.0)
    lo = np.floor(src).astype(np.int64)
    return lo, np.minimum(lo + 1, size - 1), src - lo


def resize_bilinear(x, height, width):
    """Bilinear resize of x (N, H, W, C) to (N, height, width, C) with half-pixel centres,
    edge-clamped: Keras's ops.image.resize (antialias=False), in float64."""
    x = np.asarray(x, dtype=np.float64)
    y0, y1, wy = _resize_taps(height, x.shape[1])
    x0, x1, wx = _resize_taps(width, x.shape[2])
    wy, wx = wy[None, :, None, None], wx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - wx) + x[:, y0][:, :, x1] * wx
    bottom = x[:, y1][:, :, x0] * (1 - wx) + x[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def augment(x, spec, stream, training=True):
    """The augmentation layer `spec` (the engine's layer dict: csrc/bindings/augment_dict.h)
    on x (N, H, W, C) with coin stream `stream`, in float64. Inference is the identity,
    except crop: the centred window of the target's aspect, resized to the target."""
    x = np.asarray(x, dtype=np.float64)
    n, h, w, _ = x.shape
    mode = spec["mode"]
    if mode == "crop":
        height, width = spec["crop"]
        top, left, crop_h, crop_w = augment_crop_window(h, w, height, width, stream, training)
        window = x[:, top:top + crop_h, left:left + crop_w]
        if (crop_h, crop_w) == (height, width):
            return window.copy()
        return resize_bilinear(window, height, width)
    if not training:
        return x.copy()
    drawn = augment_parameters(spec, stream, n, h, w)
    if mode == "flip":
        y = x.copy()
        flips = drawn["flips"]
        if spec["flip_horizontal"]:
            y[flips] = y[flips][:, :, ::-1]
        if spec["flip_vertical"]:
            y[flips] = y[flips][:, ::-1]
        return y
    if mode == "contrast":
        lo, hi = spec.get("value_range", (0.0, 255.0))
        mean = x.mean(axis=(1, 2), keepdims=True)
        factor = drawn["contrast"][:, None, None, None]
        return np.clip((x - mean) * factor + mean, lo, hi)
    return affine_transform(x, drawn["matrices"], spec.get("interpolation", "bilinear"),
                            spec.get("fill_mode", "reflect"), spec.get("fill_value", 0.0))
