"""ReferenceNet: the NumPy specification of the C++ training engines ``fastnn._C.Net`` and
``_C.CudaNet``.

Same constructor, methods and attributes as ``_C.Net`` (csrc/engine/CONTRACT.md; the layer
and loss dicts as csrc/bindings/engine.cpp parses them and csrc/engine/plan.cpp checks
them), built from the ``fastnn.reference`` ops, in float32 (as the engine) or float64 (the
high-precision truth the engine is tested against). It is also the NumPy training step the
benchmarks compare with.
"""

import math
import numbers

import numpy as np

from fastnn import reference as ref
from fastnn.reference import _splitmix64_array, _splitmix64_int

__all__ = ["ReferenceNet", "dropout_keep_mask", "shuffle_order"]

_TYPES = ("conv2d", "maxpool2d", "avgpool2d", "flatten", "reshape", "dense", "dropout",
          "activation", "batchnorm")
# Keras's names (csrc/bindings/ops_activation.cpp): every element-wise kind, and softmax
# over the last axis.
_ACTIVATIONS = ref.ACTIVATION_KINDS + ("softmax",)
_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
           "mean_squared_error", "mean_absolute_error", "huber")
_ACCURACIES = ("argmax", "binary", "none")
_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# dropout masks and epoch orders: counter-based hashes, so the engine and this reference
# draw the same ones
# ---------------------------------------------------------------------------

def dropout_keep_mask(shape, rate, seed, layer_index, iteration):
    """Boolean keep-mask of a dropout layer, as CONTRACT.md defines it.

    base   = splitmix64(splitmix64(seed) + (layer_index << 40) + iteration)
    u_i    = (splitmix64(base + i) >> 40) * 2**-24   for the flat index i into the batch tensor
    keep_i = u_i >= rate                             (u_i is exact in float32 and float64)
    """
    base = _splitmix64_int((_splitmix64_int(seed) + (layer_index << 40) + iteration) & _MASK64)
    z = np.arange(math.prod(shape), dtype=np.uint64)
    z += np.uint64(base)
    u = (_splitmix64_array(z) >> np.uint64(40)).astype(np.float64) * 2.0 ** -24
    return (u >= rate).reshape(shape)


def shuffle_order(key, n):
    """The samples of a shuffled epoch, in order: position i reads sample ``order[i]``.
    Both engines draw it from ``key`` without a table (ops.h shuffle_index): a 4-round
    Feistel network, splitmix64 as its round function, on the smallest 4**half >= n, with
    values >= n sent through it again until they land below n."""
    half = 1
    while (1 << (2 * half)) < n:
        half += 1
    mask = np.uint64((1 << half) - 1)

    def permute(value):
        left, right = value >> np.uint64(half), value & mask
        for round_ in range(4):
            mixed = left ^ (_splitmix64_array(right + np.uint64((key + (round_ << 58)) & _MASK64))
                            & mask)
            left, right = right, mixed
        return (left << np.uint64(half)) | right

    value = permute(np.arange(n, dtype=np.uint64))
    outside = value >= n
    while outside.any():
        value[outside] = permute(value[outside])
        outside = value >= n
    return value.astype(np.int64)


# ---------------------------------------------------------------------------
# argument checks: the dicts as csrc/bindings/engine.cpp parses them and
# csrc/engine/plan.cpp checks them (the same conditions raise ValueError)
# ---------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_real(value):
    return _is_number(value) and math.isfinite(value)


def _float32(value):
    """A number as the engine holds it in its kernels' arguments: rounded to float32."""
    return float(np.float32(value))


# A dict field's kind -> (check, conversion), as the engine's pybind11 casts take them.
_FIELD_KINDS = {
    "int": (_is_int, int),
    "number": (_is_number, float),
    "bool": (lambda v: isinstance(v, (bool, np.bool_)), bool),
    "str": (lambda v: isinstance(v, str), str),
    "ints": (lambda v: isinstance(v, (list, tuple, np.ndarray)) and all(_is_int(e) for e in v),
             lambda v: tuple(int(e) for e in v)),
}
_REQUIRED = object()


def _field(spec, key, kind, where, default=_REQUIRED):
    """spec[key] checked to be of `kind` (_FIELD_KINDS); `default` when absent, else an error."""
    if key not in spec:
        if default is _REQUIRED:
            raise ValueError(f"{where} is missing '{key}'")
        return default
    check, convert = _FIELD_KINDS[kind]
    if not check(spec[key]):
        raise ValueError(f"{where}: '{key}' has the wrong type ({type(spec[key]).__name__})")
    return convert(spec[key])


