"""Keras-style cross-entropy losses: categorical (one-hot labels) and sparse (int labels).

In training the engine always computes softmax cross-entropy against integer labels, fused
with the last layer's softmax (from_logits=False) or on its raw outputs (from_logits=True).
So a loss here does two things: it checks that the model's last activation fits
``from_logits``, and it turns the user's labels into class indices (``class_indices``),
refusing anything else (soft labels, out-of-range classes) with a ValueError rather than
training on a silent guess. Called as ``loss(y_true, y_pred)`` it computes the loss in
NumPy, like Keras's loss objects.
"""

import numpy as np

__all__ = ["CategoricalCrossentropy", "Loss", "SparseCategoricalCrossentropy",
           "categorical_crossentropy", "get", "sparse_categorical_crossentropy"]

_EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] before the log


def _log_probabilities(y_pred, from_logits):
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if from_logits:
        z = y_pred - y_pred.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    y_pred = y_pred / y_pred.sum(axis=-1, keepdims=True)
    return np.log(np.clip(y_pred, _EPSILON, 1 - _EPSILON))


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy ``-sum(y_true * log(p))`` for one-hot (or soft) ``y_true``."""
    return -(np.asarray(y_true, np.float64) * _log_probabilities(y_pred, from_logits)).sum(axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy ``-log(p[label])`` for integer ``y_true``."""
    log_p = _log_probabilities(y_pred, from_logits)
    labels = np.asarray(y_true).reshape(log_p.shape[:-1]).astype(np.int64)
    return -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]


def _numeric(y, where):
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
            or y.dtype == np.bool_):
        raise TypeError(f"{where}: labels must be numeric, got dtype {y.dtype}")
    return y


class Loss:
    """Base class: a cross-entropy loss with ``from_logits`` and a label format."""

    sparse = False

    def __init__(self, from_logits=False, name=None):
        if not isinstance(from_logits, bool):
            raise TypeError(f"{type(self).__name__}: from_logits must be a bool, "
                            f"got {from_logits!r}")
        self.from_logits = from_logits
        self.name = name

    def __call__(self, y_true, y_pred):
        """Mean loss over the batch, computed in NumPy."""
        return float(np.mean(self.function(y_true, y_pred, from_logits=self.from_logits)))

    def check_activation(self, layer):
        """ValueError unless the model's last layer produces what this loss expects."""
        expected = "linear" if self.from_logits else "softmax"
        if getattr(layer, "activation", None) != expected:
            raise ValueError(
                f"{self.name} with from_logits={self.from_logits} needs the last layer to have "
                f"activation='{expected}', but {layer.where} has "
                f"activation={getattr(layer, 'activation', None)!r}"
                + ("" if self.from_logits else "; for raw outputs use from_logits=True"))

    def get_config(self):
        return {"from_logits": self.from_logits, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class CategoricalCrossentropy(Loss):
    """Cross-entropy for one-hot labels of shape (N, classes)."""

    function = staticmethod(categorical_crossentropy)

    def __init__(self, from_logits=False, label_smoothing=0.0, name="categorical_crossentropy"):
        super().__init__(from_logits, name)
        if label_smoothing != 0:
            raise ValueError("CategoricalCrossentropy: label_smoothing is not supported by "
                             f"fastnn's engine (got {label_smoothing!r}); only 0 is")

    def class_indices(self, y, classes, where):
        """int32 class indices of one-hot rows ``y`` (N, classes); ValueError otherwise."""
        y = _numeric(y, where)
        if y.ndim != 2 or y.shape[1] != classes:
            hint = (" (integer labels: use loss='sparse_categorical_crossentropy' or "
                    "utils.to_categorical(y))" if y.ndim == 1 else "")
            raise ValueError(f"{where}: categorical_crossentropy needs one-hot labels of shape "
                             f"(N, {classes}) for a model with {classes} outputs, got shape "
                             f"{y.shape}{hint}")
        not_one_hot = ~(((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1))
        if not_one_hot.any():
            row = int(np.argmax(not_one_hot))
            raise ValueError(f"{where}: row {row} of the labels is not one-hot "
                             f"({y[row].tolist()}); categorical_crossentropy in fastnn takes "
                             f"one-hot labels only")
        return np.ascontiguousarray(y.argmax(axis=1), dtype=np.int32)


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy for integer class labels of shape (N,) or (N, 1)."""

    sparse = True
    function = staticmethod(sparse_categorical_crossentropy)

    def __init__(self, from_logits=False, name="sparse_categorical_crossentropy"):
        super().__init__(from_logits, name)

    def class_indices(self, y, classes, where):
        """int32 copy of integer labels ``y`` in [0, classes); ValueError otherwise."""
        y = _numeric(y, where)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            hint = (" (one-hot labels: use loss='categorical_crossentropy')"
                    if y.ndim == 2 and y.shape[1] == classes else "")
            raise ValueError(f"{where}: sparse_categorical_crossentropy needs integer labels of "
                             f"shape (N,), got shape {y.shape}{hint}")
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ValueError(f"{where}: labels must be whole numbers (class indices)")
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"{where}: labels must be class indices in [0, {classes}) for a model "
                             f"with {classes} outputs, got range [{y.min()}, {y.max()}]")
        return np.ascontiguousarray(y, dtype=np.int32)


_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_BY_FUNCTION = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
}
LOSS_CLASSES = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier):
    """A Loss from a name, a loss function of this module, or a Loss (returned as is)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or LOSS_CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; fastnn knows "
                             f"{', '.join(map(repr, _BY_NAME))}")
        return cls()
    if callable(identifier) and identifier in _BY_FUNCTION:
        return _BY_FUNCTION[identifier]()
    if identifier is None:
        raise ValueError("compile() needs a loss, e.g. loss='categorical_crossentropy'")
    raise TypeError(f"loss must be a name such as 'categorical_crossentropy' or a losses.* "
                    f"object, got {identifier!r}")
