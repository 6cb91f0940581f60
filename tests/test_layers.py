"""issue 12's Keras layers, activations, losses and initializers through the Keras-style
API: shapes, weights in Keras's order, save and load, training on each head, and the
errors for what is not supported (each names the argument and what is)."""
import numpy as np
import pytest

import fastnn
from fastnn import activations, initializers, layers, losses, metrics, models, utils


def fit_once(model, x, y, loss, **compile_args):
    model.compile(optimizer="adam", loss=loss, **compile_args)
    return model.fit(x, y, epochs=1, batch_size=8, verbose=0)


def rng():
    return np.random.default_rng(0)


IMAGES = rng().random((24, 10, 10, 3), dtype=np.float32)
LABELS = rng().integers(0, 4, 24)


def every_layer_model():
    return models.Sequential([
        layers.Input((10, 10, 3)), layers.Rescaling(2.0, offset=-1.0),
        layers.Conv2D(6, 3, padding="same", use_bias=False,
                      kernel_initializer=initializers.HeUniform()),
        layers.BatchNormalization(momentum=0.9), layers.ReLU(max_value=6.0),
        layers.MaxPooling2D(2, padding="same"), layers.Conv2D(5, 3, activation="gelu"),
        layers.AveragePooling2D(2, strides=1, padding="same"), layers.ELU(alpha=0.5),
        layers.LeakyReLU(negative_slope=0.2), layers.Activation("tanh"),
        layers.GlobalMaxPooling2D(keepdims=True), layers.Reshape((5,)),
        layers.Dense(8, activation="swish", kernel_initializer="lecun_normal"),
        layers.Dropout(0.25), layers.Dense(4), layers.Softmax()])


def test_every_layer_trains_saves_and_loads(tmp_path):
    utils.set_random_seed(1)
    model = every_layer_model()
    history = fit_once(model, IMAGES, LABELS, "sparse_categorical_crossentropy",
                       metrics=["accuracy"])
    assert np.isfinite(history.history["loss"]).all()
    labels = [label for layer in model.layers for label in layer.weight_labels()]
    assert labels[1:5] == [f"{model.layers[2].name} {w}" for w in
                           ("gamma", "beta", "moving_mean", "moving_variance")]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(IMAGES, verbose=0),
                                  model.predict(IMAGES, verbose=0))
    assert [type(a).__name__ for a in loaded.layers] == [type(a).__name__ for a in model.layers]
    assert loaded.layers[3].get_config() == model.layers[3].get_config()


def test_batchnorm_counts_and_moves_only_its_trainable_weights():
    model = models.Sequential([layers.Input((6,)), layers.Dense(4, use_bias=False),
                               layers.BatchNormalization(), layers.Dense(2, activation="softmax")])
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 8" in lines and "Trainable params: 42" in lines
    gamma, beta, mean, var = model.layers[1].get_weights()
    assert (gamma == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()
    x = rng().standard_normal((32, 6)).astype(np.float32) * 3 + 1
    model.compile(optimizer=fastnn.optimizers.SGD(learning_rate=0.0), loss="categorical_crossentropy")
    model.train_on_batch(x, np.eye(2)[np.arange(32) % 2])
    _, _, mean, var = model.layers[1].get_weights()
    h = x @ model.layers[0].get_weights()[0]
    np.testing.assert_allclose(mean, 0.01 * h.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, 0.99 + 0.01 * h.var(axis=0), rtol=1e-4)


@pytest.mark.parametrize("loss, head, y", [
    ("binary_crossentropy", layers.Dense(1, activation="sigmoid"),
     (np.arange(24) % 2).astype(np.float32)),
    (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), layers.Dense(3),
     (rng().random((24, 3)) < 0.5).astype(np.float32)),
    ("mse", layers.Dense(2), rng().standard_normal((24, 2))),
    ("mae", layers.Dense(1), rng().standard_normal(24)),
    (losses.Huber(delta=0.3), layers.Dense(2, activation="tanh"), rng().standard_normal((24, 2))),
    (losses.CategoricalCrossentropy(label_smoothing=0.2), layers.Dense(4, activation="softmax"),
     np.full((24, 4), 0.25)),
])
def test_every_head_trains(loss, head, y):
    model = models.Sequential([layers.Input((10, 10, 3)), layers.Flatten(),
                               layers.Dense(8, activation="relu"), head])
    history = fit_once(model, IMAGES, y, loss, metrics=["accuracy"])
    assert np.isfinite(history.history["loss"]).all()
    assert 0 <= history.history["accuracy"][0] <= 1
    assert model.predict(IMAGES[:3], verbose=0).shape == (3,) + head.output_shape[1:]


