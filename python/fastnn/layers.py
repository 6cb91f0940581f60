"""Keras-style layers: Conv2D, Dense, pooling (max, average, global), BatchNormalization,
activation layers (Activation, ReLU, LeakyReLU, ELU, Softmax), Dropout, Flatten, Reshape,
Rescaling and Input.

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

from fastnn import _naming, activations, initializers, reference

__all__ = ["ELU", "Activation", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense",
           "Dropout", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Input",
           "InputLayer", "Layer", "LeakyReLU", "MaxPooling2D", "RandomContrast", "RandomCrop",
           "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "ReLU",
           "Rescaling", "Reshape", "Softmax"]

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
    return activations.get(value, owner)


def _real(value, what, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {what} must be a finite number, got {value!r}")
    return float(value)


def _channels_last(data_format, owner):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{owner}: data_format={data_format!r} is not supported; fastnn "
                         f"keeps images channels_last (NHWC)")


def _image_input(input_shape, where):
    if len(input_shape) != 3:
        raise ValueError(f"{where} needs an input of shape (height, width, channels) per "
                         f"sample, got {input_shape}")


def _padding(value, owner):
    mode = value.lower() if isinstance(value, str) else value
    if mode not in ("valid", "same"):
        raise ValueError(f"{owner}: padding must be 'valid' or 'same', got {value!r}")
    return mode


def _initializer(value, owner, what):
    """An initializer (initializers.get) and how a config records it: the name as given,
    or the object's serialized form."""
    init = initializers.get(value, f"{owner}: {what}")
    return init, (value if isinstance(value, str) else initializers.serialize(init))


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
    initializer[, trainable]) of each weight, in Keras's get_weights() order),
    ``engine_spec()`` (one engine layer dict, or a list of them) and ``get_config()``.
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
        self._weights = [spec[2](spec[1]) for spec in self.weight_specs(input_shape)]

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
        return [f"{self.name} {spec[0]}" for spec in self.weight_specs(self._input_shape)]

    def weight_trainable(self):
        """For each weight: whether training moves it (moving statistics do not)."""
        if not self.built:
            return []
        return [spec[3] if len(spec) > 3 else True for spec in self.weight_specs(self._input_shape)]

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
        return sum(math.prod(spec[1]) for spec in self.weight_specs(self._input_shape))

    def count_trainable_params(self):
        self.count_params()
        return sum(math.prod(spec[1]) for spec, trainable in
                   zip(self.weight_specs(self._input_shape), self.weight_trainable()) if trainable)

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

    def __init__(self, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        for what, value in (("kernel_regularizer", kernel_regularizer),
                            ("bias_regularizer", bias_regularizer),
                            ("activity_regularizer", activity_regularizer),
                            ("kernel_constraint", kernel_constraint),
                            ("bias_constraint", bias_constraint)):
            if value is not None:
                raise NotImplementedError(f"{self.where}: {what} is not supported yet; only "
                                          f"None is")
        self.activation = _activation(activation, self.where)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"{self.where}: use_bias must be a bool, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        self._kernel_init, self.kernel_initializer = _initializer(
            kernel_initializer, self.where, "kernel_initializer")
        self._bias_init, self.bias_initializer = _initializer(
            bias_initializer, self.where, "bias_initializer")

    def _kernel_and_bias(self, kernel_shape, units):
        specs = [("kernel", kernel_shape, self._kernel_init)]
        if self.use_bias:
            specs.append(("bias", (units,), self._bias_init))
        return specs

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


class Conv2D(_WeightedLayer):
    """2-D convolution over (height, width, channels) inputs, with bias and activation."""

    base_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, **kwargs)
        self.filters = _positive_int(filters, f"{self.where}: filters")
        self.kernel_size = _pair(kernel_size, f"{self.where}: kernel_size")
        self.strides = _pair(strides, f"{self.where}: strides")
        self.padding = _padding(padding, self.where)
        _channels_last(data_format, self.where)
        if _pair(dilation_rate, f"{self.where}: dilation_rate") != (1, 1):
            raise NotImplementedError(f"{self.where}: dilation_rate={dilation_rate!r} is not "
                                      f"supported; only (1, 1) is")
        if groups != 1:
            raise NotImplementedError(f"{self.where}: groups={groups!r} is not supported; "
                                      f"only 1 is")

    def compute_output_shape(self, input_shape):
        _image_input(input_shape, self.where)
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
                "strides": self.strides, "padding": self.padding, "use_bias": self.use_bias,
                **activations.engine_fields(self.activation)}

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding}


