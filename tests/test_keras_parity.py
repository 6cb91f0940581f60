"""fastnn against real Keras 3: the same model (built by one function from either
package's ``layers``), the same initial weights and batch give the same predictions (to
1e-4) and the same weights after one training step (to 2e-4).

Skipped where Keras is not installed. Keras needs a backend that trains: KERAS_BACKEND if
set, else the first of jax, torch and tensorflow that imports. SGD makes the step
comparable: Adam's first step divides each gradient by its own magnitude, so a gradient
that is 0 up to rounding may move a weight by ±learning_rate in either framework.

    pip install keras jax jaxlib && pytest tests/test_keras_parity.py
"""
import importlib.util
import os

import numpy as np
import pytest

import fastnn

if "KERAS_BACKEND" not in os.environ:
    for backend in ("jax", "torch", "tensorflow"):
        if importlib.util.find_spec(backend) is not None:
            os.environ["KERAS_BACKEND"] = backend
            break
keras = pytest.importorskip("keras", reason="Keras is not installed (pip install keras jax jaxlib)")
if not hasattr(keras, "Sequential") or keras.backend.backend() == "numpy":
    pytest.skip("this Keras cannot train (no jax, torch or tensorflow backend)",
                allow_module_level=True)

PREDICT_TOLERANCE = 1e-4
STEP_TOLERANCE = 2e-4


def mlp(L, activation):
    return [L.Input(shape=(12,)), L.Dense(16, activation=activation), L.Dense(8),
            L.Activation(activation), L.Dense(5, activation="softmax")]


def cnn_batchnorm(L):
    return [L.Input(shape=(12, 12, 3)), L.Conv2D(8, 3, padding="same", use_bias=False),
            L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2, padding="same"),
            L.Conv2D(6, 3), L.BatchNormalization(momentum=0.9, epsilon=1e-2),
            L.Activation("relu"), L.AveragePooling2D(2, strides=1, padding="same"),
            L.GlobalAveragePooling2D(), L.Dense(4, activation="softmax")]


def cnn_shapes(L):
    return [L.Input(shape=(9, 9, 2)), L.Rescaling(0.5, offset=-0.25),
            L.Conv2D(5, 3, strides=2, padding="same", activation="elu"),
            L.AveragePooling2D(2, padding="same"), L.Flatten(), L.Reshape((9, 5)),
            L.Dense(4, activation="swish"), L.Flatten(),
            L.Dense(6), L.LeakyReLU(negative_slope=0.1), L.Dense(3), L.Softmax()]


def cnn_global_max(L):
    return [L.Input(shape=(8, 8, 1)), L.Conv2D(4, 3, activation="tanh"),
            L.MaxPooling2D(3, strides=2, padding="same"), L.ELU(alpha=0.5),
            L.GlobalMaxPooling2D(keepdims=True), L.Flatten(), L.Dense(3, activation="softmax")]


def binary_head(L):
    return [L.Input(shape=(10,)), L.Dense(8, activation="gelu"), L.Dense(1, activation="sigmoid")]


def multi_label_logits(L):
    return [L.Input(shape=(10,)), L.Dense(8, activation="softplus"), L.Dense(3)]


def regression_head(L):
    return [L.Input(shape=(6,)), L.Dense(8, activation="selu"),
            L.Dense(4, activation="hard_sigmoid"), L.Dense(2)]


def relu_variants(L):
    return [L.Input(shape=(10,)), L.Dense(8), L.ReLU(max_value=0.5, negative_slope=0.1),
            L.Dense(8, activation="leaky_relu"), L.Dense(8, activation="relu6"),
            L.Dense(3, activation="softmax")]


def x_for(shape, rng, n=16):
    return rng.standard_normal((n,) + shape).astype(np.float32)


def sparse_labels(rng, n, classes):
    return rng.integers(0, classes, n)


