"""Keras-style datasets: ``mnist.load_data()`` and ``fashion_mnist.load_data()``.

Each returns ``(x_train, y_train), (x_test, y_test)`` as uint8 NumPy arrays, read from
local IDX/.npz files or downloaded once with a SHA-256 check (see ``_loader``).
"""

from . import fashion_mnist, mnist
from ._loader import DatasetNotFoundError

__all__ = ["mnist", "fashion_mnist", "DatasetNotFoundError"]