def test_binary_accuracy_is_what_keras_reports():
    model = models.Sequential([layers.Input((2,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    model.set_weights([np.array([[1.0], [0.0]], np.float32), np.zeros(1, np.float32)])
    x = np.array([[1, 0], [-1, 0], [2, 0], [-3, 0]], np.float32)
    y = np.array([1, 1, 0, 0], np.float32)  # right on samples 0 and 3
    _, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy == 0.5
    probabilities = model.predict(x, verbose=0)
    assert metrics.BinaryAccuracy().name == "binary_accuracy"
    np.testing.assert_allclose(probabilities[:, 0], 1 / (1 + np.exp(-x[:, 0])), rtol=1e-6)


def test_dense_applies_to_the_last_axis():
    model = models.Sequential([layers.Input((5, 3)), layers.Dense(4)])
    assert model.output_shape == (None, 5, 4)
    x = rng().standard_normal((2, 5, 3)).astype(np.float32)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ kernel + bias, rtol=1e-5,
                               atol=1e-6)


def test_activations_by_name_function_and_layer_agree():
    x = np.linspace(-4, 4, 33, dtype=np.float32).reshape(1, 33)
    for name in activations.NAMES:
        if name == "softmax":
            continue
        by_name = models.Sequential([layers.Input((33,)), layers.Activation(name)])
        by_function = models.Sequential([layers.Input((33,)),
                                         layers.Activation(getattr(activations, name))])
        expected = getattr(activations, name)(x)
        np.testing.assert_allclose(by_name.predict(x, verbose=0), expected, rtol=2e-6,
                                   atol=2e-6, err_msg=name)
        np.testing.assert_array_equal(by_function.predict(x, verbose=0),
                                      by_name.predict(x, verbose=0))


def test_initializers_by_keras_name():
    utils.set_random_seed(0)
    for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                 "lecun_normal", "zeros", "ones", "random_normal", "random_uniform",
                 "truncated_normal", "constant"):
        kernel = initializers.get(name)((300, 200))
        assert kernel.shape == (300, 200) and kernel.dtype == np.float32
    he = initializers.get("he_uniform")((1000, 10))
    assert abs(he.std() - np.sqrt(2 / 1000)) < 0.01 * np.sqrt(2 / 1000) * 10
    assert np.abs(initializers.TruncatedNormal(stddev=0.1)((10000,))).max() <= 0.2
    assert (initializers.Constant(0.5)((3,)) == 0.5).all()
    with pytest.raises(ValueError, match="orthogonal.*glorot_uniform"):
        layers.Dense(3, kernel_initializer="orthogonal")


@pytest.mark.parametrize("make, error, words", [
    (lambda: layers.BatchNormalization(axis=1).build((4, 4, 3)), NotImplementedError,
     ["axis=1", "last axis"]),
    (lambda: layers.BatchNormalization(epsilon=0), ValueError, ["epsilon", "> 0"]),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), ValueError,
     ["channels_first", "channels_last"]),
    (lambda: layers.Conv2D(4, 3, dilation_rate=2), NotImplementedError, ["dilation_rate"]),
    (lambda: layers.Softmax(axis=1), NotImplementedError, ["axis=1", "axis=-1"]),
    (lambda: layers.Activation("swishy"), ValueError, ["swishy", "'gelu'"]),
    (lambda: layers.Reshape((2, -1, -1)), ValueError, ["target_shape", "-1"]),
    (lambda: layers.Rescaling([1.0, 2.0]), ValueError, ["scale", "per-channel"]),
    (lambda: layers.GlobalAveragePooling2D(keepdims="yes"), TypeError, ["keepdims"]),
    (lambda: layers.Dropout(0.5, noise_shape=(1, 2)), NotImplementedError, ["noise_shape"]),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=2), ValueError,
     ["label_smoothing", "[0, 1]"]),
    (lambda: losses.Huber(delta=0), ValueError, ["delta", "> 0"]),
    (lambda: losses.get("hinge"), ValueError, ["hinge", "'mse'"]),
    (lambda: metrics.get("auc"), ValueError, ["auc", "'binary_accuracy'"]),
])
def test_unsupported_arguments_say_what_is(make, error, words):
    with pytest.raises(error) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_heads_and_losses_that_cannot_train_are_refused_at_compile():
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="relu")])
    with pytest.raises(ValueError, match="from_logits=True"):
        model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sigmoid"):
        model.compile(optimizer="adam", loss="binary_crossentropy")
    model.compile(optimizer="adam", loss="mse")  # any head for a regression loss
    with pytest.raises(ValueError, match=r"targets of shape \(N, 3\)"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0)
    with pytest.raises(NotImplementedError, match="binary and categorical accuracy"):
        model.compile(optimizer="adam", loss="mse", metrics=["binary_accuracy",
                                                              "categorical_accuracy"])