def _pair(spec, key, where):
    pair = _field(spec, key, "ints", where)
    if len(pair) != 2:
        raise ValueError(f"{where}: '{key}' must be a pair, got {len(pair)} values")
    return pair


def _padding(value, where):
    if value not in ("valid", "same"):
        raise ValueError(f"{where}: padding must be 'valid' or 'same', got {value!r}")
    return value


class _Layer:
    """One checked layer: its dict's fields, its shapes per sample, the indices of its
    parameters in ReferenceNet.parameters() (None: it has none), and whether the loss
    runs fused with its activation (the last layer only)."""

    def __init__(self, index, kind):
        self.index, self.kind = index, kind
        self.where = f"layer {index} ({kind})"
        self.activation, self.alpha, self.beta, self.gamma = "linear", 0.0, 0.0, 0.0
        self.kernel = self.bias = self.moving_mean = self.moving_variance = None
        self.fused_head = False
        self.in_shape = self.out_shape = None


def _parse_layer(index, spec):
    """One layer dict, its fields checked and converted, as engine.cpp's parse_layer."""
    if not isinstance(spec, dict):
        raise ValueError(f"layer {index} must be a dict, got {type(spec).__name__}")
    kind = _field(spec, "type", "str", f"layer {index}")
    if kind not in _TYPES:
        raise ValueError(f"layer {index}: unknown type {kind!r} (expected {', '.join(_TYPES)})")
    layer = _Layer(index, kind)
    where = layer.where
    layer.activation = _field(spec, "activation", "str", where, "linear")
    if layer.activation not in _ACTIVATIONS:
        raise ValueError(f"{where}: unknown activation {layer.activation!r}: expected one of "
                         f"{', '.join(map(repr, _ACTIVATIONS))}")
    layer.alpha, layer.beta, layer.gamma = (
        _float32(_field(spec, f"activation_{name}", "number", where, 0.0))
        for name in ("alpha", "beta", "gamma"))
    if kind == "conv2d":
        layer.units = _field(spec, "filters", "int", where)
        layer.window = _pair(spec, "kernel_size", where)
        layer.strides = _pair(spec, "strides", where)
        layer.padding = _padding(_field(spec, "padding", "str", where), where)
        layer.use_bias = _field(spec, "use_bias", "bool", where)
    elif kind in ("maxpool2d", "avgpool2d"):
        layer.window = _pair(spec, "pool_size", where)
        layer.strides = _pair(spec, "strides", where)
        layer.padding = _padding(_field(spec, "padding", "str", where, "valid"), where)
    elif kind == "flatten":
        layer.shape = ()  # to one axis: _plan_layer forms it
    elif kind == "reshape":
        layer.shape = _field(spec, "shape", "ints", where)
    elif kind == "dense":
        layer.units = _field(spec, "units", "int", where)
        layer.use_bias = _field(spec, "use_bias", "bool", where)
    elif kind == "dropout":
        layer.rate = _field(spec, "rate", "number", where)
    elif kind == "batchnorm":
        layer.epsilon = _field(spec, "epsilon", "number", where)
        layer.momentum = _field(spec, "momentum", "number", where)
        layer.center = _field(spec, "center", "bool", where)
        layer.scale = _field(spec, "scale", "bool", where)
    return layer


