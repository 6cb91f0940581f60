"""Keras-style layers: Conv2D, MaxPooling2D, Flatten, Dense, Dropout and Input.

A layer here only describes: its settings, its output shape for a given input shape
(checked when it is added to a model, so a bad stack fails at ``add()``), and its weights
in Keras's layouts (conv kernel HWIO, dense kernel (in, out), bias (units,)). The C++
engine does the arithmetic; ``engine_spec()`` is the layer's entry in the engine's layer
list (csrc/engine/CONTRACT.md). Shapes here are per sample, without the batch axis.

Weights are NumPy arrays initialised from ``fastnn.utils``'s seeded generator. Once the
model is compiled they are views of the engine's memory, so ``get_weights()`` always
shows the weights as trained and ``set_weights()`` writes straight into the engine.
"""

import math
import numbers

import numpy as np

from fastnn import _naming, reference, utils

__all__ = ["Conv2D", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "Layer", "MaxPooling2D"]

ACTIVATIONS = ("linear", "relu", "softmax")

# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(value, what):
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _pair(value, what):
    """An int or a pair of positive ints -> (rows, cols), as Keras's kernel_size/strides."""
    if _is_int(value):
        pair = (value, value)
    else:
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_shape(value, what):
    """A per-sample shape: a tuple of positive ints (no batch axis, no None)."""
    if _is_int(value):
        shape = (value,)
    else:
        shape = tuple(value) if isinstance(value, (tuple, list)) else None
    if not shape or not all(_is_int(d) and d >= 1 for d in shape):
        raise ValueError(f"{what} must be a tuple of positive ints without the batch axis, "
                         f"e.g. (28, 28, 1), got {value!r}")
    return tuple(int(d) for d in shape)


def _activation(value, owner):
    name = "linear" if value is None else value
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {value!r}; fastnn knows "
                         f"{', '.join(map(repr, ACTIVATIONS))} (and None, meaning 'linear')")
    return name


def _padding(value, owner):
    mode = value.lower() if isinstance(value, str) else value
    if mode not in ("valid", "same"):
        raise ValueError(f"{owner}: padding must be 'valid' or 'same', got {value!r}")
    return mode


# ---------------------------------------------------------------------------
# initializers (Keras's definitions)
# ---------------------------------------------------------------------------

INITIALIZERS = ("glorot_uniform", "he_normal", "zeros")
_INITIALIZER_ALIASES = {"GlorotUniform": "glorot_uniform", "HeNormal": "he_normal",
                        "Zeros": "zeros"}


def _initializer(value, owner, what):
    name = _INITIALIZER_ALIASES.get(value, value)
    if name not in INITIALIZERS:
        raise ValueError(f"{owner}: unknown {what} {value!r}; fastnn knows "
                         f"{', '.join(map(repr, INITIALIZERS))}")
    return name


