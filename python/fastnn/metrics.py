"""Keras-style accuracy metrics.

fastnn's engine counts, in the same pass as the loss, the samples whose highest output is
the true class (categorical and sparse categorical accuracy) or the outputs on the right
side of 0.5 (binary accuracy); every accuracy here is that count over those seen.
``metrics=['accuracy']`` (or 'acc') picks one as Keras 3 does: binary when the model has
one output, else categorical (sparse for integer labels). It goes into the logs under the
name given. Standalone, the objects work as in Keras: ``update_state(y_true, y_pred)``,
``result()``, ``reset_state()``.
"""

import numpy as np

__all__ = ["BinaryAccuracy", "CategoricalAccuracy", "Metric", "SparseCategoricalAccuracy", "get"]


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


class BinaryAccuracy(Metric):
    """The fraction of outputs whose side of ``threshold`` matches the label's."""

    engine_accuracy = "binary"

    def __init__(self, name="binary_accuracy", threshold=0.5):
        if threshold != 0.5:
            raise NotImplementedError(f"BinaryAccuracy: threshold={threshold!r} is not "
                                      f"supported; the engine counts at 0.5")
        super().__init__(name)

    def update_state(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true).reshape(y_pred.shape)
        self._correct += int(np.sum((y_pred > 0.5) == (y_true > 0.5)))
        self._count += y_pred.size


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


# name -> what the engine counts ('auto': as Keras's 'accuracy', by the model's outputs)
_NAMES = {"accuracy": "auto", "acc": "auto", "binary_accuracy": "binary",
          "categorical_accuracy": "argmax", "sparse_categorical_accuracy": "argmax"}
CategoricalAccuracy.engine_accuracy = SparseCategoricalAccuracy.engine_accuracy = "argmax"


def get(identifier):
    """(log name, what the engine counts: 'auto', 'binary' or 'argmax') of a metric given
    by name ('accuracy', 'acc', ...) or as a Metric."""
    if isinstance(identifier, Metric):
        return identifier.name, identifier.engine_accuracy
    if isinstance(identifier, str):
        if identifier not in _NAMES:
            raise ValueError(f"unknown metric {identifier!r}; fastnn knows "
                             f"{', '.join(map(repr, _NAMES))}")
        return identifier, _NAMES[identifier]
    raise TypeError(f"a metric must be a name such as 'accuracy' or a metrics.* object, "
                    f"got {identifier!r}")


def engine_accuracy(kinds, outputs):
    """The one count the engine keeps for metrics of these kinds, on a model with
    ``outputs`` values per sample: 'none', 'binary' or 'argmax'."""
    resolved = {("binary" if outputs == 1 else "argmax") if kind == "auto" else kind
                for kind in kinds}
    if len(resolved) > 1:
        raise NotImplementedError(f"metrics: binary and categorical accuracy together are not "
                                  f"supported; the engine counts one of them per model")
    return resolved.pop() if resolved else "none"
