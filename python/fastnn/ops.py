"""Each fastnn kernel alone, NumPy in and NumPy out, on the CPU or (device='cuda') the GPU.

The functions mirror ``fastnn.reference`` one for one. Inputs of any real dtype and any
memory layout are converted to C-contiguous float32; outputs are float32. Layouts are
Keras's: activations NHWC, conv weights HWIO (kh, kw, c_in, c_out), dense weights
(in, out). Bad arguments raise ``TypeError`` (wrong kind of value) or ``ValueError``
(wrong shape or range), each naming the argument, what was expected and what came.
"""
import math
import numbers

import numpy as np

from fastnn import _C

__all__ = ["activation", "activation_backward",
           "avgpool2d", "avgpool2d_backward", "batchnorm", "batchnorm_backward",
           "adam_update", "conv2d", "conv2d_backward", "dense", "dense_backward", "dropout",
           "gemm", "maxpool2d", "maxpool2d_backward", "relu", "relu_backward", "sgd_update",
           "softmax", "softmax_backward", "softmax_cross_entropy",
           "categorical_cross_entropy", "regression_loss", "sigmoid_cross_entropy"]

_MAX_WINDOW = 1 << 30  # strides and pool sizes beyond this are certainly mistakes
_MAX_LABEL = 1 << 31   # class indices beyond this are certainly mistakes


def _floats(value, name):
    """A C-contiguous float32 array holding ``value`` (no copy when it already is one)."""
    if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.flags.c_contiguous:
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of real numbers: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {array.dtype}")
    return np.asarray(array, dtype=np.float32, order="C")  # keeps 0-d arrays 0-d


def _optional_floats(value, name):
    return None if value is None else _floats(value, name)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not 1 <= value <= _MAX_WINDOW:
        raise ValueError(f"{name} must be >= 1, got {value}" if value < 1
                         else f"{name} must be <= {_MAX_WINDOW}, got {value}")
    return int(value)


def _pair(value, name):
    """An int or a pair of ints (height, width), as Keras accepts for sizes and strides."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}")
        return (_positive_int(value[0], f"{name}[0]"), _positive_int(value[1], f"{name}[1]"))
    size = _positive_int(value, name)
    return size, size


def _padding(value):
    if not isinstance(value, str):
        raise TypeError(f"padding must be 'valid' or 'same', got {value!r} (a {type(value).__name__}, not a str)")
    if value.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {value!r}")
    return value.lower()


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _labels(labels):
    """Integer class indices as int64; integral floats are accepted, as Keras does."""
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as error:
        raise TypeError(f"labels must be an array of integer class indices: {error}") from None
    if array.ndim == 2 and array.shape[1] == 1:  # (N, 1), as Keras's sparse losses accept
        array = array[:, 0]
    elif array.ndim == 2:
        raise ValueError(f"labels must be integer class indices of shape (N,), got shape "
                         f"{array.shape}; for one-hot labels pass labels.argmax(axis=1)")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"labels must be integer class indices, got dtype {array.dtype}")
    if array.dtype.kind == "f":
        integral = np.isfinite(array) & (array == np.round(array))
        if not integral.all():
            bad = np.flatnonzero(~integral.ravel())[0]
            raise ValueError(f"labels must be integer class indices, got "
                             f"{float(array.ravel()[bad])} at index {bad}")
    if array.dtype.kind in "uf" and array.size and array.max() > _MAX_LABEL:
        bad = int(np.argmax(array.ravel()))
        raise ValueError(f"labels[{bad}] = {array.ravel()[bad]} is out of range for a class index")
    return np.asarray(array, dtype=np.int64, order="C")


def _device(value):
    """'cpu' (the default) or 'cuda': where the op runs. 'cuda' copies the inputs to the
    GPU, runs the CUDA kernel and copies the outputs back; without a GPU, or in a build
    without CUDA, it raises RuntimeError."""
    if not isinstance(value, str):
        raise TypeError(f"device must be 'cpu' or 'cuda', got {type(value).__name__} {value!r}")
    if value not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {value!r}")
    return value


def _write_back(originals, work):
    """After an in-place op on working copies (_in_place): the results into the originals."""
    for original, updated in zip(originals, work):
        if updated is not original:
            original[...] = updated


def _real(value, name, finite=True):
    """A Python float, or TypeError/ValueError naming the argument: a real number that fits
    a float and, when ``finite``, is neither NaN nor infinite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from None
    if finite and not math.isfinite(result):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return result


