"""Keras-style initializers: by name (``kernel_initializer='he_uniform'``) or as objects
(``initializers.RandomNormal(stddev=0.01)``), with Keras 3's definitions. Values come from
``fastnn.utils``' seeded generator, so a fixed seed gives the same weights every run (not
Keras's numbers: its generators differ).

Fans as Keras: a conv kernel (kh, kw, cin, cout) has fan_in kh·kw·cin, fan_out kh·kw·cout.
The truncated normals redraw values beyond two standard deviations, and the variance
scaling ones divide by 0.8796..., the standard deviation of a normal truncated there.
"""

import math
import numbers

import numpy as np

from fastnn import utils

__all__ = ["Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Initializer",
           "LecunNormal", "LecunUniform", "Ones", "RandomNormal", "RandomUniform",
           "TruncatedNormal", "Zeros", "get"]

_TRUNCATED_STDDEV = 0.87962566103423978


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def _truncated_normal(shape, stddev, mean=0.0):
    rng = utils.generator()
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return values * stddev + mean


def _real(value, what, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {what} must be a finite number, got {value!r}")
    return float(value)


class Initializer:
    """Base class: ``init(shape)`` gives a float32 array of that shape."""

    def __call__(self, shape, dtype=None):
        return np.asarray(self._draw(tuple(shape)), dtype=np.float32)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


class Zeros(Initializer):
    def _draw(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def _draw(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = _real(value, "value", "Constant")

    def _draw(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev = _real(mean, "mean", "RandomNormal"), _real(stddev, "stddev", "RandomNormal")
        self.seed = seed

    def _draw(self, shape):
        return utils.generator().standard_normal(shape) * self.stddev + self.mean

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    def _draw(self, shape):
        return _truncated_normal(shape, self.stddev, self.mean)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = _real(minval, "minval", "RandomUniform")
        self.maxval = _real(maxval, "maxval", "RandomUniform")
        self.seed = seed

    def _draw(self, shape):
        return utils.generator().uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class _VarianceScaling(Initializer):
    """scale / fan: a uniform in ±sqrt(3·scale/fan) or a truncated normal of that variance."""

    scale, mode, uniform = 1.0, "fan_in", True

    def __init__(self, seed=None):
        self.seed = seed

    def _draw(self, shape):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        fan = max(1.0, fan)
        if self.uniform:
            limit = math.sqrt(3.0 * self.scale / fan)
            return utils.generator().uniform(-limit, limit, shape)
        return _truncated_normal(shape, math.sqrt(self.scale / fan) / _TRUNCATED_STDDEV)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_VarianceScaling):
    mode = "fan_avg"


class GlorotNormal(_VarianceScaling):
    mode, uniform = "fan_avg", False


class HeUniform(_VarianceScaling):
    scale = 2.0


class HeNormal(_VarianceScaling):
    scale, uniform = 2.0, False


class LecunUniform(_VarianceScaling):
    pass


class LecunNormal(_VarianceScaling):
    uniform = False


_BY_NAME = {"glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
            "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform,
            "lecun_normal": LecunNormal, "zeros": Zeros, "ones": Ones,
            "random_normal": RandomNormal, "random_uniform": RandomUniform,
            "truncated_normal": TruncatedNormal, "constant": Constant}
INITIALIZER_CLASSES = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier, owner="initializer"):
    """An Initializer from a Keras name ('he_uniform'), a class name ('HeUniform'), a
    config dict {'class_name': ..., 'config': ...} or an Initializer (returned as is)."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or INITIALIZER_CLASSES.get(identifier)
        if cls is not None:
            return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in INITIALIZER_CLASSES:
        return INITIALIZER_CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"{owner}: unknown initializer {identifier!r}; fastnn knows "
                     f"{', '.join(map(repr, _BY_NAME))} (or initializers.* objects)")


def serialize(initializer):
    """A model file's record of an initializer: {'class_name': ..., 'config': ...}."""
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
