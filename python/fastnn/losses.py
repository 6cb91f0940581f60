"""Keras-style losses: by name (``loss='mse'``), as functions of this module, or as objects
(``losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)``).

In training the engine computes the loss and its gradient itself (csrc/engine/walk.h's
loss_step): cross-entropies fused with the head's softmax or sigmoid, or on raw outputs
when ``from_logits=True``; the regression losses on the outputs as they are. So a loss here
does three things: it checks that the model's last activation fits ``from_logits``
(``check_activation``), turns the user's labels into the engine's float targets
(``targets``: class indices for the sparse loss, label smoothing applied once for the
others), refusing what it cannot train on with a ValueError, and describes itself to the
engine (``engine_spec``). Called as ``loss(y_true, y_pred)`` it computes the loss in NumPy,
as Keras's loss objects do (probabilities clipped to [1e-7, 1 - 1e-7]).
"""

import numbers

import numpy as np

__all__ = ["BinaryCrossentropy", "CategoricalCrossentropy", "Huber", "Loss", "MAE", "MSE",
           "MeanAbsoluteError", "MeanSquaredError", "SparseCategoricalCrossentropy",
           "binary_crossentropy", "categorical_crossentropy", "get", "huber", "mae",
           "mean_absolute_error", "mean_squared_error", "mse", "sparse_categorical_crossentropy"]

_EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] before the log


def _log_probabilities(y_pred, from_logits):
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if from_logits:
        z = y_pred - y_pred.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    y_pred = y_pred / y_pred.sum(axis=-1, keepdims=True)
    return np.log(np.clip(y_pred, _EPSILON, 1 - _EPSILON))


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample cross-entropy ``-sum(y_true * log(p))`` for one-hot (or soft) ``y_true``."""
    y_true = np.asarray(y_true, np.float64)
    if label_smoothing:
        y_true = y_true * (1 - label_smoothing) + label_smoothing / y_true.shape[-1]
    return -(y_true * _log_probabilities(y_pred, from_logits)).sum(axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy ``-log(p[label])`` for integer ``y_true``."""
    log_p = _log_probabilities(y_pred, from_logits)
    labels = np.asarray(y_true).reshape(log_p.shape[:-1]).astype(np.int64)
    return -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample mean over the last axis of the binary cross-entropy."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    if label_smoothing:
        y_true = y_true * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        terms = np.maximum(y_pred, 0) - y_pred * y_true + np.log1p(np.exp(-np.abs(y_pred)))
    else:
        p = np.clip(y_pred, _EPSILON, 1 - _EPSILON)
        terms = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))
    return terms.mean(axis=-1)


def mean_squared_error(y_true, y_pred):
    return ((np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)) ** 2).mean(axis=-1)


def mean_absolute_error(y_true, y_pred):
    return np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)).mean(axis=-1)


def huber(y_true, y_pred, delta=1.0):
    error = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    absolute = np.abs(error)
    return np.where(absolute <= delta, 0.5 * error ** 2,
                    delta * absolute - 0.5 * delta ** 2).mean(axis=-1)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


def _numeric(y, where):
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
            or y.dtype == np.bool_):
        raise TypeError(f"{where}: labels must be numeric, got dtype {y.dtype}")
    return y


