"""ReferenceNet: the NumPy specification of the C++ training engine ``fastnn._C.Net``.

Same constructor, methods and attributes as ``_C.Net`` (csrc/engine/CONTRACT.md), built from
the ``fastnn.reference`` ops, in float32 (as the engine) or float64 (the high-precision truth
the engine is tested against). It is also the NumPy training step the benchmarks compare with.
"""

import math
import numbers

import numpy as np

from fastnn import reference as ref

__all__ = ["ReferenceNet", "dropout_keep_mask", "shuffle_order"]

_TYPES = ("conv2d", "maxpool2d", "flatten", "dense", "dropout")
_ACTIVATIONS = ("linear", "relu", "softmax")
_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# dropout mask: a counter-based hash, so the engine and this reference draw the same masks
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

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


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _positive_pair(value, what):
    pair = (value, value) if _is_int(value) else value
    pair = tuple(pair) if isinstance(pair, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _parse_layer(index, spec):
    """Check one layer dict; return a normalised copy (pairs as tuples, defaults filled)."""
    if not isinstance(spec, dict):
        raise ValueError(f"layer {index}: expected a dict, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _TYPES:
        raise ValueError(f"layer {index}: unknown layer type {kind!r}; expected one of {_TYPES}")
    where = f"layer {index} ({kind})"
    out = {"type": kind}
    if kind in ("conv2d", "dense"):
        key = "filters" if kind == "conv2d" else "units"
        if not (_is_int(spec.get(key)) and spec[key] >= 1):
            raise ValueError(f"{where}: {key} must be a positive int, got {spec.get(key)!r}")
        out[key] = int(spec[key])
        out["activation"] = spec.get("activation", "linear")
        if out["activation"] not in _ACTIVATIONS:
            raise ValueError(f"{where}: activation must be one of {_ACTIVATIONS}, "
                             f"got {out['activation']!r}")
        out["use_bias"] = spec.get("use_bias", True)
        if not isinstance(out["use_bias"], (bool, np.bool_)):
            raise ValueError(f"{where}: use_bias must be a bool, got {out['use_bias']!r}")
    if kind == "conv2d":
        out["kernel_size"] = _positive_pair(spec.get("kernel_size"), f"{where}: kernel_size")
        out["strides"] = _positive_pair(spec.get("strides", 1), f"{where}: strides")
        out["padding"] = spec.get("padding", "valid")
        if out["padding"] not in ("valid", "same"):
            raise ValueError(f"{where}: padding must be 'valid' or 'same', got {out['padding']!r}")
    elif kind == "maxpool2d":
        out["pool_size"] = _positive_pair(spec.get("pool_size", 2), f"{where}: pool_size")
        strides = spec.get("strides")
        out["strides"] = out["pool_size"] if strides is None else _positive_pair(
            strides, f"{where}: strides")
    elif kind == "dropout":
        rate = spec.get("rate")
        if not (_is_real(rate) and 0 <= rate < 1):
            raise ValueError(f"{where}: rate must be a float in [0, 1), got {rate!r}")
        out["rate"] = float(rate)
    return out


def _output_shape(index, layer, shape):
    """A layer's output shape per sample from its input shape; ValueError if it cannot apply."""
    kind = layer["type"]
    where = f"layer {index} ({kind})"
    if kind in ("conv2d", "maxpool2d"):
        if len(shape) != 3:
            raise ValueError(f"{where} needs an (H, W, C) input per sample, got {shape}")
        size = layer["kernel_size"] if kind == "conv2d" else layer["pool_size"]
        padding = layer.get("padding", "valid")
        if padding == "valid" and (size[0] > shape[0] or size[1] > shape[1]):
            name = "kernel" if kind == "conv2d" else "pool"
            raise ValueError(f"{where}: {name} {size} is larger than its 'valid' input "
                             f"{shape[:2]}")
        oh = ref.conv_output_size(shape[0], size[0], layer["strides"][0], padding)[0]
        ow = ref.conv_output_size(shape[1], size[1], layer["strides"][1], padding)[0]
        return (oh, ow, layer["filters"] if kind == "conv2d" else shape[2])
    if kind == "flatten":
        return (math.prod(shape),)
    if kind == "dense":
        if len(shape) != 1:
            raise ValueError(f"{where} needs a 1-D input per sample, got {shape}: "
                             f"put a flatten layer before it")
        return (layer["units"],)
    return shape  # dropout


def _parse_optimizer(spec):
    """Check the optimizer dict; return it with Keras's defaults filled in."""
    if not isinstance(spec, dict) or spec.get("type") not in ("adam", "sgd"):
        got = spec.get("type") if isinstance(spec, dict) else spec
        raise ValueError(f"optimizer: type must be 'adam' or 'sgd', got {got!r}")
    if spec["type"] == "adam":
        out = {"type": "adam", "learning_rate": spec.get("learning_rate", 1e-3),
               "beta_1": spec.get("beta_1", 0.9), "beta_2": spec.get("beta_2", 0.999),
               "epsilon": spec.get("epsilon", 1e-7)}
        checks = {"beta_1": "[0, 1)", "beta_2": "[0, 1)", "epsilon": "> 0"}
    else:
        out = {"type": "sgd", "learning_rate": spec.get("learning_rate", 0.01),
               "momentum": spec.get("momentum", 0.0), "nesterov": spec.get("nesterov", False)}
        checks = {"momentum": ">= 0"}
        if not isinstance(out["nesterov"], (bool, np.bool_)):
            raise ValueError(f"optimizer: nesterov must be a bool, got {out['nesterov']!r}")
    checks["learning_rate"] = ">= 0"
    valid = {"[0, 1)": lambda v: 0 <= v < 1, "> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0}
    for key, rule in checks.items():
        if not (_is_real(out[key]) and valid[rule](out[key])):
            raise ValueError(f"optimizer: {key} must be a finite number {rule}, got {out[key]!r}")
        out[key] = float(out[key])
    return out


# ---------------------------------------------------------------------------
# the net
# ---------------------------------------------------------------------------

class ReferenceNet:
    """The engine's training plan in NumPy: ``ReferenceNet(layers, input_shape, optimizer)``.

    train_step(x, labels), one step:
      forward    a_0 = x;  a_{l+1} = layer_l(a_l) for every layer, where
                   conv2d    act(reference.conv2d(a, w, b, strides, padding))
                   dense     act(reference.dense(a, w, b))
                   maxpool2d reference.maxpool2d(a, pool_size, strides)
                   flatten   a.reshape(N, -1)  (NHWC in C order, as Keras)
                   dropout   where(keep, a * s, 0), keep from dropout_keep_mask and
                             s = 1 / (1 - rate) rounded once to the dtype
                 act is relu or linear; a final softmax is left out: the last
                 pre-activation output z is the logits.
      loss       loss, dz = reference.softmax_cross_entropy(z, labels)  (mean over N)
      backward   from the last layer down to the first layer with weights:
                 relu_backward on the layer's output, then conv2d_backward /
                 dense_backward / maxpool2d_backward / reshape / where(keep, dy * s, 0),
                 giving the layer's parameter gradients and the gradient of its input
                 (the first layer with weights needs none, and a conv2d there skips it).
      update     adam: reference.adam_update(p, g, m, v, step=iterations + 1, ...)
                 sgd:  v = momentum*v - lr*g; p += v  (nesterov: p += momentum*v - lr*g),
                       and p -= lr*g with momentum 0
                 then iterations += 1.
    Returns (mean loss, number of samples with argmax(z) == label; softmax keeps the argmax).

    dtype=np.float32 computes as the engine; np.float64 computes everything in float64.
    parameters() and optimizer_state() return the live arrays, in Keras get_weights() order.
    """

    def __init__(self, layers, input_shape, optimizer, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (1, 3) or \
                not all(_is_int(s) and s >= 1 for s in input_shape):
            raise ValueError(f"input_shape must be (H, W, C) or (F,) of positive ints, "
                             f"got {input_shape!r}")
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError("layers must be a non-empty list of layer dicts")
        self.input_shape = tuple(int(s) for s in input_shape)
        self._layers = [_parse_layer(i, spec) for i, spec in enumerate(layers)]
        self._opt = _parse_optimizer(optimizer)

        last = len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            if layer.get("activation") == "softmax" and i != last:
                raise ValueError(f"layer {i} ({layer['type']}): activation 'softmax' is "
                                 f"allowed only on the last layer")
        self._shapes = []
        shape = self.input_shape
        for i, layer in enumerate(self._layers):
            shape = _output_shape(i, layer, shape)
            self._shapes.append(shape)
        final = self._layers[last]
        if final["type"] != "dense" or final["activation"] not in ("linear", "softmax"):
            raise ValueError(f"layer {last} ({final['type']}): the last layer must be a dense "
                             f"layer with activation 'softmax' or 'linear' (logits), got "
                             f"activation {final.get('activation', 'none')!r}")
        self.classes = shape[0]

        # Parameters, zero-initialised, in Keras order; each layer keeps its indices.
        self._params = []
        in_shape = self.input_shape
        for layer, out_shape in zip(self._layers, self._shapes):
            if layer["type"] in ("conv2d", "dense"):
                kernel = (layer["kernel_size"] + (in_shape[2], layer["filters"])
                          if layer["type"] == "conv2d" else (in_shape[0], layer["units"]))
                layer["w"] = len(self._params)
                self._params.append(np.zeros(kernel, self.dtype))
                layer["b"] = None
                if layer["use_bias"]:
                    layer["b"] = len(self._params)
                    self._params.append(np.zeros(out_shape[-1], self.dtype))
            in_shape = out_shape

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

    def output_shapes(self):
        return list(self._shapes)

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
        if not (_is_real(value) and value >= 0):
            raise ValueError(f"learning_rate must be a finite number >= 0, got {value!r}")
        self._opt["learning_rate"] = float(value)

    # ---- checks of per-batch inputs ----------------------------------------------------

    def _check_x(self, x):
        x = np.asarray(x)
        if x.ndim != 1 + len(self.input_shape) or x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("x must hold at least one sample (N >= 1)")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
        return x.astype(self.dtype, copy=False)

    def _check_labels(self, labels, n):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(f"labels must be 1-D of length {n} (one per sample), "
                             f"got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.min() < 0 or labels.max() >= self.classes:
            raise ValueError(f"labels must lie in [0, {self.classes}), got range "
                             f"[{labels.min()}, {labels.max()}]")
        return labels

    # ---- forward / backward ------------------------------------------------------------

    def _forward(self, x, training):
        """Run all layers; return (logits, inputs, masks).

        logits is the last layer's output before any softmax, inputs[i] is layer i's input,
        masks[i] the keep-mask of dropout layer i (training only).
        """
        a, inputs, masks = x, [], {}
        for i, layer in enumerate(self._layers):
            kind, p = layer["type"], self._params
            inputs.append(a)
            if kind == "conv2d":
                b = None if layer["b"] is None else p[layer["b"]]
                a = ref.conv2d(a, p[layer["w"]], b, layer["strides"], layer["padding"])
            elif kind == "dense":
                a = ref.dense(a, p[layer["w"]], None if layer["b"] is None else p[layer["b"]])
            elif kind == "maxpool2d":
                a = ref.maxpool2d(a, layer["pool_size"], layer["strides"])
            elif kind == "flatten":
                a = a.reshape(a.shape[0], -1)
            elif kind == "dropout" and training:
                masks[i] = dropout_keep_mask(a.shape, layer["rate"], self._seed, i,
                                             self._iterations)
                a = np.where(masks[i], a * self._dropout_scale(layer), 0)
            if layer.get("activation") == "relu":
                a = ref.relu(a)
        return a, inputs, masks

    def _dropout_scale(self, layer):
        """1 / (1 - rate), computed in float64 and rounded once to the net's dtype."""
        return self.dtype.type(1.0 / (1.0 - layer["rate"]))

    def _backward(self, inputs, masks, logits, dlogits):
        """Gradients of all parameters, in the order of self._params."""
        grads = [None] * len(self._params)
        outputs = inputs[1:] + [logits]
        dy = dlogits
        # Layers before the first one with weights need no gradient at all.
        first = min((i for i, l in enumerate(self._layers) if "w" in l), default=len(inputs))
        for i in range(len(self._layers) - 1, first - 1, -1):
            layer, x = self._layers[i], inputs[i]
            kind = layer["type"]
            if layer.get("activation") == "relu":
                dy = ref.relu_backward(outputs[i], dy)  # output > 0 exactly where input > 0
            if kind == "conv2d":
                dx, grads[layer["w"]], db = ref._conv2d_backward(
                    x, self._params[layer["w"]], dy, layer["strides"], layer["padding"],
                    input_grad=i > first)
            elif kind == "dense":
                dx, grads[layer["w"]], db = ref.dense_backward(x, self._params[layer["w"]], dy)
            elif kind == "maxpool2d":
                dx = ref.maxpool2d_backward(x, dy, layer["pool_size"], layer["strides"])
            elif kind == "flatten":
                dx = dy.reshape(x.shape)
            else:
                dx = np.where(masks[i], dy * self._dropout_scale(layer), 0)
            if layer.get("b") is not None:
                grads[layer["b"]] = db
            dy = dx
        return grads

    def _update(self, grads):
        opt, step = self._opt, self._iterations + 1
        lr = opt["learning_rate"]
        for k, (p, g) in enumerate(zip(self._params, grads)):
            g = g.astype(self.dtype, copy=False)
            if opt["type"] == "adam":
                m, v = self._state[k], self._state[len(self._params) + k]
                ref.adam_update(p, g, m, v, step, lr, opt["beta_1"], opt["beta_2"],
                                opt["epsilon"])
            elif opt["momentum"] == 0:
                p -= lr * g
            else:
                v = self._state[k]
                v *= opt["momentum"]
                v -= lr * g
                p += opt["momentum"] * v - lr * g if opt["nesterov"] else v

    # ---- the public steps ---------------------------------------------------------------

    def train_step(self, x, labels):
        """One forward, fused softmax cross-entropy, backward and update: (loss, correct)."""
        x = self._check_x(x)
        labels = self._check_labels(labels, x.shape[0])
        logits, inputs, masks = self._forward(x, training=True)
        loss, dlogits = ref.softmax_cross_entropy(logits, labels)
        self._update(self._backward(inputs, masks, logits, dlogits))
        self._iterations += 1
        return float(loss), int(np.sum(logits.argmax(axis=1) == labels))

    def predict(self, x):
        """The last layer's activation of the forward pass (softmax probabilities or logits)."""
        logits = self._forward(self._check_x(x), training=False)[0]
        if self._layers[-1].get("activation") == "softmax":
            return ref.softmax(logits)
        return logits

    def evaluate(self, x, labels):
        """(summed loss, correct) over the batch, dropout off, no update."""
        x = self._check_x(x)
        labels = self._check_labels(labels, x.shape[0])
        logits = self._forward(x, training=False)[0]
        loss, _ = ref.softmax_cross_entropy(logits, labels)
        return float(loss) * x.shape[0], int(np.sum(logits.argmax(axis=1) == labels))
