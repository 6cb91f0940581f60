"""Keras-style utilities: ``to_categorical``, ``normalize``, ``set_random_seed``, ``clear_session``.

fastnn draws all its randomness (weight initialisation, shuffling, the dropout seed handed
to the engine) from one NumPy generator kept here. It starts unseeded, so runs differ;
``set_random_seed(s)`` makes them repeat bit for bit (at a fixed thread count).
"""

import numbers
import random

import numpy as np

from fastnn import _naming

__all__ = ["clear_session", "normalize", "set_random_seed", "to_categorical"]

_generator = np.random.default_rng()


def set_random_seed(seed):
    """Seed fastnn's generator, and Python's and NumPy's global ones, as Keras does.

    Layers built, batches shuffled and models compiled after this call (compiling draws
    the seed of the engine's dropout masks, ``net.seed``) are the same in every run with
    the same seed and thread count.
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"set_random_seed: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"set_random_seed: seed must be >= 0, got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # the legacy global generator takes 32-bit seeds only
    _generator = np.random.default_rng(seed)


def generator():
    """fastnn's random generator (the one ``set_random_seed`` resets)."""
    return _generator


def clear_session():
    """Reset layer-name numbering, so the next model's layers are conv2d, dense, ... again."""
    _naming.clear()


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode class indices: ``y`` (N,) ints -> (N, num_classes) of ``dtype``.

    ``num_classes`` defaults to ``max(y) + 1``. Any shape works, as in Keras: a trailing
    axis of size 1 is dropped and the class axis is appended.
    """
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise TypeError(f"to_categorical: y must hold class indices (ints), got dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise ValueError("to_categorical: y must hold whole numbers (class indices)")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class indices must be >= 0, got {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
          or num_classes < 1):
        raise ValueError(f"to_categorical: num_classes must be a positive int, got {num_classes!r}")
    if y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: class index {y.max()} is out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def normalize(x, axis=-1, order=2):
    """Scale ``x`` to unit ``order``-norm along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x)
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)