def _plan_layer(layer, shape):
    """Check `layer` on its per-sample input `shape`, as plan.cpp does; set its shapes and
    return its parameters as [(attribute, shape, trainable)] in Keras's order."""
    kind, where = layer.kind, layer.where
    layer.in_shape = shape
    params = []
    if kind in ("conv2d", "maxpool2d", "avgpool2d"):
        if len(shape) != 3:
            raise ValueError(f"{where} needs a per-sample input of shape (height, width, "
                             f"channels), got {shape}")
        conv = kind == "conv2d"
        if conv and layer.units < 1:
            raise ValueError(f"{where}: filters must be >= 1, got {layer.units}")
        if min(layer.window + layer.strides) < 1:
            raise ValueError(f"{where}: window and strides must be >= 1, got window "
                             f"{layer.window} strides {layer.strides}")
        if layer.padding == "valid" and (layer.window[0] > shape[0] or layer.window[1] > shape[1]):
            raise ValueError(f"{where}: its {'kernel' if conv else 'pool'} {layer.window} is "
                             f"larger than its input {shape} with padding='valid'")
        oh, ow = (ref.conv_output_size(shape[a], layer.window[a], layer.strides[a],
                                       layer.padding)[0] for a in (0, 1))
        out = (oh, ow, layer.units if conv else shape[2])
        if conv:
            params.append(("kernel", layer.window + (shape[2], layer.units), True))
            if layer.use_bias:
                params.append(("bias", (layer.units,), True))
    elif kind in ("flatten", "reshape"):
        out = layer.shape or (math.prod(shape),)
        if math.prod(out) != math.prod(shape) or min(out) < 1:
            raise ValueError(f"{where}: cannot reshape {shape} ({math.prod(shape)} values) to "
                             f"{out}")
    elif kind == "dense":
        if layer.units < 1:
            raise ValueError(f"{where}: units must be >= 1, got {layer.units}")
        params.append(("kernel", (shape[-1], layer.units), True))
        if layer.use_bias:
            params.append(("bias", (layer.units,), True))
        out = shape[:-1] + (layer.units,)  # on the last axis, as Keras's Dense
    elif kind == "dropout":
        if not 0 <= layer.rate < 1:
            raise ValueError(f"{where}: rate must be in [0, 1), got {layer.rate}")
        out = shape
    elif kind == "batchnorm":
        if not layer.epsilon > 0:
            raise ValueError(f"{where}: epsilon must be > 0, got {layer.epsilon}")
        if not 0 <= layer.momentum <= 1:
            raise ValueError(f"{where}: momentum must be in [0, 1], got {layer.momentum}")
        channels = (shape[-1],)  # Keras's order: gamma, beta, then the moving statistics
        params += [("kernel", channels, True)] if layer.scale else []
        params += [("bias", channels, True)] if layer.center else []
        params += [("moving_mean", channels, False), ("moving_variance", channels, False)]
        out = shape
    else:  # activation
        out = shape
    if kind not in ("conv2d", "dense", "activation", "batchnorm") and layer.activation != "linear":
        raise ValueError(f"{where} takes no activation (got {layer.activation!r})")
    layer.out_shape = tuple(out)
    return params


def _parse_loss(spec, head):
    """The loss dict as engine.cpp's parse_loss, None meaning the engine's default: sparse
    categorical cross-entropy, from the logits unless the last layer has a softmax."""
    if spec is None:
        return {"type": "sparse_categorical_crossentropy",
                "from_logits": head.activation != "softmax", "delta": 1.0, "accuracy": "argmax"}
    if not isinstance(spec, dict):
        raise ValueError(f"loss must be a dict or None, got {type(spec).__name__}")
    kind = _field(spec, "type", "str", "loss")
    if kind not in _LOSSES:
        raise ValueError(f"loss: unknown type {kind!r} (expected {', '.join(_LOSSES)})")
    accuracy = _field(spec, "accuracy", "str", "loss", "argmax")
    if accuracy not in _ACCURACIES:
        raise ValueError(f"loss: unknown accuracy {accuracy!r} (expected 'argmax', 'binary' or "
                         f"'none')")
    return {"type": kind, "from_logits": _field(spec, "from_logits", "bool", "loss", False),
            "delta": _field(spec, "delta", "number", "loss", 1.0), "accuracy": accuracy}


def _check_head(head, loss):
    """The loss against the last layer, as plan.cpp: a softmax head runs fused with a
    categorical cross-entropy that is not from the logits, a sigmoid head with a binary one."""
    categorical = loss["type"] in ("sparse_categorical_crossentropy", "categorical_crossentropy")
    if categorical and not loss["from_logits"]:
        if head.activation != "softmax":
            raise ValueError("a categorical cross-entropy with from_logits=False needs a softmax "
                             "on the last layer (or from_logits=True for raw outputs)")
        head.fused_head = True
    if loss["type"] == "binary_crossentropy" and not loss["from_logits"]:
        if head.activation != "sigmoid":
            raise ValueError("binary cross-entropy with from_logits=False needs a sigmoid on the "
                             "last layer (or from_logits=True for raw outputs)")
        head.fused_head = True
    if (head.activation == "softmax" and categorical and head.kind != "activation"
            and len(head.out_shape) != 1):
        raise ValueError(f"the last layer's output must be one vector per sample (N, classes) "
                         f"for a categorical cross-entropy, got {head.out_shape}")
    if loss["type"] == "huber" and not loss["delta"] > 0:
        raise ValueError(f"Huber delta must be > 0, got {loss['delta']}")


