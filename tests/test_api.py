"""The Keras-style API on small random data: shapes and summary, compile/fit/evaluate/predict,
every bad input, callbacks, progress output, save/load (round trip, atomicity, damaged
files) and determinism. Runs on the C++ engine in a few seconds."""

import io
import json
import os
import re
import zipfile

import numpy as np
import pytest

from fastnn import callbacks, layers, losses, metrics, models, optimizers, utils
from fastnn._seed_cnn import seed_cnn

SEED_CNN_PARAMS = [320, 0, 18496, 0, 36928, 0, 36928, 650]


def small_layers(dropout=False, activation="softmax"):
    """A small CNN on (8, 8, 2) inputs with 3 classes."""
    return [layers.Input(shape=(8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            *([layers.Dropout(0.25)] if dropout else []),
            layers.Dense(5, activation="relu"),
            layers.Dense(3, activation=activation)]


def small_model(dropout=False, optimizer="adam", loss="categorical_crossentropy", **kwargs):
    model = models.Sequential(small_layers(dropout, **kwargs))
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 2)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    return x, utils.to_categorical(labels, 3), labels


@pytest.fixture(autouse=True)
def fresh_session():
    utils.clear_session()
    utils.set_random_seed(1234)


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


# ---------------------------------------------------------------------------
# structure: shapes, names, summary
# ---------------------------------------------------------------------------

def test_seed_cnn_shapes_names_and_counts(capsys):
    model = seed_cnn()
    assert [layer.count_params() for layer in model.layers] == SEED_CNN_PARAMS
    assert model.count_params() == 93322
    assert [layer.name for layer in model.layers] == [
        "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "conv2d_2", "flatten",
        "dense", "dense_1"]
    assert [layer.output_shape for layer in model.layers] == [
        (None, 26, 26, 32), (None, 13, 13, 32), (None, 11, 11, 64), (None, 5, 5, 64),
        (None, 3, 3, 64), (None, 576), (None, 64), (None, 10)]
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    model.summary()
    out = capsys.readouterr().out
    assert 'Model: "sequential"' in out
    assert re.search(r"conv2d_1 \(Conv2D\)\s+\(None, 11, 11, 64\)\s+18496", out)
    assert re.search(r"max_pooling2d \(MaxPooling2D\)\s+\(None, 13, 13, 32\)\s+0", out)
    assert "Total params: 93,322" in out
    assert "Trainable params: 93,322" in out


def test_layer_names_count_up_and_clear_session_resets():
    seed_cnn()
    assert seed_cnn().layers[0].name == "conv2d_3"
    utils.clear_session()
    assert seed_cnn().layers[0].name == "conv2d"


def test_list_constructor_equals_add():
    utils.set_random_seed(7)
    listed = models.Sequential(small_layers())
    utils.set_random_seed(7)
    added = models.Sequential()
    for layer in small_layers():
        added.add(layer)
    assert same_weights(listed.get_weights(), added.get_weights())
    assert [type(layer) for layer in listed.layers] == [type(layer) for layer in added.layers]
    assert not any(isinstance(layer, layers.InputLayer) for layer in listed.layers)


def test_input_layer_equals_input_shape_argument():
    model = models.Sequential([layers.Input(shape=(28, 28, 1)),
                               layers.Conv2D(32, (3, 3), activation="relu")])
    assert model.input_shape == (None, 28, 28, 1)
    assert model.layers[0].count_params() == 320
    with pytest.raises(ValueError, match="first layer"):
        model.add(layers.Input(shape=(3,)))


def test_model_built_from_first_data():
    model = models.Sequential([layers.Flatten(), layers.Dense(3, activation="softmax")])
    assert not model.built
    with pytest.raises(ValueError, match="input shape"):
        model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, _, labels = data()
    model.fit(x, labels, verbose=0)
    assert model.input_shape == (None, 8, 8, 2)
    assert model.count_params() == 8 * 8 * 2 * 3 + 3


def test_two_dimensional_inputs_with_flatten_first():
    model = models.Sequential([layers.Flatten(input_shape=(8, 16)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
    x, _, labels = data()
    history = model.fit(x.reshape(40, 8, 16), labels, verbose=0)
    assert set(history.history) == {"loss", "acc"}
    assert model.predict(x.reshape(40, 8, 16)).shape == (40, 3)


@pytest.mark.parametrize("make, error, words", [
    (lambda m: m.add(layers.Conv2D(4, (9, 9))), ValueError, ["conv2d", "kernel (9, 9)", "(8, 8)"]),
    (lambda m: m.add(layers.MaxPooling2D((9, 9))), ValueError, ["max_pooling2d", "larger"]),
    (lambda m: m.add(layers.Reshape((7, 7))), ValueError, ["reshape", "(7, 7)"]),
    (lambda m: (m.add(layers.Flatten()), m.add(layers.Conv2D(2, 1))), ValueError,
     ["conv2d", "(height, width, channels)"]),
    (lambda m: m.add("conv"), TypeError, ["layer"]),
    (lambda m: m.add(type("MyDense", (layers.Dense,), {})(3)), TypeError, ["MyDense", "Conv2D"]),
])
def test_bad_stacks_fail_at_add(make, error, words):
    model = models.Sequential([layers.Input(shape=(8, 8, 2))])
    with pytest.raises(error) as info:
        make(model)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("make, error, words", [
    (lambda: layers.Conv2D(4, 3, activation="tanhh"), ValueError, ["tanhh", "'relu'", "'gelu'"]),
    (lambda: layers.Dense(0), ValueError, ["units", "positive"]),
    (lambda: layers.Conv2D(4, (3, 0)), ValueError, ["kernel_size"]),
    (lambda: layers.Conv2D(4, 3, padding="full"), ValueError, ["padding"]),
    (lambda: layers.Conv2D(4, 3, kernel_initializer="orthogonal"), ValueError, ["glorot_uniform"]),
    (lambda: layers.MaxPooling2D(2, padding="full"), ValueError, ["'same'", "'valid'"]),
    (lambda: layers.Dropout(1.0), ValueError, ["rate", "[0, 1)"]),
    (lambda: layers.Dense(3, input_shape=(None, 4)), ValueError, ["input_shape"]),
    (lambda: layers.Dense(3, kernel_regularizer="l2"), NotImplementedError, ["kernel_regularizer"]),
    (lambda: layers.Input(shape=(0, 3)), ValueError, ["shape"]),
])
def test_bad_layer_arguments(make, error, words):
    with pytest.raises(error) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_a_layer_belongs_to_one_model():
    dense = layers.Dense(3, activation="softmax")
    models.Sequential([layers.Input(shape=(4,)), dense])
    with pytest.raises(ValueError, match="already belongs"):
        models.Sequential([layers.Input(shape=(4,)), dense])


def test_initializers_follow_keras():
    utils.set_random_seed(0)
    conv = models.Sequential([layers.Input(shape=(30, 30, 16)),
                              layers.Conv2D(64, 3, kernel_initializer="he_normal"),
                              layers.Conv2D(8, 3, bias_initializer="zeros")]).layers
    kernel, bias = conv[0].get_weights()
    fan_in = 3 * 3 * 16
    raw_std = np.sqrt(2 / fan_in) / 0.87962566103423978
    assert np.abs(kernel).max() <= 2 * raw_std
    assert kernel.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)
    assert not bias.any()
    glorot = conv[1].get_weights()[0]
    limit = np.sqrt(6 / (3 * 3 * 64 + 3 * 3 * 8))
    assert np.abs(glorot).max() <= limit and np.abs(glorot).max() > 0.95 * limit


# ---------------------------------------------------------------------------
# compile
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, words", [
    (dict(optimizer="adamw", loss="categorical_crossentropy"), ValueError,
     ["adamw", "'adam'", "'sgd'"]),
    (dict(loss="categorical_crossentropy"), ValueError, ["rmsprop"]),
    (dict(optimizer="adam", loss="hinge"), ValueError, ["hinge", "categorical_crossentropy"]),
    (dict(optimizer="adam"), ValueError, ["loss"]),
    (dict(optimizer="adam", loss="categorical_crossentropy", metrics=["auc"]), ValueError,
     ["auc", "'accuracy'"]),
    (dict(optimizer="adam", loss="categorical_crossentropy", metrics="accuracy"), TypeError,
     ["list"]),
    (dict(optimizer=3, loss="categorical_crossentropy"), TypeError, ["optimizer"]),
    (dict(optimizer="adam", loss=losses.BinaryCrossentropy()), ValueError,
     ["sigmoid", "from_logits=True"]),
    (dict(optimizer=lambda: optimizers.Adam(learning_rate=-1), loss="categorical_crossentropy"),
     ValueError, ["Adam: learning_rate", ">= 0"]),
    (dict(optimizer=lambda: optimizers.SGD(momentum=1.5), loss="categorical_crossentropy"),
     ValueError, ["momentum", "[0, 1]"]),
    (dict(optimizer=lambda: optimizers.Adam(amsgrad=True), loss="categorical_crossentropy"),
     ValueError, ["amsgrad"]),
])
def test_compile_errors(kwargs, error, words):
    model = models.Sequential(small_layers())
    with pytest.raises(error) as info:
        if callable(kwargs.get("optimizer")):  # the optimizer's constructor raises
            kwargs["optimizer"] = kwargs["optimizer"]()
        model.compile(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_from_logits_false_needs_a_softmax_head():
    model = models.Sequential(small_layers(activation="linear"))
    with pytest.raises(ValueError, match="from_logits=False"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    x, _, labels = data()
    model.fit(x, labels, verbose=0)
    assert np.abs(model.predict(x).sum(axis=1) - 1).max() > 1e-3  # logits, not probabilities
    middle = models.Sequential([layers.Input(shape=(4,)), layers.Dense(4, activation="softmax"),
                                layers.Dense(3, activation="softmax")])
    middle.compile(optimizer="adam", loss="categorical_crossentropy")  # a softmax anywhere
    conv_last = models.Sequential([layers.Input(shape=(4, 4, 1)),
                                   layers.Conv2D(2, 3, activation="softmax")])
    with pytest.raises(ValueError, match="one vector per sample"):
        conv_last.compile(optimizer="adam", loss="categorical_crossentropy")


def test_optimizer_objects_and_learning_rate_write_through():
    x, y, _ = data()
    model = small_model(optimizer=optimizers.SGD(learning_rate=0.0, momentum=0.9, nesterov=True))
    before = model.get_weights()
    model.fit(x, y, verbose=0)
    assert same_weights(before, model.get_weights())  # learning rate 0: nothing moves
    assert model.optimizer.iterations == 2
    model.optimizer.learning_rate = 0.1
    model.fit(x, y, verbose=0)
    assert not same_weights(before, model.get_weights())


# ---------------------------------------------------------------------------
# fit, evaluate, predict
# ---------------------------------------------------------------------------

def test_fit_evaluate_predict_like_keras():
    x, y, labels = data()
    model = small_model()
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert isinstance(history, callbacks.History) and model.history is history
    assert set(history.history) == {"loss", "accuracy"}
    assert len(history.history["loss"]) == 3 and history.epoch == [0, 1, 2]
    assert history.params == {"verbose": 0, "epochs": 3, "steps": 5}
    loss, accuracy = model.evaluate(x, y, verbose=0)
    probabilities = model.predict(x)
    assert probabilities.dtype == np.float32 and probabilities.shape == (40, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert accuracy == np.mean(probabilities.argmax(axis=1) == labels)
    assert loss == pytest.approx(losses.CategoricalCrossentropy()(y, probabilities), rel=1e-4)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    assert np.array_equal(model.predict_on_batch(x), probabilities)
    assert model.test_on_batch(x, y)[0] == pytest.approx(loss, rel=1e-6)
    batch_loss, batch_accuracy = model.train_on_batch(x[:8], y[:8])
    assert np.isfinite(batch_loss) and 0 <= batch_accuracy <= 1
    assert model.metrics_names == ["loss", "accuracy"]


def test_evaluate_without_metrics_returns_the_loss():
    model = models.Sequential(small_layers())
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y, _ = data()
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_sparse_labels_int_float_and_column_agree():
    x, _, labels = data()
    results = []
    for y in (labels, labels.astype(np.float32), labels.reshape(-1, 1)):
        utils.set_random_seed(3)
        model = small_model(loss="sparse_categorical_crossentropy")
        model.fit(x, y, verbose=0)
        results.append(model.get_weights())
    assert same_weights(results[0], results[1]) and same_weights(results[0], results[2])


def test_categorical_and_sparse_train_identically():
    x, y, labels = data()
    utils.set_random_seed(3)
    one_hot = small_model()
    one_hot.fit(x, y, verbose=0)
    utils.set_random_seed(3)
    sparse = small_model(loss="sparse_categorical_crossentropy")
    sparse.fit(x, labels, verbose=0)
    for a, b in zip(one_hot.get_weights(), sparse.get_weights()):  # two kernels, one loss
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_partial_last_batch_and_running_loss_weighted_by_samples():
    x, y, _ = data(n=10)
    utils.set_random_seed(5)
    fitted = small_model(optimizer=optimizers.SGD(learning_rate=0.05))
    utils.set_random_seed(5)
    stepped = small_model(optimizer=optimizers.SGD(learning_rate=0.05))
    history = fitted.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    assert history.params["steps"] == 3 and fitted.optimizer.iterations == 3
    for start in (0, 4, 8):  # the same three steps by hand: 4, 4 and 2 samples
        stepped.train_on_batch(x[start:start + 4], y[start:start + 4])
    assert same_weights(fitted.get_weights(), stepped.get_weights())

    frozen = small_model(optimizer=optimizers.SGD(learning_rate=0.0))
    epoch_loss = frozen.fit(x, y, batch_size=4, verbose=0).history["loss"][0]
    assert epoch_loss == pytest.approx(frozen.evaluate(x, y, verbose=0)[0], rel=1e-6)


def test_validation_split_takes_the_last_samples():
    x, y, _ = data()
    utils.set_random_seed(9)
    split = small_model()
    by_split = split.fit(x, y, epochs=2, validation_split=0.25, shuffle=False, verbose=0).history
    utils.set_random_seed(9)
    explicit = small_model()
    by_data = explicit.fit(x[:30], y[:30], epochs=2, validation_data=(x[30:], y[30:]),
                           shuffle=False, verbose=0).history
    assert set(by_split) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert by_split == by_data


@pytest.mark.parametrize("change, error, words", [
    (dict(x=np.full((40, 8, 8, 2), np.nan, np.float32)), ValueError, ["NaN or Inf"]),
    (dict(x=np.zeros((40, 8, 8))), ValueError, ["(N, 8, 8, 2)", "(40, 8, 8)"]),
    (dict(x=np.zeros((40, 8, 2, 8))), ValueError, ["(N, 8, 8, 2)", "(40, 8, 2, 8)"]),
    (dict(x=np.zeros((39, 8, 8, 2))), ValueError, ["same number of samples", "39", "40"]),
    (dict(x=np.zeros((0, 8, 8, 2)), y=np.zeros((0, 3))), ValueError, ["empty"]),
    (dict(x=[["a"]]), TypeError, ["float32"]),
    (dict(x=np.zeros((40, 8, 8, 2), complex)), TypeError, ["real"]),
    (dict(callbacks=callbacks.History()), TypeError, ["list"]),
    (dict(callbacks=[print]), TypeError, ["Callback"]),
    (dict(y=np.arange(40) % 3), ValueError, ["one-hot", "sparse_categorical_crossentropy"]),
    (dict(y=np.eye(4)[np.arange(40) % 4]), ValueError, ["(N, 3)", "(40, 4)"]),
    (dict(y=None), ValueError, ["y"]),
    (dict(batch_size=0), ValueError, ["batch_size", ">= 1"]),
    (dict(batch_size=2.5), TypeError, ["batch_size"]),
    (dict(epochs=-1), ValueError, ["epochs"]),
    (dict(verbose=3), ValueError, ["verbose"]),
    (dict(validation_split=1.0), ValueError, ["validation_split"]),
    (dict(validation_split=0.99), ValueError, ["validation_split", "leaves 0 for training"]),
    (dict(validation_data=(np.zeros((4, 8, 8, 1)), np.eye(3)[:4])), ValueError,
     ["validation_data", "(N, 8, 8, 2)"]),
])
def test_fit_rejects_bad_arguments_before_training(change, error, words):
    x, y, _ = data()
    model = small_model()
    before = model.get_weights()
    kwargs = {**dict(x=x, y=y, verbose=0), **change}
    with pytest.raises(error) as info:
        model.fit(**kwargs)
    for word in words:
        assert word in str(info.value)
    assert same_weights(before, model.get_weights()) and model.optimizer.iterations == 0


def test_sparse_labels_out_of_range_or_fractional():
    x, _, labels = data()
    model = small_model(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[1, 3\]"):
        model.fit(x, labels + 1, verbose=0)
    with pytest.raises(ValueError, match="whole numbers"):
        model.fit(x, labels + 0.5, verbose=0)
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        model.fit(x, utils.to_categorical(labels), verbose=0)


def test_fit_before_compile():
    model = models.Sequential(small_layers())
    x, y, _ = data()
    with pytest.raises(RuntimeError, match=r"compile\("):
        model.fit(x, y)
    with pytest.raises(RuntimeError, match=r"compile\("):
        model.evaluate(x, y)
    assert model.predict(x).shape == (40, 3)  # predict needs no compile, as in Keras


def test_nan_loss_raises_with_epoch_and_batch():
    x, y, _ = data()
    model = small_model()
    weights = model.get_weights()
    weights[-1][0] = np.nan  # the last bias: every logit row gets a NaN
    model.set_weights(weights)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1 of 2"):
        model.fit(x, y, batch_size=32, verbose=0)


# ---------------------------------------------------------------------------
# callbacks
# ---------------------------------------------------------------------------

class FakeMetric(callbacks.Callback):
    """Puts a chosen 'score' into each epoch's logs and records the weights then."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]
        self.weights.append(self.model.get_weights())


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y, _ = data()
    model = small_model()
    fake = FakeMetric([1.0, 0.5, 0.7, 0.8, 0.9, 1.0])
    stopper = callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=6, callbacks=[fake, stopper], verbose=0)
    assert history.epoch == [0, 1, 2, 3] and stopper.stopped_epoch == 3
    assert same_weights(model.get_weights(), fake.weights[1])
    assert not same_weights(model.get_weights(), fake.weights[3])


def test_early_stopping_on_val_loss_that_does_not_move():
    x, y, _ = data()
    model = small_model(optimizer=optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, epochs=5, validation_split=0.25,
                        callbacks=[callbacks.EarlyStopping(patience=1)], verbose=0)
    assert history.epoch == [0, 1]


def test_model_checkpoint_files(tmp_path):
    x, y, _ = data()
    model = small_model()
    every = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.fnn")
    best = str(tmp_path / "best.fnn")
    weights = str(tmp_path / "w-{epoch}.fnn")
    fake = FakeMetric([3.0, 1.0, 2.0])
    model.fit(x, y, epochs=3, validation_split=0.25, verbose=0, callbacks=[
        fake, callbacks.ModelCheckpoint(every),
        callbacks.ModelCheckpoint(best, monitor="score", save_best_only=True),
        callbacks.ModelCheckpoint(weights, save_weights_only=True)])
    saved = sorted(os.listdir(tmp_path / "ckpt"))
    assert [name[:9] for name in saved] == ["model-01-", "model-02-", "model-03-"]
    assert all(re.fullmatch(r"model-0\d-\d+\.\d\d\.fnn", name) for name in saved)
    assert same_weights(models.load_model(best).get_weights(), fake.weights[1])
    restored = models.Sequential(small_layers())
    restored.load_weights(str(tmp_path / "w-3.fnn"))
    assert same_weights(restored.get_weights(), model.get_weights())


def test_csv_logger_rows_and_append(tmp_path):
    x, y, _ = data()
    model = small_model()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[callbacks.CSVLogger(path)],
              verbose=0)
    model.fit(x, y, epochs=1, callbacks=[callbacks.CSVLogger(path, append=True)],
              validation_split=0.25, verbose=0)
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "0"]
    assert all(len(line.split(",")) == 5 for line in lines)


def test_terminate_on_nan_stops_silently(capsys):
    x, y, _ = data()
    model = small_model()
    weights = model.get_weights()
    weights[-1][:] = np.inf
    model.set_weights(weights)
    history = model.fit(x, y, epochs=3, batch_size=8, callbacks=[callbacks.TerminateOnNaN()],
                        verbose=0)
    assert model.optimizer.iterations == 1 and history.epoch == [0]
    assert "Invalid loss" in capsys.readouterr().out


def test_callback_hooks_order_and_stop_training():
    events = []

    class Recorder(callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_batch_end(self, batch, logs=None):
            events.append(f"batch_end {batch}")
            if batch == 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"epoch_end {epoch} {sorted(logs)}")

        def on_train_end(self, logs=None):
            events.append("train_end")

    x, y, _ = data()
    small_model().fit(x, y, epochs=3, batch_size=8, callbacks=[Recorder()], verbose=0)
    assert events == ["train_begin", "epoch_begin 0", "batch_end 0", "batch_end 1",
                      "epoch_end 0 ['accuracy', 'loss']", "train_end"]


def test_learning_rate_scheduler_and_lambda_callback():
    x, y, _ = data()
    model = small_model()
    seen = []
    model.fit(x, y, epochs=3, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch, rate: 0.01 / (epoch + 1)),
        callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: seen.append(model.optimizer.learning_rate))])
    assert seen == pytest.approx([0.01, 0.005, 0.01 / 3])


# ---------------------------------------------------------------------------
# progress output
# ---------------------------------------------------------------------------

def test_verbose_output_formats(capsys):
    x, y, _ = data()
    model = small_model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    # Keras 3's order: the metrics, then the loss
    assert re.fullmatch(r"3/3 \[={30}\] - \d+s \d+(us|ms|s)/step - accuracy: \d\.\d{4} - "
                        r"loss: \d\.\d{4}", lines[1])

    model.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, verbose=2)
    (line,) = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"2/2 - \d+s - accuracy: \d\.\d{4} - loss: \d\.\d{4} - val_accuracy: "
                        r"\d\.\d{4} - val_loss: \d\.\d{4} - \d+s/epoch - "
                        r"\d+(us|ms|s)/step", line)

    model.fit(x, y, verbose=0)
    model.predict(x)
    assert capsys.readouterr().out == ""
    model.evaluate(x, y)
    assert re.fullmatch(r"2/2 \[={30}\] - \d+s \d+(us|ms|s)/step - accuracy: \d\.\d{4} - "
                        r"loss: \d\.\d{4}\n", capsys.readouterr().out)


def test_progress_bar_redraws_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    x, y, _ = data()
    small_model().fit(x, y, batch_size=4, verbose=1)
    out = terminal.getvalue()
    assert out.startswith("\r 1/10 [==>...........................] - ETA: ")
    assert re.search(r"\r10/10 \[={30}\] - \d+s \d+(us|ms|s)/step - accuracy: \d\.\d{4} - "
                     r"loss: \d\.\d{4} *\n$", out)


# ---------------------------------------------------------------------------
# weights, save and load
# ---------------------------------------------------------------------------

def test_get_and_set_weights():
    model = small_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 3, 2, 4), (4,), (36, 5), (5,), (5, 3), (3,)]
    new = [np.full_like(w, 0.01 * i) for i, w in enumerate(weights)]
    model.set_weights(new)
    assert same_weights(model.get_weights(), new)
    assert same_weights(model.layers[0].get_weights(), new[:2])
    with pytest.raises(ValueError, match="expected a list of 6 weight arrays.*got 5"):
        model.set_weights(new[:5])
    bad = list(new)
    bad[2] = np.zeros((5, 36))
    with pytest.raises(ValueError, match=r"weights\[2\] \(dense kernel\) must have shape "
                                         r"\(36, 5\), got \(5, 36\)"):
        model.set_weights(bad)
    with pytest.raises(ValueError, match=r"conv2d \(Conv2D\).set_weights.*shape \(4,\)"):
        model.layers[0].set_weights([new[0], np.zeros(5)])
    assert same_weights(model.get_weights(), new)  # a failed set_weights changes nothing


def test_save_load_round_trip_and_continued_training(tmp_path):
    x, y, _ = data()
    path = str(tmp_path / "model.fnn")
    utils.set_random_seed(11)
    model = small_model(dropout=True, optimizer=optimizers.Adam(learning_rate=0.003, beta_1=0.8))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(path)
    loaded = models.load_model(path)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 10
    assert loaded.metrics_names == ["loss", "accuracy"]
    assert type(loaded.loss) is losses.CategoricalCrossentropy

    utils.set_random_seed(12)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    utils.set_random_seed(12)
    loaded.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert same_weights(loaded.get_weights(), model.get_weights())


def test_load_uncompiled_and_compile_false(tmp_path):
    model = models.Sequential(small_layers())
    model.save(tmp_path / "plain.fnn")
    loaded = models.load_model(tmp_path / "plain.fnn")
    assert loaded.loss is None and same_weights(loaded.get_weights(), model.get_weights())
    compiled = small_model()
    compiled.save(tmp_path / "compiled.fnn")
    assert models.load_model(tmp_path / "compiled.fnn", compile=False).loss is None


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    x, _, _ = data()
    path = tmp_path / "model.fnn"
    model = small_model()
    model.save(path)
    old_bytes = path.read_bytes()
    expected = model.predict(x)
    model.set_weights([w + 1 for w in model.get_weights()])

    calls = []

    def failing_write_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(*args, **kwargs)

    original = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["model.fnn"]
    assert np.array_equal(models.load_model(path).predict(x), expected)


def test_damaged_or_foreign_files_raise_value_error(tmp_path):
    model = small_model()
    good = tmp_path / "good.fnn"
    model.save(good)
    data_bytes = good.read_bytes()

    truncated = tmp_path / "truncated.fnn"
    truncated.write_bytes(data_bytes[:len(data_bytes) // 2])
    text = tmp_path / "text.fnn"
    text.write_text("hello")
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    unmarked = tmp_path / "unmarked.fnn"
    with zipfile.ZipFile(unmarked, "w") as archive:
        archive.writestr("config.json", json.dumps({"layers": []}))
    future = tmp_path / "future.fnn"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(future, "w") as archive:
        for name in source.namelist():
            content = source.read(name)
            if name == "config.json":
                config = json.loads(content)
                config["version"] = 99
                content = json.dumps(config)
            archive.writestr(name, content)
    weights_only = tmp_path / "weights.fnn"
    model.save_weights(weights_only)

    cases = [(truncated, "not a complete fastnn file"), (text, "not a complete fastnn file"),
             (foreign, "no config.json"), (unmarked, "format marker"),
             (future, "version 99"), (weights_only, "load_weights()")]
    for path, words in cases:
        with pytest.raises(ValueError) as info:
            models.load_model(path)
        assert str(path) in str(info.value) and words in str(info.value)
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "missing.fnn")
    other = models.Sequential([layers.Input(shape=(4,)), layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="weights.fnn"):
        other.load_weights(weights_only)


# ---------------------------------------------------------------------------
# determinism and utils
# ---------------------------------------------------------------------------

def test_same_seed_same_weights_bit_for_bit():
    x, y, _ = data(n=100)
    runs = []
    for _ in range(2):
        utils.set_random_seed(42)
        model = small_model(dropout=True)
        model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
        runs.append(model.get_weights())
    assert same_weights(*runs)
    utils.set_random_seed(43)
    model = small_model(dropout=True)
    model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    assert not same_weights(runs[0], model.get_weights())


def test_dropout_is_off_at_inference():
    x, _, _ = data()
    model = small_model(dropout=True)
    assert np.array_equal(model.predict(x), model.predict(x))


def test_to_categorical_and_seed_arguments():
    np.testing.assert_array_equal(utils.to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    assert utils.to_categorical(np.array([[1], [0]]), num_classes=4).shape == (2, 4)
    assert utils.to_categorical([1]).dtype == np.float32
    with pytest.raises(ValueError, match="out of range"):
        utils.to_categorical([3], num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        utils.to_categorical([-1])
    with pytest.raises(TypeError, match="seed"):
        utils.set_random_seed(1.5)
    np.testing.assert_allclose(np.linalg.norm(utils.normalize([[3.0, 4.0]]), axis=-1), 1)


def test_metric_objects():
    accuracy = metrics.SparseCategoricalAccuracy()
    accuracy.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    assert accuracy.result() == 0.5
    model = models.Sequential(small_layers())
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=[metrics.CategoricalAccuracy()])
    x, y, _ = data()
    assert set(model.fit(x, y, verbose=0).history) == {"loss", "categorical_accuracy"}