class _Pooling2D(Layer):
    """What MaxPooling2D and AveragePooling2D share: window, strides, padding."""

    engine_type = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, f"{self.where}: pool_size")
        self.strides = (self.pool_size if strides is None
                        else _pair(strides, f"{self.where}: strides"))
        self.padding = _padding(padding, self.where)
        _channels_last(data_format, self.where)

    def compute_output_shape(self, input_shape):
        _image_input(input_shape, self.where)
        if self.padding == "valid" and any(p > s for p, s in zip(self.pool_size, input_shape)):
            raise ValueError(f"{self.where}: pool_size {self.pool_size} is larger than its input "
                             f"{input_shape[:2]} with padding='valid'")
        rows, cols = (reference.conv_output_size(size, p, s, self.padding)[0]
                      for size, p, s in zip(input_shape, self.pool_size, self.strides))
        return rows, cols, input_shape[2]

    def engine_spec(self):
        return {"type": self.engine_type, "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The maximum of each pool window of (height, width, channels) inputs."""

    base_name = "max_pooling2d"
    engine_type = "maxpool2d"


class AveragePooling2D(_Pooling2D):
    """The mean of each pool window; with padding='same', of the window's positions inside
    the input (as Keras)."""

    base_name = "average_pooling2d"
    engine_type = "avgpool2d"


class _GlobalPooling2D(Layer):
    """One value per channel over the whole image: (channels,), or (1, 1, channels) with
    keepdims."""

    engine_type = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.where)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{self.where}: keepdims must be a bool, got {keepdims!r}")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        _image_input(input_shape, self.where)
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def engine_spec(self):
        height, width, channels = self._input_shape
        pool = {"type": self.engine_type, "pool_size": (height, width),
                "strides": (height, width), "padding": "valid"}
        return [pool] if self.keepdims else [pool, {"type": "reshape", "shape": [channels]}]

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    base_name = "global_average_pooling2d"
    engine_type = "avgpool2d"


class GlobalMaxPooling2D(_GlobalPooling2D):
    base_name = "global_max_pooling2d"
    engine_type = "maxpool2d"


class Flatten(Layer):
    """Flattens each sample to one axis, in C order (NHWC), as Keras does."""

    base_name = "flatten"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.where)

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def engine_spec(self):
        return {"type": "reshape", "shape": [math.prod(self._input_shape)]}


class Reshape(Layer):
    """Each sample to ``target_shape`` (C order; one axis may be -1, inferred)."""

    base_name = "reshape"

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        shape = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None
        if (not shape or not all(_is_int(d) and (d >= 1 or d == -1) for d in shape)
                or sum(d == -1 for d in shape) > 1):
            raise ValueError(f"{self.where}: target_shape must be a tuple of positive ints "
                             f"(one of them may be -1), got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in shape)

    def compute_output_shape(self, input_shape):
        total, known = math.prod(input_shape), math.prod(d for d in self.target_shape if d != -1)
        shape = tuple(total // known if d == -1 else d for d in self.target_shape)
        if math.prod(shape) != total:
            raise ValueError(f"{self.where}: cannot reshape an input of shape {input_shape} "
                             f"({total} values) to {self.target_shape}")
        return shape

    def engine_spec(self):
        return {"type": "reshape", "shape": list(self._output_shape)}

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Dense(_WeightedLayer):
    """Fully connected layer on the last axis: ``activation(x @ kernel + bias)``."""

    base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, **kwargs)
        self.units = _positive_int(units, f"{self.where}: units")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)  # on the last axis, as Keras

    def weight_specs(self, input_shape):
        return self._kernel_and_bias((input_shape[-1], self.units), self.units)

    def engine_spec(self):
        return {"type": "dense", "units": self.units, "use_bias": self.use_bias,
                **activations.engine_fields(self.activation)}

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Dropout(Layer):
    """While training, zeroes each value with probability ``rate`` and scales the rest by
    1 / (1 - rate); at inference it passes values through (Keras's inverted dropout)."""

    base_name = "dropout"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if noise_shape is not None:
            raise NotImplementedError(f"{self.where}: noise_shape is not supported; only None "
                                      f"(a coin per value) is")
        if not (isinstance(rate, numbers.Real) and not isinstance(rate, bool) and 0 <= rate < 1):
            raise ValueError(f"{self.where}: rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def engine_spec(self):
        return {"type": "dropout", "rate": self.rate}

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class _ActivationLayer(Layer):
    """A layer that applies an element-wise activation (or softmax) and holds no weights."""

    def _engine_activation(self):
        raise NotImplementedError

    def engine_spec(self):
        return {"type": "activation", **self._engine_activation()}

    @property
    def activation(self):
        """The Keras activation name this layer applies (what a loss checks on the head)."""
        return self._engine_activation()["activation"].replace("swish", "silu")


class Activation(_ActivationLayer):
    """``Activation('tanh')``: applies a Keras activation (a name or activations.*)."""

    base_name = "activation"

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation_name = _activation(activation, self.where)

    @property
    def activation(self):
        return self.activation_name

    def _engine_activation(self):
        return activations.engine_fields(self.activation_name)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation_name}