def _bool(value, what, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {what} must be a bool, got {value!r}")
    return bool(value)


def _smoothing(value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{owner}: label_smoothing must be a number in [0, 1], got {value!r}")
    return float(value)


def _reduction(value, owner):
    if value not in ("sum_over_batch_size", "auto", None):
        raise NotImplementedError(f"{owner}: reduction={value!r} is not supported; fastnn "
                                  f"averages over the batch ('sum_over_batch_size')")


def _finite_targets(y, shape, where, loss):
    """y as float32 (N, prod(shape)) for outputs of per-sample ``shape``; (N,) is taken as
    (N, 1) for a single output, as Keras does."""
    y = _numeric(y, where).astype(np.float64)
    n = len(y) if y.ndim else 0
    if y.ndim == 1 and shape == (1,):
        y = y[:, None]
    if y.shape[1:] != tuple(shape):
        raise ValueError(f"{where}: {loss} needs targets of shape (N, {', '.join(map(str, shape))}) "
                         f"for a model with outputs of shape {tuple(shape)}, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: the targets contain NaN or Inf")
    return np.ascontiguousarray(y.reshape(n, -1), dtype=np.float32)


class Loss:
    """Base class: a loss the engine trains on."""

    engine_type = None
    from_logits = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        _reduction(reduction, type(self).__name__)
        self.name = name
        self.reduction = "sum_over_batch_size"

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Mean loss over the batch, computed in NumPy."""
        if sample_weight is not None:
            raise NotImplementedError(f"{self.name}: sample_weight is not supported yet")
        return float(np.mean(self.call(y_true, y_pred)))

    def check_activation(self, layer):
        """ValueError unless the model's last layer produces what this loss expects."""

    def engine_spec(self, accuracy):
        return {"type": self.engine_type, "from_logits": self.from_logits, "accuracy": accuracy}

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _ProbabilisticLoss(Loss):
    """A cross-entropy: from_logits, and the head activation it fuses with otherwise."""

    fused_activation = None

    def __init__(self, from_logits=False, name=None, **kwargs):
        super().__init__(name, **kwargs)
        self.from_logits = _bool(from_logits, "from_logits", type(self).__name__)

    def check_activation(self, layer):
        activation = getattr(layer, "activation", None)
        if not self.from_logits and activation != self.fused_activation:
            raise ValueError(
                f"{self.name} with from_logits=False needs the last layer to output "
                f"probabilities through a {self.fused_activation}, but {layer.where} has "
                f"activation={activation!r}; for raw outputs (logits) use from_logits=True")

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class _SmoothedLoss(_ProbabilisticLoss):
    """A cross-entropy with Keras's label_smoothing, over the last axis."""

    def __init__(self, from_logits, label_smoothing, axis, name, **kwargs):
        super().__init__(from_logits, name, **kwargs)
        self.label_smoothing = _smoothing(label_smoothing, type(self).__name__)
        if axis != -1:
            raise NotImplementedError(f"{type(self).__name__}: axis={axis!r} is not "
                                      f"supported; only the last axis (-1) is")

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(_SmoothedLoss):
    """Cross-entropy for one-hot (or soft) labels of shape (N, classes)."""

    engine_type = "categorical_crossentropy"
    fused_activation = "softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 name="categorical_crossentropy", **kwargs):
        super().__init__(from_logits, label_smoothing, axis, name, **kwargs)

    def call(self, y_true, y_pred):
        return categorical_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def targets(self, y, shape, where):
        """float32 (N, classes) targets, smoothed; ValueError for other shapes."""
        y = _numeric(y, where)
        classes = shape[-1]
        if y.ndim != 2 or y.shape[1] != classes:
            hint = (" (integer labels: use loss='sparse_categorical_crossentropy' or "
                    "utils.to_categorical(y))" if y.ndim == 1 else "")
            raise ValueError(f"{where}: categorical_crossentropy needs one-hot labels of shape "
                             f"(N, {classes}) for a model with {classes} outputs, got shape "
                             f"{y.shape}{hint}")
        t = _finite_targets(y, (classes,), where, self.name).astype(np.float64)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / classes
        return t.astype(np.float32)


class SparseCategoricalCrossentropy(_ProbabilisticLoss):
    """Cross-entropy for integer class labels of shape (N,) or (N, 1)."""

    engine_type = "sparse_categorical_crossentropy"
    fused_activation = "softmax"
    sparse = True

    def __init__(self, from_logits=False, ignore_class=None,
                 name="sparse_categorical_crossentropy", **kwargs):
        super().__init__(from_logits, name, **kwargs)
        if ignore_class is not None:
            raise NotImplementedError(f"{type(self).__name__}: ignore_class is not supported; "
                                      f"only None is")

    def call(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits)

    def targets(self, y, shape, where):
        """float32 (N, 1) class indices in [0, classes); ValueError otherwise."""
        y = _numeric(y, where)
        classes = shape[-1]
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
        return np.ascontiguousarray(y.reshape(-1, 1), dtype=np.float32)


class BinaryCrossentropy(_SmoothedLoss):
    """Binary (or multi-label) cross-entropy: one probability per output, targets in [0, 1]."""

    engine_type = "binary_crossentropy"
    fused_activation = "sigmoid"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 name="binary_crossentropy", **kwargs):
        super().__init__(from_logits, label_smoothing, axis, name, **kwargs)

    def call(self, y_true, y_pred):
        return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def targets(self, y, shape, where):
        t = _finite_targets(y, shape, where, self.name).astype(np.float64)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return t.astype(np.float32)


class _RegressionLoss(Loss):
    def targets(self, y, shape, where):
        return _finite_targets(y, shape, where, self.name)


class MeanSquaredError(_RegressionLoss):
    engine_type = "mean_squared_error"

    def __init__(self, name="mean_squared_error", **kwargs):
        super().__init__(name, **kwargs)

    def call(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)


class MeanAbsoluteError(_RegressionLoss):
    engine_type = "mean_absolute_error"

    def __init__(self, name="mean_absolute_error", **kwargs):
        super().__init__(name, **kwargs)

    def call(self, y_true, y_pred):
        return mean_absolute_error(y_true, y_pred)


class Huber(_RegressionLoss):
    """0.5 e² where |e| <= delta, else delta (|e| - delta / 2); e = y_pred - y_true."""

    engine_type = "huber"

    def __init__(self, delta=1.0, name="huber_loss", **kwargs):
        super().__init__(name, **kwargs)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"Huber: delta must be a number > 0, got {delta!r}")
        self.delta = float(delta)

    def call(self, y_true, y_pred):
        return huber(y_true, y_pred, self.delta)

    def engine_spec(self, accuracy):
        return {**super().engine_spec(accuracy), "delta": self.delta}

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
}
_BY_FUNCTION = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    huber: Huber,
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