def _int_in(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _in_place(value, name, op="adam_update"):
    """A float32 C-contiguous array to update: ``value`` itself or a working copy."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array ({op} updates it in place), "
                        f"got {type(value).__name__}")
    if value.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {value.dtype}")
    if not value.flags.writeable:
        raise ValueError(f"{name} must be writable ({op} updates it in place)")
    if value.dtype == np.float32 and value.flags.c_contiguous:
        return value
    return np.asarray(value, dtype=np.float32, order="C")


# ---- convolution ------------------------------------------------------------------------

def conv2d(x, w, b, strides=(1, 1), padding="valid", device="cpu"):
    """y = x ⋆ w + b. x (N, H, W, C_in), w (KH, KW, C_in, C_out), b (C_out,) or None."""
    sh, sw = _pair(strides, "strides")
    return _C.conv2d(_floats(x, "x"), _floats(w, "w"), _optional_floats(b, "b"), sh, sw,
                     _padding(padding), device=_device(device))


def conv2d_backward(x, w, dy, strides=(1, 1), padding="valid", device="cpu"):
    """Gradients (dx, dw, db) of sum(conv2d(x, w, b) * dy)."""
    sh, sw = _pair(strides, "strides")
    return _C.conv2d_backward(_floats(x, "x"), _floats(w, "w"), _floats(dy, "dy"), sh, sw,
                              _padding(padding), device=_device(device))


# ---- dense and gemm ---------------------------------------------------------------------

def dense(x, w, b, device="cpu"):
    """y = x @ w + b. x (N, in), w (in, out), b (out,) or None."""
    return _C.dense(_floats(x, "x"), _floats(w, "w"), _optional_floats(b, "b"),
                    device=_device(device))


def dense_backward(x, w, dy, device="cpu"):
    """Gradients (dx, dw, db) of sum(dense(x, w, b) * dy)."""
    return _C.dense_backward(_floats(x, "x"), _floats(w, "w"), _floats(dy, "dy"),
                             device=_device(device))


def gemm(a, b, trans_a=False, trans_b=False, device="cpu"):
    """op(a) @ op(b), where op transposes when trans_a / trans_b is set."""
    return _C.gemm(_floats(a, "a"), _floats(b, "b"), _bool(trans_a, "trans_a"),
                   _bool(trans_b, "trans_b"), device=_device(device))


# ---- pooling ----------------------------------------------------------------------------

def _pool_args(pool_size, strides):
    ph, pw = _pair(pool_size, "pool_size")
    sh, sw = (ph, pw) if strides is None else _pair(strides, "strides")
    return ph, pw, sh, sw


def maxpool2d(x, pool_size=(2, 2), strides=None, padding="valid", device="cpu"):
    """Max over each pool window of x (N, H, W, C); strides default to pool_size. 'same'
    padding: ceil(size / stride) outputs, padded positions are never the maximum."""
    return _C.maxpool2d(_floats(x, "x"), *_pool_args(pool_size, strides), _padding(padding),
                        device=_device(device))


def maxpool2d_backward(x, dy, pool_size=(2, 2), strides=None, padding="valid", device="cpu"):
    """dx: each output's gradient goes to the first maximum of its window (row-major)."""
    return _C.maxpool2d_backward(_floats(x, "x"), _floats(dy, "dy"),
                                 *_pool_args(pool_size, strides), _padding(padding),
                                 device=_device(device))


# ---- activations and loss ---------------------------------------------------------------

def relu(x, device="cpu"):
    """max(x, 0), element-wise, any shape."""
    return _C.relu(_floats(x, "x"), device=_device(device))


def relu_backward(x, dy, device="cpu"):
    """dy where x > 0, else 0."""
    return _C.relu_backward(_floats(x, "x"), _floats(dy, "dy"), device=_device(device))


def dropout(x, rate, seed=0, layer_index=0, iteration=0, device="cpu"):
    """(y, mask): the training engine's dropout of layer ``layer_index`` at optimizer step
    ``iteration`` with dropout seed ``seed`` (reference_net.dropout_keep_mask); mask is 0
    or 1/(1 - rate) per element and y = x * mask."""
    rate = _real(rate, "rate")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate!r}")
    seed = _int_in(seed, "seed", 0, 2**64 - 1)
    layer_index = _int_in(layer_index, "layer_index", 0, 2**40 - 1)
    iteration = _int_in(iteration, "iteration", 0, 2**62)
    return _C.dropout(_floats(x, "x"), rate, seed, layer_index, iteration, device=_device(device))


def softmax(logits, device="cpu"):
    """Row-wise softmax of logits (N, C) as the engine's predict forms it."""
    return _C.softmax(_floats(logits, "logits"), device=_device(device))


def softmax_cross_entropy(logits, labels, device="cpu"):
    """(loss, dlogits): mean cross-entropy of softmax(logits) (N, C) against int labels (N,),
    and its gradient (softmax - onehot) / N."""
    loss, dlogits = _C.softmax_cross_entropy(_floats(logits, "logits"), _labels(labels),
                                             device=_device(device))
    return loss, dlogits