def _parse_optimizer(spec):
    """Check the optimizer dict; return it with Keras's defaults filled in where a key is
    missing, its numbers in plan.cpp's ranges."""
    if not isinstance(spec, dict) or spec.get("type") not in ("adam", "sgd"):
        got = spec.get("type") if isinstance(spec, dict) else spec
        raise ValueError(f"optimizer: unknown type {got!r} (expected 'adam' or 'sgd')")
    if spec["type"] == "adam":
        out = {"type": "adam", "learning_rate": spec.get("learning_rate", 1e-3),
               "beta_1": spec.get("beta_1", 0.9), "beta_2": spec.get("beta_2", 0.999),
               "epsilon": spec.get("epsilon", 1e-7)}
        checks = {"beta_1": "[0, 1)", "beta_2": "[0, 1)", "epsilon": ">= 0"}
    else:
        out = {"type": "sgd", "learning_rate": spec.get("learning_rate", 0.01),
               "momentum": spec.get("momentum", 0.0), "nesterov": spec.get("nesterov", False)}
        checks = {"momentum": "[0, 1]"}
        if not isinstance(out["nesterov"], (bool, np.bool_)):
            raise ValueError(f"optimizer: nesterov must be a bool, got {out['nesterov']!r}")
    checks["learning_rate"] = "finite"
    valid = {"[0, 1)": lambda v: 0 <= v < 1, "[0, 1]": lambda v: 0 <= v <= 1,
             ">= 0": lambda v: v >= 0, "finite": lambda v: True}
    for key, rule in checks.items():
        if not (_is_real(out[key]) and valid[rule](out[key])):
            raise ValueError(f"optimizer: {key} must be a finite number {rule}, got {out[key]!r}"
                             if rule != "finite" else
                             f"optimizer: {key} must be a finite number, got {out[key]!r}")
        out[key] = float(out[key])
    return out


# ---------------------------------------------------------------------------
# the layers: one forward and one backward per kind
#   forward(net, layer, x, training, cache) -> z, the operation's output (before the
#       layer's activation); `cache` keeps what the backward needs;
#   backward(net, layer, x, dz, cache, need_dx, grads) -> dx, writing the layer's
#       parameter gradients into grads[index]; dx may be None when need_dx is False.
# ---------------------------------------------------------------------------

def _conv2d_forward(net, layer, x, training, cache):
    return ref.conv2d(x, net._param(layer.kernel), net._param(layer.bias), layer.strides,
                      layer.padding)


def _conv2d_backward(net, layer, x, dz, cache, need_dx, grads):
    dx, grads[layer.kernel], db = ref._conv2d_backward(
        x, net._param(layer.kernel), dz, layer.strides, layer.padding, input_grad=need_dx)
    if layer.bias is not None:
        grads[layer.bias] = db
    return dx


def _maxpool2d_forward(net, layer, x, training, cache):
    return ref.maxpool2d(x, layer.window, layer.strides, layer.padding)


def _maxpool2d_backward(net, layer, x, dz, cache, need_dx, grads):
    return ref.maxpool2d_backward(x, dz, layer.window, layer.strides, layer.padding)


def _avgpool2d_forward(net, layer, x, training, cache):
    return ref.avgpool2d(x, layer.window, layer.strides, layer.padding)


def _avgpool2d_backward(net, layer, x, dz, cache, need_dx, grads):
    return ref.avgpool2d_backward(x, dz, layer.window, layer.strides, layer.padding)


def _reshape_forward(net, layer, x, training, cache):
    return x.reshape((x.shape[0],) + layer.out_shape)  # C order (NHWC), as Keras


def _reshape_backward(net, layer, x, dz, cache, need_dx, grads):
    return dz.reshape(x.shape)


def _dense_forward(net, layer, x, training, cache):
    """On the last axis, as Keras's Dense: each sample is rows of in_shape[-1] features."""
    z = ref.dense(x.reshape(-1, x.shape[-1]), net._param(layer.kernel), net._param(layer.bias))
    return z.reshape(x.shape[:-1] + (layer.units,))


