"""Keras-style optimizers: Adam and SGD (with momentum and Nesterov).

An optimizer here is a description: its hyperparameters go to the C++ engine at
``compile()``, which then holds the optimizer state (Adam's m and v, SGD's velocity) and
does the update inside each training step, with Keras 3's formulas (see
csrc/engine/CONTRACT.md). Once compiled, setting ``learning_rate`` writes through to the
engine, so ``model.optimizer.learning_rate = 1e-4`` takes effect at the next step, and
``iterations`` reads the engine's step count. An optimizer serves one compiled model at a
time; compiling again starts its state (moments, iterations) afresh.
"""

import math
import numbers

__all__ = ["Adam", "SGD", "Optimizer", "get"]


def _number(value, what, rule, check):
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and check(value)):
        raise ValueError(f"{what} must be a finite number {rule}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: a learning rate, an iteration count, and the engine they are bound to."""

    def __init__(self, learning_rate, name):
        self.name = name
        self._learning_rate = self._check_learning_rate(learning_rate)
        self._net = None

    def _check_learning_rate(self, value):
        return _number(value, f"{type(self).__name__}: learning_rate", ">= 0", lambda v: v >= 0)

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = self._check_learning_rate(value)
        if self._net is not None:
            self._net.learning_rate = self._learning_rate

    @property
    def iterations(self):
        """Update steps taken since compile()."""
        return self._net.iterations if self._net is not None else 0

    def bind(self, net):
        """From now on ``net`` (an engine, or None) holds this optimizer's state."""
        self._net = net

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def engine_spec(self):
        """The optimizer dict the engine takes (CONTRACT.md)."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Adam(Optimizer):
    """Adam (Kingma & Ba), Keras defaults: learning_rate=0.001, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7. ``amsgrad=True`` is not supported."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam"):
        super().__init__(learning_rate, name)
        self.beta_1 = _number(beta_1, "Adam: beta_1", "in [0, 1)", lambda v: 0 <= v < 1)
        self.beta_2 = _number(beta_2, "Adam: beta_2", "in [0, 1)", lambda v: 0 <= v < 1)
        self.epsilon = _number(epsilon, "Adam: epsilon", "> 0", lambda v: v > 0)
        if amsgrad:
            raise ValueError("Adam: amsgrad=True is not supported by fastnn's engine")

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}

    def engine_spec(self):
        return {"type": "adam", "learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon}


class SGD(Optimizer):
    """Stochastic gradient descent, Keras defaults: learning_rate=0.01, momentum=0.0,
    nesterov=False. With momentum: ``v = momentum * v - lr * g; w += v`` (Nesterov:
    ``w += momentum * v - lr * g``)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD"):
        super().__init__(learning_rate, name)
        self.momentum = _number(momentum, "SGD: momentum", "in [0, 1]", lambda v: 0 <= v <= 1)
        if not isinstance(nesterov, bool):
            raise TypeError(f"SGD: nesterov must be a bool, got {nesterov!r}")
        self.nesterov = nesterov

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def engine_spec(self):
        return {"type": "sgd", "learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov}


_BY_NAME = {"adam": Adam, "sgd": SGD}
OPTIMIZER_CLASSES = {"Adam": Adam, "SGD": SGD}


def get(identifier):
    """An optimizer from a name ('adam', 'sgd', any case) or an Optimizer (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; fastnn knows "
                             f"{', '.join(map(repr, _BY_NAME))} (or optimizers.Adam(...), "
                             f"optimizers.SGD(...))")
        return cls()
    raise TypeError(f"optimizer must be a name such as 'adam' or an optimizers.Adam/SGD "
                    f"instance, got {type(identifier).__name__}")