# ---- optimizer --------------------------------------------------------------------------

def adam_update(param, grad, m, v, step, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                device="cpu"):
    """One Adam step (Keras's form) updating param, m and v in place; step counts from 1."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (Adam counts steps from 1), got {step}")
    # NaN and infinities reach the binding, whose messages name them.
    hyper = {name: _real(value, name, finite=False) for name, value in
             (("lr", lr), ("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon))}
    originals = (param, m, v)
    work = [_in_place(a, name) for a, name in zip(originals, ("param", "m", "v"))]
    _C.adam_update(work[0], _floats(grad, "grad"), work[1], work[2], min(int(step), 2**62),
                   hyper["lr"], hyper["beta_1"], hyper["beta_2"], hyper["epsilon"],
                   device=_device(device))
    _write_back(originals, work)


def sgd_update(param, grad, velocity, lr=0.01, momentum=0.0, nesterov=False, device="cpu"):
    """One SGD step (Keras's form) updating param, and velocity when momentum > 0, in place:
    velocity = momentum * velocity - lr * grad; param += momentum * velocity - lr * grad
    with nesterov, else param += velocity (param -= lr * grad without momentum). velocity
    may be None only when momentum is 0."""
    lr, momentum = _real(lr, "lr"), _real(momentum, "momentum")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    nesterov = _bool(nesterov, "nesterov")
    if velocity is None and momentum != 0.0:
        raise ValueError(f"velocity must be an array when momentum is not 0 (got momentum="
                         f"{momentum!r})")
    originals = [a for a in (param, velocity) if a is not None]
    work = [_in_place(a, name, "sgd_update") for a, name in zip(originals, ("param", "velocity"))]
    _C.sgd_update(work[0], _floats(grad, "grad"), work[1] if len(work) > 1 else None, lr,
                  momentum, nesterov, device=_device(device))
    _write_back(originals, work)


# ==== activations (element-wise, softmax's gradient) ====

def _activation_args(kind, alpha, beta, gamma):
    """kind (a str; the binding checks the name) and the three parameters as floats; NaN and
    infinities reach the binding, whose messages name them."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be an activation's name (a str), got "
                        f"{type(kind).__name__} {kind!r}")
    return (kind, _real(alpha, "alpha", finite=False), _real(beta, "beta", finite=False),
            _real(gamma, "gamma", finite=False))


def activation(x, kind, alpha=0.0, beta=0.0, gamma=0.0, device="cpu"):
    """y = the Keras activation named ``kind`` of x, element-wise, any shape: linear, relu,
    relu_clipped, relu6, sigmoid, tanh, elu, selu, gelu, gelu_tanh, swish (silu),
    leaky_relu, softplus, softsign, hard_sigmoid, hard_swish (hard_silu), exponential, mish,
    affine. The parameters per kind are fastnn.reference's: elu and leaky_relu take alpha;
    relu_clipped alpha = negative_slope, beta = max_value (math.inf for none), gamma =
    threshold; affine y = x * alpha + beta."""
    return _C.activation(_floats(x, "x"), *_activation_args(kind, alpha, beta, gamma),
                         device=_device(device))


def activation_backward(x, dy, kind, alpha=0.0, beta=0.0, gamma=0.0, device="cpu", *, y=None):
    """dx = dy * activation'(x). y is the forward's output (exponential's gradient reads it):
    pass it when you have it, as the engine does; None runs the forward kernel for it."""
    args = _activation_args(kind, alpha, beta, gamma)
    device = _device(device)
    x = _floats(x, "x")
    y = _C.activation(x, *args, device=device) if y is None else _floats(y, "y")
    return _C.activation_backward(x, y, _floats(dy, "dy"), *args, device=device)


def softmax_backward(y, dy, device="cpu"):
    """dx = y * (dy - sum_j dy_j * y_j) per row: the softmax's gradient, from its output y
    (N, C) and the upstream gradient dy (N, C)."""
    return _C.softmax_backward(_floats(y, "y"), _floats(dy, "dy"), device=_device(device))



# ==== pooling (average, 'same') and batch normalisation ====

def avgpool2d(x, pool_size=(2, 2), strides=None, padding="valid", device="cpu"):
    """Mean over each pool window of x (N, H, W, C); strides default to pool_size. 'same'
    padding does not count the padded positions. pool_size = (H, W) is a global average pool."""
    return _C.avgpool2d(_floats(x, "x"), *_pool_args(pool_size, strides), _padding(padding),
                        device=_device(device))