def _dense_backward(net, layer, x, dz, cache, need_dx, grads):
    dx, grads[layer.kernel], db = ref.dense_backward(
        x.reshape(-1, x.shape[-1]), net._param(layer.kernel), dz.reshape(-1, layer.units))
    if layer.bias is not None:
        grads[layer.bias] = db
    return dx.reshape(x.shape)


def _dropout_forward(net, layer, x, training, cache):
    """Training: where(keep, x * s, 0), keep from dropout_keep_mask and s = 1 / (1 - rate)
    rounded once to the net's dtype; the identity at inference."""
    if not training:
        return x
    cache["keep"] = dropout_keep_mask(x.shape, layer.rate, net._seed, layer.index,
                                      net._iterations)
    return np.where(cache["keep"], x * net._dropout_scale(layer), 0)


def _dropout_backward(net, layer, x, dz, cache, need_dx, grads):
    return np.where(cache["keep"], dz * net._dropout_scale(layer), 0)


def _activation_forward(net, layer, x, training, cache):
    return x  # the identity operation: the layer is its activation


def _activation_backward(net, layer, x, dz, cache, need_dx, grads):
    return dz


def _batchnorm_forward(net, layer, x, training, cache):
    """Over the last axis. Training normalises with the batch's mean and biased variance and
    moves the moving statistics (parameters, updated here, never by the optimizer):
    moving = moving * momentum + batch_statistic * (1 - momentum); inference normalises with
    the moving statistics."""
    p = net._params
    z, cache["mean"], cache["inv_std"], moving_mean, moving_variance = ref.batchnorm_forward(
        x, net._param(layer.kernel), net._param(layer.bias), p[layer.moving_mean],
        p[layer.moving_variance], _float32(layer.epsilon), _float32(layer.momentum), training)
    if training:
        p[layer.moving_mean][...] = moving_mean
        p[layer.moving_variance][...] = moving_variance
    return z


def _batchnorm_backward(net, layer, x, dz, cache, need_dx, grads):
    dx, dgamma, dbeta = ref.batchnorm_backward(x, net._param(layer.kernel), cache["mean"],
                                               cache["inv_std"], dz)
    if layer.kernel is not None:
        grads[layer.kernel] = dgamma
    if layer.bias is not None:
        grads[layer.bias] = dbeta
    return dx


_FORWARD = {"conv2d": _conv2d_forward, "maxpool2d": _maxpool2d_forward,
            "avgpool2d": _avgpool2d_forward, "flatten": _reshape_forward,
            "reshape": _reshape_forward, "dense": _dense_forward, "dropout": _dropout_forward,
            "activation": _activation_forward, "batchnorm": _batchnorm_forward}
_BACKWARD = {"conv2d": _conv2d_backward, "maxpool2d": _maxpool2d_backward,
             "avgpool2d": _avgpool2d_backward, "flatten": _reshape_backward,
             "reshape": _reshape_backward, "dense": _dense_backward,
             "dropout": _dropout_backward, "activation": _activation_backward,
             "batchnorm": _batchnorm_backward}


# ---- activations: softmax over the last axis, the element-wise kinds from reference ----

def _activate(layer, z):
    """y = the layer's activation of its operation's output z."""
    if layer.activation == "linear":
        return z
    if layer.activation == "softmax":
        return ref.softmax(z)  # over the last axis
    return ref.activation(z, layer.activation, layer.alpha, layer.beta, layer.gamma)


def _activation_gradient(layer, z, y, dy):
    """The gradient wrt z from the gradient dy wrt y = _activate(layer, z)."""
    if layer.activation == "linear":
        return dy
    if layer.activation == "softmax":
        channels = y.shape[-1]
        return ref.softmax_backward(y.reshape(-1, channels),
                                    dy.reshape(-1, channels)).reshape(y.shape)
    return ref.activation_backward(z, dy, layer.activation, layer.alpha, layer.beta,
                                   layer.gamma)


# ---- losses: each the mean (over rows, or over all elements) and its gradient -----------

