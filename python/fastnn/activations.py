"""Keras-style activations: ``activation='tanh'`` on Conv2D/Dense, ``layers.Activation('gelu')``,
or the functions here (``activations.gelu``), which compute in NumPy as Keras's do.

Each name maps to one of the engine's element-wise kinds (csrc/ops.h ``Act``) with its
numbers; ``engine_fields(activation)`` is what a layer's engine dict carries. Keras's
defaults: leaky_relu's negative_slope 0.2, elu's alpha 1.0, gelu's approximate=False.
"""

import numpy as np

from fastnn import reference

__all__ = ["elu", "exponential", "gelu", "get", "hard_sigmoid", "hard_silu", "hard_swish",
           "leaky_relu", "linear", "mish", "relu", "relu6", "selu", "serialize", "sigmoid",
           "silu", "softmax", "softplus", "softsign", "swish", "tanh"]


def _elementwise(kind, x, alpha=0.0, beta=0.0, gamma=0.0):
    return reference.activation(np.asarray(x, dtype=np.float64), kind, alpha, beta, gamma)


def linear(x):
    return np.asarray(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0 and max_value is None and threshold == 0:
        return _elementwise("relu", x)
    return _elementwise("relu_clipped", x, negative_slope,
                        np.inf if max_value is None else max_value, threshold)


def relu6(x):
    return _elementwise("relu6", x)


def sigmoid(x):
    return _elementwise("sigmoid", x)


def tanh(x):
    return _elementwise("tanh", x)


def elu(x, alpha=1.0):
    return _elementwise("elu", x, alpha)


def selu(x):
    return _elementwise("selu", x)


def gelu(x, approximate=False):
    return _elementwise("gelu_tanh" if approximate else "gelu", x)


def silu(x):
    return _elementwise("swish", x)


swish = silu


def leaky_relu(x, negative_slope=0.2):
    return _elementwise("leaky_relu", x, negative_slope)


def softplus(x):
    return _elementwise("softplus", x)


def softsign(x):
    return _elementwise("softsign", x)


def hard_sigmoid(x):
    return _elementwise("hard_sigmoid", x)


def hard_silu(x):
    return _elementwise("hard_swish", x)


hard_swish = hard_silu


def exponential(x):
    return _elementwise("exponential", x)


def mish(x):
    return _elementwise("mish", x)


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# Keras name -> (engine kind, alpha, beta, gamma). 'softmax' is the engine's Softmax (over
# the last axis), not an element-wise kind.
_ENGINE = {
    "linear": ("linear", 0.0), "relu": ("relu", 0.0), "relu6": ("relu6", 0.0),
    "sigmoid": ("sigmoid", 0.0), "tanh": ("tanh", 0.0), "softmax": ("softmax", 0.0),
    "elu": ("elu", 1.0), "selu": ("selu", 0.0), "gelu": ("gelu", 0.0),
    "silu": ("swish", 0.0), "swish": ("swish", 0.0), "leaky_relu": ("leaky_relu", 0.2),
    "softplus": ("softplus", 0.0), "softsign": ("softsign", 0.0),
    "hard_sigmoid": ("hard_sigmoid", 0.0), "hard_silu": ("hard_swish", 0.0),
    "hard_swish": ("hard_swish", 0.0), "exponential": ("exponential", 0.0),
    "mish": ("mish", 0.0),
}
NAMES = tuple(_ENGINE)
_FUNCTIONS = {globals()[name]: name for name in NAMES}


def get(identifier, owner="activation"):
    """The Keras name of an activation given by name (None: 'linear') or as one of this
    module's functions; ValueError naming the supported ones otherwise."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str) and identifier in _ENGINE:
        return identifier
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]
    raise ValueError(f"{owner}: unknown activation {identifier!r}; fastnn knows "
                     f"{', '.join(map(repr, NAMES))} (by name, or as fastnn.activations.*), "
                     f"and None, meaning 'linear'")


def serialize(name):
    return name


def engine_fields(name, alpha=None, beta=0.0, gamma=0.0):
    """The engine dict's activation fields for Keras activation ``name`` (alpha: the
    kind's number, e.g. leaky_relu's slope, where it differs from Keras's default)."""
    kind, default_alpha = _ENGINE[name]
    return {"activation": kind, "activation_alpha": float(default_alpha if alpha is None else alpha),
            "activation_beta": float(beta), "activation_gamma": float(gamma)}