CASES = {
    # name: (layers, loss (name or (class name, kwargs)), target maker(rng, n, outputs))
    "mlp tanh": (lambda L: mlp(L, "tanh"), "sparse_categorical_crossentropy", "sparse"),
    "mlp sigmoid": (lambda L: mlp(L, "sigmoid"), "sparse_categorical_crossentropy", "sparse"),
    "mlp gelu": (lambda L: mlp(L, "gelu"), "sparse_categorical_crossentropy", "sparse"),
    "mlp elu": (lambda L: mlp(L, "elu"), "sparse_categorical_crossentropy", "sparse"),
    "mlp selu": (lambda L: mlp(L, "selu"), "sparse_categorical_crossentropy", "sparse"),
    "mlp swish": (lambda L: mlp(L, "swish"), "sparse_categorical_crossentropy", "sparse"),
    "mlp softplus": (lambda L: mlp(L, "softplus"), "sparse_categorical_crossentropy", "sparse"),
    "mlp softsign": (lambda L: mlp(L, "softsign"), "sparse_categorical_crossentropy", "sparse"),
    "mlp hard_sigmoid": (lambda L: mlp(L, "hard_sigmoid"), "sparse_categorical_crossentropy",
                         "sparse"),
    "mlp mish": (lambda L: mlp(L, "mish"), "sparse_categorical_crossentropy", "sparse"),
    "relu variants": (relu_variants, "sparse_categorical_crossentropy", "sparse"),
    "cnn batchnorm": (cnn_batchnorm, "sparse_categorical_crossentropy", "sparse"),
    "cnn shapes": (cnn_shapes, ("CategoricalCrossentropy", {"label_smoothing": 0.1}), "one_hot"),
    "cnn global max": (cnn_global_max, "categorical_crossentropy", "one_hot"),
    "binary": (binary_head, "binary_crossentropy", "binary"),
    "binary smoothed": (binary_head, ("BinaryCrossentropy", {"label_smoothing": 0.2}), "binary"),
    "multi-label logits": (multi_label_logits, ("BinaryCrossentropy", {"from_logits": True}),
                           "binary"),
    "logits sparse": (multi_label_logits, ("SparseCategoricalCrossentropy", {"from_logits": True}),
                      "sparse"),
    "mse": (regression_head, "mse", "real"),
    "mae": (regression_head, "mae", "real"),
    "huber": (regression_head, ("Huber", {"delta": 0.5}), "real"),
}


def targets(kind, rng, n, outputs):
    if kind == "sparse":
        return rng.integers(0, outputs, n)
    if kind == "one_hot":
        return np.eye(outputs, dtype=np.float32)[rng.integers(0, outputs, n)]
    if kind == "binary":
        return (rng.random((n, outputs)) < 0.5).astype(np.float32)
    return rng.standard_normal((n, outputs)).astype(np.float32)


def build(package, case):
    make, loss, _ = CASES[case]
    model = package.Sequential(make(package.layers))
    if isinstance(loss, tuple):
        loss = getattr(package.losses, loss[0])(**loss[1])
    model.compile(optimizer=package.optimizers.SGD(learning_rate=0.1), loss=loss)
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_predict_and_one_step_match_keras(case):
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    ours = build(fastnn, case)
    theirs = build(keras, case)
    x = x_for(ours.input_shape[1:], rng)
    weights = [w + 0.1 * rng.standard_normal(w.shape).astype(np.float32)
               if "moving" not in label else w
               for w, label in zip(ours.get_weights(), ours._weight_labels())]
    for w, label in zip(weights, ours._weight_labels()):  # a moving variance stays positive
        if "moving_variance" in label:
            w[...] = rng.uniform(0.5, 1.5, w.shape)
    ours.set_weights(weights)
    theirs.set_weights(weights)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               atol=PREDICT_TOLERANCE, rtol=0, err_msg="predict")
    y = targets(CASES[case][2], rng, len(x), ours.output_shape[-1])
    ours.train_on_batch(x, y)
    theirs.train_on_batch(x, y)
    for label, a, b in zip(ours._weight_labels(), ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, atol=STEP_TOLERANCE, rtol=0,
                                   err_msg=f"{label} after one step")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               atol=PREDICT_TOLERANCE, rtol=0, err_msg="predict after the step")