def _loss_and_gradient(loss, inputs, targets):
    """inputs (N, outputs): the head's logits when it runs fused, else its outputs;
    targets (N, target_width). Returns (mean loss, gradient wrt inputs)."""
    kind = loss["type"]
    if kind == "sparse_categorical_crossentropy":
        return ref.softmax_cross_entropy(inputs, targets[:, 0].astype(np.int64))
    if kind == "categorical_crossentropy":
        return ref.categorical_cross_entropy(inputs, targets)
    if kind == "binary_crossentropy":
        return ref.sigmoid_cross_entropy(inputs, targets)
    return ref.regression_loss(inputs, targets, kind, _float32(loss["delta"]))


def _count_correct(accuracy, outputs, targets):
    """outputs (N, outputs) after the last activation, targets (N, target_width).
    'argmax': rows whose first maximum is the label (a one-wide target, truncated to an
    int) or the targets' own first maximum; 'binary': elements with (output > 0.5) ==
    (target > 0.5); 'none': 0."""
    if accuracy == "none":
        return 0
    if accuracy == "binary":
        return int(np.sum((outputs > 0.5) == (targets > 0.5)))
    labels = (targets[:, 0].astype(np.int64) if targets.shape[1] == 1
              else targets.argmax(axis=1))
    return int(np.sum(outputs.argmax(axis=1) == labels))


# ---------------------------------------------------------------------------
# the net
# ---------------------------------------------------------------------------