def _fans(shape):
    """Keras's fan-in and fan-out: a conv kernel (kh, kw, cin, cout) counts kh*kw per channel."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def initialize(name, shape):
    """A float32 array of ``shape`` drawn by the named Keras initializer.

    glorot_uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)).
    he_normal: normal with stddev sqrt(2 / fan_in) / 0.8796..., values beyond two of those
      stddevs redrawn (Keras's truncated normal; the divisor restores the variance the
      truncation removes, so the result has variance 2 / fan_in).
    """
    rng = utils.generator()
    fan_in, fan_out = _fans(shape)
    if name == "zeros":
        return np.zeros(shape, np.float32)
    if name == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    stddev = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return (values * stddev).astype(np.float32)


# ---------------------------------------------------------------------------
# the base class
# ---------------------------------------------------------------------------

def check_weights(targets, weights, labels, owner):
    """float32 copies of ``weights`` if they match ``targets`` in count and shapes, else ValueError.

    ``labels[i]`` names target i in messages, e.g. 'conv2d kernel'.
    """
    weights = list(weights)
    if len(weights) != len(targets):
        raise ValueError(f"{owner}: expected a list of {len(targets)} weight arrays "
                         f"({', '.join(labels) or 'none'}), got {len(weights)}")
    arrays = []
    for i, (target, value, label) in enumerate(zip(targets, weights, labels)):
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{owner}: weights[{i}] ({label}) is not a numeric array: "
                            f"{e}") from None
        if array.shape != target.shape:
            raise ValueError(f"{owner}: weights[{i}] ({label}) must have shape {target.shape}, "
                             f"got {array.shape}")
        arrays.append(array)
    return arrays


class Layer:
    """Base class: a named step of a Sequential model.

    Subclasses define ``compute_output_shape(input_shape)`` (raising ValueError when the
    layer cannot take that input), ``weight_specs(input_shape)`` (the (what, shape,
    initializer) of each weight, in Keras's get_weights() order), ``engine_spec()``
    and ``get_config()``.
    """

    base_name = "layer"

    def __init__(self, name=None, input_shape=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        if name is not None and not (isinstance(name, str) and name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty str, got {name!r}")
        self.name = name or _naming.unique_name(self.base_name)
        self.declared_input_shape = None if input_shape is None else check_shape(
            input_shape, f"{self.name}: input_shape")
        self.model = None           # the Sequential this layer belongs to
        self._input_shape = None    # per sample; set by build()
        self._output_shape = None
        self._weights = []          # NumPy arrays, or views of the engine's memory

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"

    @property
    def where(self):
        """How messages name this layer: 'conv2d_1 (Conv2D)'."""
        return f"{self.name} ({type(self).__name__})"

    # -- shapes --------------------------------------------------------------

    @property
    def built(self):
        return self._output_shape is not None

    @property
    def input_shape(self):
        """(None, *per-sample input shape), as Keras reports it."""
        self._require_built("input_shape")
        return (None,) + self._input_shape

    @property
    def output_shape(self):
        """(None, *per-sample output shape), as Keras reports it."""
        self._require_built("output_shape")
        return (None,) + self._output_shape

    def _require_built(self, what):
        if not self.built:
            raise AttributeError(f"{self.where} has no {what} yet: it is not built (give the "
                                 f"model an input shape, or call fit/predict on it)")

    def compute_output_shape(self, input_shape):
        return input_shape

    def weight_specs(self, input_shape):
        return []

    def build(self, input_shape):
        """Check ``input_shape`` (per sample), record the shapes and create the weights."""
        output_shape = self.compute_output_shape(tuple(input_shape))
        self._input_shape, self._output_shape = tuple(input_shape), tuple(output_shape)
        self._weights = [initialize(init, shape)
                         for _, shape, init in self.weight_specs(input_shape)]

    # -- weights -------------------------------------------------------------

    @property
    def weights(self):
        """The live weight arrays (engine views once compiled); prefer get_weights(). On
        the GPU they are the engine's host copy, current as of this call."""
        if self.model is not None:
            self.model._pull_weights()
        return list(self._weights)

    def weight_labels(self):
        if not self.built:
            return []
        return [f"{self.name} {what}" for what, _, _ in self.weight_specs(self._input_shape)]

    def get_weights(self):
        """Copies of this layer's weights, in Keras's order and layouts."""
        if self.model is not None:
            self.model._pull_weights()
        return [w.copy() for w in self._weights]

    def set_weights(self, weights):
        """Overwrite the weights; the list must match get_weights() in count and shapes."""
        arrays = check_weights(self._weights, weights, self.weight_labels(),
                               f"{self.where}.set_weights")
        if self.model is not None:
            self.model._pull_weights()  # the other layers' weights must survive the push
        for target, value in zip(self._weights, arrays):
            target[...] = value
        if self.model is not None:
            self.model._push_weights()

    def count_params(self):
        if not self.built:
            raise ValueError(f"{self.where}.count_params(): the layer is not built yet, so its "
                             f"weight shapes are unknown")
        return sum(math.prod(shape) for _, shape, _ in self.weight_specs(self._input_shape))

    # -- serialisation -------------------------------------------------------

    def get_config(self):
        config = {"name": self.name}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# ---------------------------------------------------------------------------
# the layers
# ---------------------------------------------------------------------------

class InputLayer(Layer):
    """The model's input: ``InputLayer(shape=(28, 28, 1))``. Holds no weights, runs nothing."""

    base_name = "input_layer"

    def __init__(self, shape=None, name=None, input_shape=None):
        if (shape is None) == (input_shape is None):
            raise ValueError("InputLayer: give exactly one of shape= and input_shape= "
                             f"(got shape={shape!r}, input_shape={input_shape!r})")
        super().__init__(name=name, input_shape=shape if input_shape is None else input_shape)
        self.build(self.declared_input_shape)

    def get_config(self):
        return {"name": self.name, "shape": list(self.declared_input_shape)}


def Input(shape, batch_size=None, name=None):
    """``layers.Input(shape=(28, 28, 1))``: an input for the first place of ``Sequential([...])``.

    ``shape`` excludes the batch axis; ``batch_size`` is accepted for Keras compatibility
    and ignored (fastnn takes any batch size).
    """
    if batch_size is not None:
        _positive_int(batch_size, "Input: batch_size")
    return InputLayer(shape=shape, name=name)


class _WeightedLayer(Layer):
    """What Conv2D and Dense share: a kernel, an optional bias, an activation."""

    def __init__(self, activation, use_bias, kernel_initializer, bias_initializer, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation(activation, self.where)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"{self.where}: use_bias must be a bool, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializer(kernel_initializer, self.where, "kernel_initializer")
        self.bias_initializer = _initializer(bias_initializer, self.where, "bias_initializer")

    def _kernel_and_bias(self, kernel_shape, units):
        specs = [("kernel", kernel_shape, self.kernel_initializer)]
        if self.use_bias:
            specs.append(("bias", (units,), self.bias_initializer))
        return specs

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


class Conv2D(_WeightedLayer):
    """2-D convolution over (height, width, channels) inputs, with bias and activation."""

    base_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, **kwargs)
        self.filters = _positive_int(filters, f"{self.where}: filters")
        self.kernel_size = _pair(kernel_size, f"{self.where}: kernel_size")
        self.strides = _pair(strides, f"{self.where}: strides")
        self.padding = _padding(padding, self.where)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.where} needs an input of shape (height, width, channels) per "
                             f"sample, got {input_shape}")
        if self.padding == "valid" and any(k > s for k, s in zip(self.kernel_size, input_shape)):
            raise ValueError(f"{self.where}: kernel {self.kernel_size} is larger than its input "
                             f"{input_shape[:2]} with padding='valid'")
        rows, cols = (reference.conv_output_size(size, k, s, self.padding)[0]
                      for size, k, s in zip(input_shape, self.kernel_size, self.strides))
        return rows, cols, self.filters

    def weight_specs(self, input_shape):
        return self._kernel_and_bias(self.kernel_size + (input_shape[-1], self.filters),
                                     self.filters)

    def engine_spec(self):
        return {"type": "conv2d", "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "activation": self.activation, "use_bias": self.use_bias}

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(Layer):
    """Max over each pool window of (height, width, channels) inputs; 'valid' padding only."""

    base_name = "max_pooling2d"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, f"{self.where}: pool_size")
        self.strides = (self.pool_size if strides is None
                        else _pair(strides, f"{self.where}: strides"))
        if _padding(padding, self.where) == "same":
            raise NotImplementedError(f"{self.where}: padding='same' is not supported; fastnn "
                                      f"pools with padding='valid' only")
        self.padding = "valid"

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.where} needs an input of shape (height, width, channels) per "
                             f"sample, got {input_shape}")
        if any(p > s for p, s in zip(self.pool_size, input_shape)):
            raise ValueError(f"{self.where}: pool_size {self.pool_size} is larger than its input "
                             f"{input_shape[:2]}")
        rows, cols = ((size - p) // s + 1
                      for size, p, s in zip(input_shape, self.pool_size, self.strides))
        return rows, cols, input_shape[2]

    def engine_spec(self):
        return {"type": "maxpool2d", "pool_size": self.pool_size, "strides": self.strides}

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class Flatten(Layer):
    """Flattens each sample to one axis, in C order (NHWC), as Keras does."""

    base_name = "flatten"

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def engine_spec(self):
        return {"type": "flatten"}


class Dense(_WeightedLayer):
    """Fully connected layer on 1-D inputs: ``activation(x @ kernel + bias)``."""

    base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, **kwargs)
        self.units = _positive_int(units, f"{self.where}: units")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            # Keras would apply Dense to the last axis; the engine takes 1-D inputs only.
            raise ValueError(f"{self.where} needs a 1-D input per sample, got {input_shape}: "
                             f"put a Flatten() layer before it")
        return (self.units,)

    def weight_specs(self, input_shape):
        return self._kernel_and_bias((input_shape[0], self.units), self.units)

    def engine_spec(self):
        return {"type": "dense", "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias}

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Dropout(Layer):
    """While training, zeroes each value with probability ``rate`` and scales the rest by
    1 / (1 - rate); at inference it passes values through (Keras's inverted dropout)."""

    base_name = "dropout"

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(rate, numbers.Real) and not isinstance(rate, bool) and 0 <= rate < 1):
            raise ValueError(f"{self.where}: rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def engine_spec(self):
        return {"type": "dropout", "rate": self.rate}

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


# Class names in saved model configs -> classes.
LAYER_CLASSES = {cls.__name__: cls
                 for cls in (InputLayer, Conv2D, MaxPooling2D, Flatten, Dense, Dropout)}