class ReLU(_ActivationLayer):
    """Keras's ReLU layer: max_value (None: none), negative_slope below threshold."""

    base_name = "re_lu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None:
            max_value = _real(max_value, "max_value", self.where)
            if max_value < 0:
                raise ValueError(f"{self.where}: max_value must be >= 0, got {max_value}")
        self.max_value = max_value
        self.negative_slope = _real(negative_slope, "negative_slope", self.where)
        if self.negative_slope < 0:
            raise ValueError(f"{self.where}: negative_slope must be >= 0, got {negative_slope}")
        self.threshold = _real(threshold, "threshold", self.where)

    def _engine_activation(self):
        if self.max_value is None and self.negative_slope == 0 and self.threshold == 0:
            return activations.engine_fields("relu")
        fields = activations.engine_fields("relu", self.negative_slope,
                                           math.inf if self.max_value is None else self.max_value,
                                           self.threshold)
        return {**fields, "activation": "relu_clipped"}

    @property
    def activation(self):
        return "relu"

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(_ActivationLayer):
    """x for x >= 0, negative_slope * x below (Keras's default slope 0.3)."""

    base_name = "leaky_re_lu"

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2's name, which Keras 3 still accepts
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _real(negative_slope, "negative_slope", self.where)
        if self.negative_slope < 0:
            raise ValueError(f"{self.where}: negative_slope must be >= 0, got {negative_slope}")

    def _engine_activation(self):
        return activations.engine_fields("leaky_relu", self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_ActivationLayer):
    """x for x > 0, alpha * (exp(x) - 1) below."""

    base_name = "elu"

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _real(alpha, "alpha", self.where)

    def _engine_activation(self):
        return activations.engine_fields("elu", self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(_ActivationLayer):
    """Softmax over the last axis (axis=-1, Keras's default, is the one supported)."""

    base_name = "softmax"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise NotImplementedError(f"{self.where}: axis={axis!r} is not supported; fastnn "
                                      f"takes the softmax over the last axis (axis=-1)")
        self.axis = -1

    def _engine_activation(self):
        return activations.engine_fields("softmax")

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Rescaling(_ActivationLayer):
    """``x * scale + offset``, e.g. ``Rescaling(1. / 255)`` for 8-bit images."""

    base_name = "rescaling"

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _real(scale, "scale (a number; per-channel lists are not supported)",
                           self.where)
        self.offset = _real(offset, "offset (a number; per-channel lists are not supported)",
                            self.where)

    def _engine_activation(self):
        return {**activations.engine_fields("linear", self.scale, self.offset),
                "activation": "affine"}

    @property
    def activation(self):
        return "linear"

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class BatchNormalization(Layer):
    """Normalises over the last axis: batch statistics while training (updating the moving
    ones: moving = moving * momentum + batch * (1 - momentum), biased variance), the moving
    statistics at inference; then * gamma (scale) + beta (center). Weights in Keras's order:
    gamma, beta, moving_mean, moving_variance (the last two not trainable)."""

    base_name = "batch_normalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        for what, value in (("beta_regularizer", beta_regularizer),
                            ("gamma_regularizer", gamma_regularizer),
                            ("beta_constraint", beta_constraint),
                            ("gamma_constraint", gamma_constraint)):
            if value is not None:
                raise NotImplementedError(f"{self.where}: {what} is not supported yet; only "
                                          f"None is")
        if not _is_int(axis):
            raise ValueError(f"{self.where}: axis must be an int, got {axis!r}")
        self.axis = int(axis)
        self.momentum = _real(momentum, "momentum", self.where)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"{self.where}: momentum must be in [0, 1], got {momentum}")
        self.epsilon = _real(epsilon, "epsilon", self.where)
        if self.epsilon <= 0:
            raise ValueError(f"{self.where}: epsilon must be > 0, got {epsilon}")
        for what, value in (("center", center), ("scale", scale), ("synchronized", synchronized)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{self.where}: {what} must be a bool, got {value!r}")
        self.center, self.scale = bool(center), bool(scale)
        self._inits = {}
        self._init_configs = {}
        for what, value in (("beta", beta_initializer), ("gamma", gamma_initializer),
                            ("moving_mean", moving_mean_initializer),
                            ("moving_variance", moving_variance_initializer)):
            self._inits[what], self._init_configs[what] = _initializer(
                value, self.where, f"{what}_initializer")

    def compute_output_shape(self, input_shape):
        if self.axis not in (-1, len(input_shape)):
            raise NotImplementedError(
                f"{self.where}: axis={self.axis} is not supported; fastnn normalises the last "
                f"axis (axis=-1, the channels of an NHWC image)")
        return input_shape

    def weight_specs(self, input_shape):
        channels = (input_shape[-1],)
        specs = []
        if self.scale:
            specs.append(("gamma", channels, self._inits["gamma"]))
        if self.center:
            specs.append(("beta", channels, self._inits["beta"]))
        return specs + [("moving_mean", channels, self._inits["moving_mean"], False),
                        ("moving_variance", channels, self._inits["moving_variance"], False)]

    def engine_spec(self):
        return {"type": "batchnorm", "epsilon": self.epsilon, "momentum": self.momentum,
                "center": self.center, "scale": self.scale}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **{f"{what}_initializer": config for what, config in self._init_configs.items()}}