# ---- augmentation ------------------------------------------------------------------------

def augmenting_model(seed=None):
    return models.Sequential([
        layers.Input((10, 10, 3)), layers.RandomFlip(seed=seed), layers.RandomRotation(0.2),
        layers.RandomZoom((-0.2, 0.1)), layers.RandomTranslation(0.1, 0.2, fill_mode="constant"),
        layers.RandomContrast(0.3, value_range=(0, 1)), layers.RandomCrop(8, 8),
        layers.Conv2D(4, 3, activation="relu"), layers.Flatten(), layers.Dense(4, activation="softmax")])


def trained_weights(seed, layer_seed=None):
    utils.set_random_seed(seed)
    model = augmenting_model(layer_seed)
    fit_once(model, IMAGES, LABELS, "sparse_categorical_crossentropy")
    return model


def test_augmentation_is_seeded_and_deterministic():
    a, b = trained_weights(3), trained_weights(3)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    c = trained_weights(3, layer_seed=7)  # the flip's own seed: other coins
    assert not all(np.array_equal(x, y) for x, y in zip(a.get_weights(), c.get_weights()))


def test_augmentation_is_the_identity_at_inference_but_the_crop():
    model = models.Sequential([layers.Input((10, 10, 3)), layers.RandomFlip(),
                               layers.RandomRotation(0.5), layers.RandomContrast(0.5)])
    np.testing.assert_array_equal(model.predict(IMAGES, verbose=0), IMAGES)
    crop = models.Sequential([layers.Input((10, 10, 3)), layers.RandomCrop(10, 10)])
    np.testing.assert_allclose(crop.predict(IMAGES, verbose=0), IMAGES, rtol=1e-6, atol=1e-6)
    assert models.Sequential([layers.Input((10, 10, 3)),
                              layers.RandomCrop(6, 4)]).predict(IMAGES, verbose=0).shape == (24, 6, 4, 3)