class ReferenceNet:
    """The engine's training plan in NumPy:
    ``ReferenceNet(layers, input_shape, optimizer, loss=None, dtype=np.float32)``.

    Each layer is its operation, then its activation (linear when it has none):
      operation  conv2d     reference.conv2d(a, w, b, strides, padding)
                 maxpool2d  reference.maxpool2d(a, pool_size, strides, padding)
                 avgpool2d  reference.avgpool2d(a, pool_size, strides, padding)
                 flatten, reshape   a.reshape(N, *shape)  (C order, NHWC, as Keras)
                 dense      reference.dense on the last axis (rows of in_shape[-1] features)
                 dropout    where(keep, a * s, 0) in training, keep from dropout_keep_mask,
                            s = 1 / (1 - rate) rounded once to the dtype; else the identity
                 activation the identity
                 batchnorm  reference.batchnorm_forward over the last axis (batch statistics
                            in training, which also moves the moving statistics; the moving
                            ones at inference)
      activation reference.activation (every element-wise kind, with the layer's
                 activation_alpha / _beta / _gamma rounded to float32) or softmax over the
                 last axis.
    train_step(x, targets), one step:
      forward    a_0 = x;  a_{l+1} = layer_l(a_l).
      loss       the loss dict's (parse_loss; None: sparse categorical cross-entropy, from
                 the logits unless the last activation is softmax), on the last layer's
                 outputs reshaped to (N, outputs), or, when the head runs fused with the
                 loss (a categorical one with a softmax head, a binary one with a sigmoid
                 head, from_logits False), on its values before that activation:
                   sparse_categorical_crossentropy  reference.softmax_cross_entropy
                   categorical_crossentropy         reference.categorical_cross_entropy
                   binary_crossentropy              reference.sigmoid_cross_entropy
                   mean_squared_error, mean_absolute_error, huber  reference.regression_loss
                 each a mean: over the rows (cross-entropies) or over all elements.
      backward   from the last layer down to the first layer with trainable parameters:
                 the activation's gradient (not for a fused head), then the operation's
                 (one function per kind below), giving its parameter gradients and the
                 gradient of its input. The moving statistics get a zero gradient.
      update     every trainable parameter; adam: reference.adam_update(p, g, m, v,
                 step=iterations + 1, ...); sgd: reference.sgd_update. Then iterations += 1.
    Returns (mean loss, correct): the number of rows whose argmax output is the label (or
    the targets' argmax), or for accuracy 'binary' of elements with (output > 0.5) ==
    (target > 0.5), on the outputs after the last activation.

    dtype=np.float32 computes as the engine; np.float64 computes everything in float64 (on
    the same float32 inputs and targets the engine reads). parameters() and
    optimizer_state() return the live arrays, in Keras get_weights() order.
    """

    def __init__(self, layers, input_shape, optimizer, loss=None, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if not isinstance(layers, (list, tuple)):
            raise ValueError(f"layers must be a list of layer dicts, got {type(layers).__name__}")
        self._layers = [_parse_layer(i, spec) for i, spec in enumerate(layers)]
        if not self._layers:
            raise ValueError("the model has no layers")
        self._loss = _parse_loss(loss, self._layers[-1])
        self._opt = _parse_optimizer(optimizer)
        if not isinstance(input_shape, (tuple, list)) or not all(map(_is_int, input_shape)):
            raise ValueError(f"input_shape must be a tuple of ints, got {input_shape!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        if not self.input_shape:
            raise ValueError("input_shape must have at least one axis")
        if min(self.input_shape) < 1:
            raise ValueError(f"input_shape dimensions must be >= 1, got {self.input_shape}")

        # Shapes and parameters (zero-initialised, Keras order); each layer keeps its indices.
        self._params, self._trainable = [], []
        shape = self.input_shape
        for layer in self._layers:
            for attribute, param_shape, trainable in _plan_layer(layer, shape):
                setattr(layer, attribute, len(self._params))
                self._params.append(np.zeros(param_shape, self.dtype))
                self._trainable.append(trainable)
            shape = layer.out_shape
        _check_head(self._layers[-1], self._loss)
        self.classes = math.prod(shape)  # outputs per sample

        if self._opt["type"] == "adam":
            self._state = [np.zeros_like(p) for p in self._params * 2]
        elif self._opt["momentum"] != 0:
            self._state = [np.zeros_like(p) for p in self._params]
        else:
            self._state = []
        self._iterations = 0
        self._seed = 0

    # ---- attributes ---------------------------------------------------------------------

    def parameters(self):
        return list(self._params)

    def optimizer_state(self):
        return list(self._state)

    def trainable(self):
        """For each array of parameters(): whether the optimizer trains it (batch
        normalisation's moving statistics: not)."""
        return list(self._trainable)

    def output_shapes(self):
        return [layer.out_shape for layer in self._layers]

    @property
    def parameter_count(self):
        return sum(p.size for p in self._params)

    @property
    def target_width(self):
        """Target values per sample: 1 (the class index) for a sparse loss, else classes."""
        return 1 if self._loss["type"] == "sparse_categorical_crossentropy" else self.classes

    def pull(self):
        """Nothing to do: as the CPU engine, the arrays are the net's own memory."""

    def push(self):
        """Nothing to do (see pull)."""

    def seed(self, s):
        if not (_is_int(s) and 0 <= s <= _MASK64):
            raise ValueError(f"seed must be an int in [0, 2**64), got {s!r}")
        self._seed = int(s)

    @property
    def iterations(self):
        return self._iterations

    @iterations.setter
    def iterations(self, value):
        if not (_is_int(value) and value >= 0):
            raise ValueError(f"iterations must be a non-negative int, got {value!r}")
        self._iterations = int(value)

    @property
    def learning_rate(self):
        return self._opt["learning_rate"]

    @learning_rate.setter
    def learning_rate(self, value):
        if not _is_real(value):
            raise ValueError(f"learning_rate must be a finite number, got {value!r}")
        self._opt["learning_rate"] = float(value)

    def _param(self, index):
        return None if index is None else self._params[index]

    def _dropout_scale(self, layer):
        """1 / (1 - rate), computed in float64 and rounded once to the net's dtype."""
        return self.dtype.type(1.0 / (1.0 - layer.rate))

    # ---- checks of per-batch inputs (as engine.cpp's check_batch) -------------------------

    def _check_x(self, x):
        x = np.asarray(x)
        if x.ndim != 1 + len(self.input_shape) or x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}) "
                             f"(the model's input shape with a batch axis), got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("x must not be empty: the batch has 0 samples")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
        return x.astype(np.float32).astype(self.dtype, copy=False)  # what the engine reads

    def _check_targets(self, targets, n):
        """(N, target_width) in the net's dtype, from any array of N rows of that many
        values: for a sparse loss, class indices ((N,) or (N, 1), whole numbers in range)."""
        targets = np.asarray(targets)
        width = self.target_width
        sparse = self._loss["type"] == "sparse_categorical_crossentropy"
        if targets.ndim == 0 or targets.shape[0] != n or targets.size != n * width:
            what = (f"labels must have shape ({n},) (one class index per sample)" if sparse else
                    f"targets must have shape ({n}, {width}) (one value per output of the model)")
            raise ValueError(f"{what}, got {targets.shape}")
        if not np.issubdtype(targets.dtype, np.number) or \
                np.issubdtype(targets.dtype, np.complexfloating):
            raise ValueError(f"{'labels' if sparse else 'targets'} must hold real numbers, "
                             f"got dtype {targets.dtype}")
        targets = targets.astype(np.float32).reshape(n, width)  # what the engine reads
        if sparse:
            bad = ~((targets >= 0) & (targets < self.classes) & (targets == np.floor(targets)))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"labels[{i}] = {targets.flat[i]} is out of range: the model has "
                                 f"{self.classes} outputs, so labels must be whole numbers in "
                                 f"[0, {self.classes})")
        if not np.isfinite(targets).all():
            raise ValueError("targets must be finite numbers")
        return targets.astype(self.dtype, copy=False)

    # ---- forward / loss / backward / update --------------------------------------------

    def _forward(self, x, training):
        """Run all layers; return the trace: per layer its input, its operation's output
        z (before the activation), its output and what its backward needs."""
        trace = {"inputs": [], "z": [], "outputs": [], "caches": []}
        a = x
        for layer in self._layers:
            cache = {}
            z = _FORWARD[layer.kind](self, layer, a, training, cache)
            trace["inputs"].append(a)
            a = _activate(layer, z)
            for key, value in (("z", z), ("outputs", a), ("caches", cache)):
                trace[key].append(value)
        return trace

    def _loss_step(self, trace, targets):
        """(mean loss, correct, gradient wrt what the loss read: the fused head's z or the
        last layer's output)."""
        head = self._layers[-1]
        source = trace["z"][-1] if head.fused_head else trace["outputs"][-1]
        n = source.shape[0]
        loss, grad = _loss_and_gradient(self._loss, source.reshape(n, -1), targets)
        correct = _count_correct(self._loss["accuracy"], trace["outputs"][-1].reshape(n, -1),
                                 targets)
        return float(loss), correct, grad.reshape(source.shape)

    def _backward(self, trace, grad):
        """Gradients of all parameters (zeros for the non-trainable ones), in the order of
        self._params, from the loss's gradient `grad`."""
        grads = [np.zeros_like(p) for p in self._params]
        layers = self._layers
        # Layers before the first one with trainable parameters need no gradient at all.
        first = min((i for i, l in enumerate(layers)
                     if any(self._trainable[k] for k in (l.kernel, l.bias) if k is not None)),
                    default=len(layers))
        for i in range(len(layers) - 1, first - 1, -1):
            layer = layers[i]
            if not layer.fused_head:
                grad = _activation_gradient(layer, trace["z"][i], trace["outputs"][i], grad)
            grad = _BACKWARD[layer.kind](self, layer, trace["inputs"][i], grad,
                                         trace["caches"][i], i > first, grads)
        return grads

    def _update(self, grads):
        """The optimizer's step on every trainable parameter (the others never move)."""
        opt, step = self._opt, self._iterations + 1
        for k, (p, g) in enumerate(zip(self._params, grads)):
            if not self._trainable[k]:
                continue
            g = g.astype(self.dtype, copy=False)
            if opt["type"] == "adam":
                ref.adam_update(p, g, self._state[k], self._state[len(self._params) + k], step,
                                opt["learning_rate"], opt["beta_1"], opt["beta_2"],
                                opt["epsilon"])
            else:
                ref.sgd_update(p, g, self._state[k] if self._state else None,
                               opt["learning_rate"], opt["momentum"], opt["nesterov"])

    # ---- the public steps ---------------------------------------------------------------

    def train_step(self, x, labels):
        """One forward, loss, backward and update: (mean loss, correct). `labels` are the
        targets: class indices for a sparse loss, else (N, target_width) numbers."""
        x = self._check_x(x)
        targets = self._check_targets(labels, x.shape[0])
        trace = self._forward(x, training=True)
        loss, correct, grad = self._loss_step(trace, targets)
        self._update(self._backward(trace, grad))
        self._iterations += 1
        return loss, correct

    def predict(self, x):
        """The last layer's outputs, activation applied, (N, classes); dropout off."""
        x = self._check_x(x)
        return self._forward(x, training=False)["outputs"][-1].reshape(x.shape[0], -1)

    def evaluate(self, x, labels):
        """(summed loss, correct) over the batch: the mean loss times N; dropout off, batch
        normalisation on its moving statistics, no update."""
        x = self._check_x(x)
        targets = self._check_targets(labels, x.shape[0])
        loss, correct, _ = self._loss_step(self._forward(x, training=False), targets)
        return loss * x.shape[0], correct
