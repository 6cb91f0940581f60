"""End to end on the real Fashion-MNIST (skipped when it is not installed): the Keras
example trains to >= 85% test accuracy, and ``python -m fastnn train`` runs on a small
copy of the data and writes its JSON report and model; then the command's errors."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from fastnn import models, utils
from fastnn._seed_cnn import seed_cnn
from fastnn.datasets import fashion_mnist

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR),
    reason=f"Fashion-MNIST is not installed in {FASHION_DIR} "
           f"(apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def fashion():
    return fashion_mnist.load_data(path=FASHION_DIR)


@needs_fashion
def test_seed_cnn_reaches_85_percent(fashion):
    """The issue's Keras script for 2 of its 5 epochs (one epoch lands near 85%, too close
    to the bar), tested on all 10,000 test images never seen in training."""
    (train_images, train_labels), (test_images, test_labels) = fashion
    train_images = train_images.reshape((60000, 28, 28, 1)).astype("float32") / 255
    test_images = test_images.reshape((10000, 28, 28, 1)).astype("float32") / 255
    train_labels = utils.to_categorical(train_labels)
    test_labels = utils.to_categorical(test_labels)

    utils.set_random_seed(0)
    model = seed_cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train_images, train_labels, epochs=2, batch_size=64, verbose=0)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)

    assert history.history["loss"][0] > history.history["loss"][-1]
    assert test_acc >= 0.85, f"test accuracy {test_acc:.4f} (loss {test_loss:.4f})"
    predictions = model.predict(test_images)
    assert predictions.shape == (10000, 10) and predictions.dtype == np.float32
    assert np.mean(predictions.argmax(axis=1) == test_labels.argmax(axis=1)) == test_acc


def write_idx(directory, prefix, images, labels):
    """The two IDX files of one split: big-endian magic and sizes, then the raw bytes."""
    with open(os.path.join(directory, f"{prefix}-images-idx3-ubyte"), "wb") as file:
        file.write(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    with open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"), "wb") as file:
        file.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastnn", "train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@needs_fashion
def test_train_command_on_a_small_copy(fashion, tmp_path):
    (train_images, train_labels), (test_images, test_labels) = fashion
    data = tmp_path / "data"
    data.mkdir()
    write_idx(data, "train", train_images[:2000], train_labels[:2000])
    write_idx(data, "t10k", test_images[:500], test_labels[:500])

    result = run_cli("--dataset", "fashion-mnist", "--data", str(data), "--epochs", "1",
                     "--batch-size", "64", "--verbose", "2", "--json", "report.json",
                     "--save", "model.fnn", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "images/s" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"test_loss", "test_accuracy", "train_images_per_second", "train_seconds",
            "dataset", "epochs", "batch_size"} <= set(report)
    assert report["dataset"] == "fashion-mnist"
    assert report["epochs"] == 1 and report["batch_size"] == 64
    assert 0.3 < report["test_accuracy"] <= 1 and report["train_images_per_second"] > 0
    assert report["train_images_per_second"] * report["train_seconds"] == pytest.approx(2000)

    model = models.load_model(tmp_path / "model.fnn")
    x_test = test_images[:500].reshape((500, 28, 28, 1)).astype("float32") / 255
    loss, accuracy = model.evaluate(x_test, utils.to_categorical(test_labels[:500]), verbose=0)
    assert accuracy == report["test_accuracy"]
    assert loss == pytest.approx(report["test_loss"], rel=1e-6)


def test_train_command_errors(tmp_path):
    result = run_cli("--device", "cuda", cwd=tmp_path)
    assert result.returncode != 0 and "--device cuda" in result.stderr

    result = run_cli("--epochs", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--epochs" in result.stderr

    result = run_cli("--dataset", "fashion-mnist", "--data", str(tmp_path / "nowhere"),
                     cwd=tmp_path)
    assert result.returncode == 1 and "nowhere" in result.stderr


def test_plot_without_matplotlib_fails_before_training(tmp_path):
    try:
        import matplotlib  # noqa: F401
        pytest.skip("matplotlib is installed; this checks the message shown without it")
    except ImportError:
        pass
    result = run_cli("--plot", "out.png", cwd=tmp_path)
    assert result.returncode != 0 and "pip install matplotlib" in result.stderr
    assert "Training" not in result.stdout and not (tmp_path / "out.png").exists()