def avgpool2d_backward(x, dy, pool_size=(2, 2), strides=None, padding="valid", device="cpu"):
    """dx: each output's gradient, divided by its window's count, to every position of the
    window inside x (x gives the shape)."""
    return _C.avgpool2d_backward(_floats(x, "x"), _floats(dy, "dy"),
                                 *_pool_args(pool_size, strides), _padding(padding),
                                 device=_device(device))


def batchnorm(x, gamma, beta, moving_mean, moving_variance, epsilon=1e-3, momentum=0.99,
              training=True, device="cpu"):
    """Batch normalisation over the last axis of x (N, C) or (N, H, W, C), Keras 3's
    BatchNormalization: (y, mean, inv_std, new_moving_mean, new_moving_variance).

    training: the batch's mean and biased variance normalise x, and the moving statistics
    come back updated (moving * momentum + batch * (1 - momentum)); otherwise the moving
    statistics normalise x and come back unchanged, as mean and 1/sqrt(variance + epsilon)
    too. gamma / beta may be None (scale 1 / offset 0). The inputs are not modified."""
    epsilon, momentum = _real(epsilon, "epsilon"), _real(momentum, "momentum")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return _C.batchnorm(_floats(x, "x"), _optional_floats(gamma, "gamma"),
                        _optional_floats(beta, "beta"), _floats(moving_mean, "moving_mean"),
                        _floats(moving_variance, "moving_variance"), epsilon, momentum,
                        _bool(training, "training"), device=_device(device))


def batchnorm_backward(x, gamma, mean, inv_std, dy, device="cpu"):
    """(dx, dgamma, dbeta) of training-mode batchnorm, from the mean and inv_std its
    forward returned; gamma None means 1."""
    return _C.batchnorm_backward(_floats(x, "x"), _optional_floats(gamma, "gamma"),
                                 _floats(mean, "mean"), _floats(inv_std, "inv_std"),
                                 _floats(dy, "dy"), device=_device(device))



# ==== losses (categorical with soft targets, sigmoid cross-entropy, regression) ====

def categorical_cross_entropy(logits, targets, device="cpu"):
    """(loss, dlogits): mean cross-entropy of softmax(logits) (N, C) against targets (N, C)
    of any real values (one-hot, label-smoothed, soft rows), -sum_j t_j * log softmax_j per
    row, and its gradient (softmax * sum_j t_j - t) / N."""
    return _C.categorical_cross_entropy(_floats(logits, "logits"), _floats(targets, "targets"),
                                        device=_device(device))


def sigmoid_cross_entropy(logits, targets, device="cpu"):
    """(loss, dlogits): mean binary cross-entropy of sigmoid(logits) against targets of the
    same (any) shape, max(z, 0) - z * t + log1p(exp(-|z|)) per element, and its gradient
    (sigmoid(z) - t) / count."""
    return _C.sigmoid_cross_entropy(_floats(logits, "logits"), _floats(targets, "targets"),
                                    device=_device(device))


def regression_loss(y, targets, kind, delta=1.0, device="cpu"):
    """(loss, dy): the mean over all elements of the Keras regression loss ``kind`` of
    y - targets (same, any, shape): 'mean_squared_error', 'mean_absolute_error' or 'huber'
    (with ``delta``), and its gradient wrt y (fastnn.reference.regression_loss)."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be 'mean_squared_error', 'mean_absolute_error' or 'huber', "
                        f"got {type(kind).__name__} {kind!r}")
    # NaN and infinities reach the binding, whose message names them.
    return _C.regression_loss(_floats(y, "y"), _floats(targets, "targets"), kind,
                              _real(delta, "delta", finite=False), device=_device(device))


# ==== augmentation (random image layers) ====

__all__ += ["augment"]


def augment(x, spec, stream=0, training=True, device="cpu"):
    """One of Keras 3's random image layers on x (N, H, W, C): ``spec`` is the engine's
    layer dict, {"mode": "flip" | "translation" | "rotation" | "zoom" | "crop" | "contrast",
    ...} with the keys csrc/bindings/augment_dict.h lists (flip_horizontal/flip_vertical,
    rotation [lo, hi] in turns, zoom_height/zoom_width, translate_height/translate_width,
    crop [height, width], contrast [lower, upper] and value_range, fill_mode, fill_value,
    interpolation); ``stream`` (an int in [0, 2**64)) seeds every image's draws
    (fastnn.reference.augment). training=False is the identity, except crop's centred
    crop and resize. Returns y (N, H, W, C), or (N, height, width, C) for crop."""
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict (an augmentation layer's), got "
                        f"{type(spec).__name__} {spec!r}")
    spec = dict(spec)
    spec.setdefault("type", "augment")
    stream = _int_in(stream, "stream", 0, 2**64 - 1)
    return _C.augment(_floats(x, "x"), spec, stream, _bool(training, "training"),
                      device=_device(device))
