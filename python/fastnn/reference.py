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

def _pool_geometry(x, pool_size, strides):
    """Check pool arguments; return ((PH, PW), (sh, sw), (OH, OW))."""
    _check_ndim(x, 4, "x")
    ph, pw = _pair(pool_size, "pool_size")
    sh, sw = _pair(pool_size if strides is None else strides, "strides")
    oh = conv_output_size(x.shape[1], ph, sh, "valid")[0]  # raises if the pool does not fit
    ow = conv_output_size(x.shape[2], pw, sw, "valid")[0]
    return (ph, pw), (sh, sw), (oh, ow)


def maxpool2d(x, pool_size=(2, 2), strides=None):
    """Max pooling with 'valid' padding (Keras MaxPooling2D).

    x (N, H, W, C); strides None means strides = pool_size.
    y[n, p, q, c] = max_{i < PH, j < PW} x[n, p*sh + i, q*sw + j, c]
    with OH = (H - PH) // sh + 1, OW = (W - PW) // sw + 1. Returns y (N, OH, OW, C).
    """
    x = np.asarray(x, dtype=_compute_dtype(x))
    (ph, pw), strides, out_size = _pool_geometry(x, pool_size, strides)
    taps = [_tap(x, i, j, strides, out_size) for i, j in np.ndindex(ph, pw)]
    y = taps[0].copy()
    for tap in taps[1:]:
        np.maximum(y, tap, out=y)
    return y


def maxpool2d_backward(x, dy, pool_size=(2, 2), strides=None):
    """Gradient of maxpool2d.

    x (N, H, W, C), dy (N, OH, OW, C). Each dy[n, p, q, c] goes to the position of
    the maximum of its window; on ties, to the first maximum in row-major window
    order (rows top to bottom, each row left to right). Where windows overlap
    (stride < pool) the contributions add. Returns dx shaped like x.
    """
    dtype = _compute_dtype(x, dy)
    x = np.asarray(x, dtype=dtype)
    dy = np.asarray(dy, dtype=dtype)
    (ph, pw), strides, out_size = _pool_geometry(x, pool_size, strides)
    y = maxpool2d(x, (ph, pw), strides)
    if dy.shape != y.shape:
        raise ValueError(f"dy must have shape {y.shape}, got {dy.shape}")

    # np.ndindex walks the window row-major, so the first element equal to the maximum
    # takes the gradient and `routed` keeps every later tie out.
    overlapping = strides[0] < ph or strides[1] < pw
    dx = np.zeros_like(x)
    routed = np.zeros(y.shape, dtype=bool)
    for i, j in np.ndindex(ph, pw):
        hit = _tap(x, i, j, strides, out_size) == y
        hit &= ~routed
        routed |= hit
        dx_tap = _tap(dx, i, j, strides, out_size)
        if overlapping:  # an element of several windows collects from each
            dx_tap += hit * dy
        else:            # each element is in one window at most: write, skip the add
            np.multiply(hit, dy, out=dx_tap)
    return dx


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


# ==== pooling (average, 'same') and batch normalisation ====


# ==== losses (categorical with soft targets, sigmoid cross-entropy, regression) ====
