"""Keras-style accuracy metrics.

fastnn's engine counts, in the same pass as the loss, how many samples have their
highest output at the true class; every accuracy here is that count over the samples
seen. ``metrics=['accuracy']`` (or 'acc', or the objects below) adds it to the logs under
the name given. Standalone, the objects work as in Keras: ``update_state(y_true, y_pred)``,
``result()``, ``reset_state()``.
"""

import numpy as np

__all__ = ["CategoricalAccuracy", "Metric", "SparseCategoricalAccuracy", "get"]


class Metric:
    """Base class: the fraction of samples whose argmax prediction is the true class."""

    def __init__(self, name):
        self.name = name
        self.reset_state()

    def reset_state(self):
        self._correct = 0
        self._count = 0

    def update_state(self, y_true, y_pred):
        predicted = np.asarray(y_pred).argmax(axis=-1)
        self._correct += int(np.sum(predicted == self._labels(np.asarray(y_true))))
        self._count += predicted.size

    def result(self):
        return self._correct / self._count if self._count else 0.0

    def get_config(self):
        return {"name": self.name}


class CategoricalAccuracy(Metric):
    """Accuracy for one-hot labels."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(name)

    @staticmethod
    def _labels(y_true):
        return y_true.argmax(axis=-1)


class SparseCategoricalAccuracy(Metric):
    """Accuracy for integer labels."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(name)

    @staticmethod
    def _labels(y_true):
        return y_true.reshape(y_true.shape[:1]) if y_true.ndim == 2 else y_true


_NAMES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def get(identifier):
    """The log name of a metric given by name ('accuracy', 'acc', ...) or as a Metric."""
    if isinstance(identifier, Metric):
        return identifier.name
    if isinstance(identifier, str):
        if identifier not in _NAMES:
            raise ValueError(f"unknown metric {identifier!r}; fastnn knows "
                             f"{', '.join(map(repr, _NAMES))}")
        return identifier
    raise TypeError(f"a metric must be a name such as 'accuracy' or a metrics.* object, "
                    f"got {identifier!r}")