def test_augmentation_goes_before_the_layers_with_weights():
    model = models.Sequential([layers.Input((10, 10, 3)), layers.Conv2D(2, 3),
                               layers.RandomFlip(), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match="before every layer with weights"):
        model.compile(optimizer="adam", loss="mse")


@pytest.mark.parametrize("make, words", [
    (lambda: layers.RandomFlip("diagonal"), ["mode", "'horizontal'"]),
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), ["fill_mode", "'reflect'"]),
    (lambda: layers.RandomZoom(0.1, interpolation="bicubic"), ["interpolation", "'bilinear'"]),
    (lambda: layers.RandomTranslation((0.2, 0.1), 0.1), ["height_factor", "above"]),
    (lambda: layers.RandomContrast(1.5), ["factor", "[0.0, 1.0]"]),
    (lambda: layers.RandomCrop(0, 4), ["height", "positive"]),
    (lambda: layers.RandomFlip(seed=-1), ["seed"]),
])
def test_augmentation_arguments_are_checked(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for word in words:
        assert word in str(info.value)


@pytest.mark.gpu
@pytest.mark.skipif(fastnn.build_info()["cuda_devices"] == 0, reason="no CUDA GPU in this process")
def test_augmentation_trains_alike_on_both_engines():
    trained = {}
    for device in ("cpu", "cuda"):
        utils.set_random_seed(5)
        model = augmenting_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", device=device)
        model.fit(IMAGES, LABELS, epochs=2, batch_size=8, verbose=0)
        trained[device] = model.get_weights()
    for a, b in zip(trained["cpu"], trained["cuda"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


# ---- issue 13's first pieces: get_layer, one-argument schedules, learning_rate in the logs

def test_get_layer_by_name_and_index():
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, name="hidden"),
                               layers.Dense(2, name="out")])
    assert model.get_layer("out") is model.layers[1] and model.get_layer(index=0).name == "hidden"
    assert model.get_layer(index=-1).name == "out"
    for kwargs, words in ((dict(name="nope"), ["no layer named 'nope'", "'hidden'"]),
                          (dict(index=5), ["index 5", "2 layers"]), (dict(), ["either"]),
                          (dict(name="out", index=1), ["either"])):
        with pytest.raises(ValueError) as info:
            model.get_layer(**kwargs)
        for word in words:
            assert word in str(info.value)


@pytest.mark.parametrize("schedule", [lambda epoch: 0.01 / (epoch + 1),
                                      lambda epoch, lr: 0.01 / (epoch + 1)])
def test_learning_rate_scheduler_takes_both_forms_and_logs_the_rate(schedule):
    model = models.Sequential([layers.Input((4,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng().standard_normal((16, 4)).astype(np.float32)
    history = model.fit(x, np.arange(16) % 2, epochs=3, verbose=0,
                        callbacks=[fastnn.callbacks.LearningRateScheduler(schedule)])
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.005, 0.01 / 3])
    assert model.optimizer.learning_rate == pytest.approx(0.01 / 3)


def test_learning_rate_scheduler_rejects_what_is_not_a_rate():
    model = models.Sequential([layers.Input((4,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="finite number >= 0"):
        model.fit(np.zeros((4, 4)), np.zeros(4), verbose=0,
                  callbacks=[fastnn.callbacks.LearningRateScheduler(lambda epoch: "fast")])
    with pytest.raises(TypeError, match="schedule must be a function"):
        fastnn.callbacks.LearningRateScheduler(0.1)


def test_logs_and_history_keys_in_keras_3_order():
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = rng().random((32, 4)).astype(np.float32), np.arange(32) % 3
    history = model.fit(x, y, verbose=0, validation_split=0.25,
                        callbacks=[fastnn.callbacks.LearningRateScheduler(lambda epoch: 0.01)])
    # as Keras 3.15 lists them for the same script
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss",
                                     "learning_rate"]
    assert list(model.evaluate(x, y, verbose=0, return_dict=True)) == ["accuracy", "loss"]
    assert list(model.train_on_batch(x, y, return_dict=True)) == ["accuracy", "loss"]
    loss, accuracy = model.evaluate(x, y, verbose=0)  # the list form keeps the loss first
    assert 0 <= accuracy <= 1 and loss > 0