# ---------------------------------------------------------------------------
# augmentation: random in training, the identity at inference (RandomCrop: its center
# crop); run in the engine (C++/CUDA), seeded by the model's seed or the layer's own
# ---------------------------------------------------------------------------

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("bilinear", "nearest")


def _factor_range(value, what, owner, low=-1.0, high=1.0, symmetric=True):
    """Keras's factor: a number f meaning (-f, f) (or (f, f) with symmetric=False, for
    RandomContrast's lower and upper), or a (lower, upper) pair; each within [low, high]."""
    if isinstance(value, (tuple, list)):
        pair = tuple(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        pair = (-value, value) if symmetric else (value, value)
    else:
        pair = ()
    if (len(pair) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                  and math.isfinite(v) for v in pair)):
        raise ValueError(f"{owner}: {what} must be a number or a (lower, upper) pair, "
                         f"got {value!r}")
    pair = (float(pair[0]), float(pair[1]))
    if symmetric and pair[0] > pair[1]:
        raise ValueError(f"{owner}: {what} lower bound {pair[0]} is above its upper bound "
                         f"{pair[1]}")
    if not all(low <= v <= high for v in pair):
        raise ValueError(f"{owner}: {what} must lie in [{low}, {high}], got {value!r}")
    return pair


class _RandomImageLayer(Layer):
    """What the augmentation layers share: a seed, image inputs, an engine dict."""

    mode = None

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.where)
        if seed is not None and not (_is_int(seed) and 0 <= seed < 2**64):
            raise ValueError(f"{self.where}: seed must be None or an int in [0, 2**64), "
                             f"got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def compute_output_shape(self, input_shape):
        _image_input(input_shape, self.where)
        return input_shape

    def _engine_fields(self):
        return {}

    def engine_spec(self):
        return {"type": "augment", "mode": self.mode, "seed": self.seed, **self._engine_fields()}

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class _FillingLayer(_RandomImageLayer):
    """The geometric ones: fill_mode, fill_value and interpolation as Keras's."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", fill_value=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"{self.where}: fill_mode must be one of "
                             f"{', '.join(map(repr, _FILL_MODES))}, got {fill_mode!r}")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{self.where}: interpolation must be one of "
                             f"{', '.join(map(repr, _INTERPOLATIONS))}, got {interpolation!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.fill_value = _real(fill_value, "fill_value", self.where)

    def _engine_fields(self):
        return {"fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomFlip(_RandomImageLayer):
    """Flips each image left-right and/or up-down with probability 1/2 each."""

    base_name = "random_flip"
    mode = "flip"
    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"{self.where}: mode must be one of "
                             f"{', '.join(map(repr, self.MODES))}, got {mode!r}")
        self.flip_mode = mode

    def _engine_fields(self):
        return {"flip_horizontal": "horizontal" in self.flip_mode,
                "flip_vertical": "vertical" in self.flip_mode}

    def get_config(self):
        return {**super().get_config(), "mode": self.flip_mode}


class RandomTranslation(_FillingLayer):
    """Shifts each image by a random fraction of its height and width."""

    base_name = "random_translation"
    mode = "translation"

    def __init__(self, height_factor, width_factor, **kwargs):
        super().__init__(**kwargs)
        self.height_factor = _factor_range(height_factor, "height_factor", self.where)
        self.width_factor = _factor_range(width_factor, "width_factor", self.where)

    def _engine_fields(self):
        return {**super()._engine_fields(), "translate_height": list(self.height_factor),
                "translate_width": list(self.width_factor)}

    def get_config(self):
        return {**super().get_config(), "height_factor": list(self.height_factor),
                "width_factor": list(self.width_factor)}


class RandomRotation(_FillingLayer):
    """Rotates each image about its center by a random fraction of a full turn."""

    base_name = "random_rotation"
    mode = "rotation"

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = _factor_range(factor, "factor", self.where, -math.inf, math.inf)

    def _engine_fields(self):
        return {**super()._engine_fields(), "rotation": list(self.factor)}

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


class RandomZoom(_FillingLayer):
    """Zooms each image by a random factor (positive: out, negative: in); width_factor None
    keeps the aspect ratio."""

    base_name = "random_zoom"
    mode = "zoom"

    def __init__(self, height_factor, width_factor=None, **kwargs):
        super().__init__(**kwargs)
        self.height_factor = _factor_range(height_factor, "height_factor", self.where, -1.0,
                                           math.inf)
        self.width_factor = (None if width_factor is None else
                             _factor_range(width_factor, "width_factor", self.where, -1.0,
                                           math.inf))

    def _engine_fields(self):
        return {**super()._engine_fields(), "zoom_height": list(self.height_factor),
                "zoom_width": None if self.width_factor is None else list(self.width_factor)}

    def get_config(self):
        return {**super().get_config(), "height_factor": list(self.height_factor),
                "width_factor": None if self.width_factor is None else list(self.width_factor)}


class RandomCrop(_RandomImageLayer):
    """Crops a random (height, width) window in training (one offset per batch, as Keras);
    at inference the center crop to the target's aspect ratio, resized to (height, width)
    as Keras documents it (Keras 3.15 itself passes the images through unresized, which
    changes the output shape between training and inference)."""

    base_name = "random_crop"
    mode = "crop"

    def __init__(self, height, width, **kwargs):
        super().__init__(**kwargs)
        self.height = _positive_int(height, f"{self.where}: height")
        self.width = _positive_int(width, f"{self.where}: width")

    def compute_output_shape(self, input_shape):
        _image_input(input_shape, self.where)
        return self.height, self.width, input_shape[2]

    def _engine_fields(self):
        return {"crop": [self.height, self.width]}

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class RandomContrast(_RandomImageLayer):
    """Scales each image's deviation from its per-channel mean by a random factor in
    [1 - lower, 1 + upper] (a single factor f: [1, 1 + f], as Keras 3), then clips to
    value_range."""

    base_name = "random_contrast"
    mode = "contrast"

    def __init__(self, factor, value_range=(0, 255), **kwargs):
        super().__init__(**kwargs)
        # As Keras 3 reads it: a number f means (lower, upper) = (0, f), a pair is sorted,
        # each in [0, 1].
        if isinstance(factor, numbers.Real) and not isinstance(factor, bool):
            factor = (0.0, abs(factor)) if -1 <= factor <= 1 else (factor, factor)
        elif isinstance(factor, (tuple, list)) and len(factor) == 2:
            factor = tuple(sorted(factor))
        self.factor = _factor_range(factor, "factor", self.where, 0.0, 1.0, symmetric=False)
        value_range = tuple(value_range) if isinstance(value_range, (tuple, list)) else ()
        if len(value_range) != 2 or not value_range[0] < value_range[1]:
            raise ValueError(f"{self.where}: value_range must be a (low, high) pair with "
                             f"low < high, got {value_range!r}")
        self.value_range = (_real(value_range[0], "value_range", self.where),
                            _real(value_range[1], "value_range", self.where))

    def _engine_fields(self):
        return {"contrast": list(self.factor), "value_range": list(self.value_range)}

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor),
                "value_range": list(self.value_range)}


# Class names in saved model configs -> classes.
LAYER_CLASSES = {cls.__name__: cls
                 for cls in (InputLayer, Conv2D, MaxPooling2D, AveragePooling2D,
                             GlobalAveragePooling2D, GlobalMaxPooling2D, Flatten, Reshape, Dense,
                             Dropout, Activation, ReLU, LeakyReLU, ELU, Softmax,
                             BatchNormalization, Rescaling, RandomFlip, RandomTranslation,
                             RandomRotation, RandomZoom, RandomCrop, RandomContrast)}
