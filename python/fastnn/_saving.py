"""The model file: one zip holding ``config.json`` and NumPy ``.npy`` arrays.

    config.json         {"format": "fastnn.model", "version": 1, "model": layer configs,
                         "compile": optimizer/loss/metrics or null, "dropout_seed",
                         "weights": labels of the arrays, "iterations": optimizer steps}
    weights/000.npy...  the weights in get_weights() order
    optimizer/000.npy.. the engine's optimizer state (Adam: m then v; SGD: velocities)

``save_weights`` writes the same layout with "format": "fastnn.weights" and no optimizer.
Files are written atomically: into a temporary file in the target's directory, flushed
and fsync'ed, then renamed over the target with os.replace; a failure removes the
temporary file and leaves any previous file as it was.
"""

import json
import os
import secrets
import zipfile
import zlib

import numpy as np

from fastnn import _C, _training, losses, optimizers

MODEL_FORMAT = "fastnn.model"
WEIGHTS_FORMAT = "fastnn.weights"
VERSION = 1
CONFIG = "config.json"


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------

def write_atomically(path, write):
    """Call ``write(file)`` on a temporary file, then move it to ``path`` in one step."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 honours the umask, so the file gets the usual permissions.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_archive(file, config, arrays):
    """The zip: config.json, then each array as ``<name>.npy``."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(CONFIG, json.dumps(config, indent=1))
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def _numbered(prefix, arrays):
    return {f"{prefix}/{i:03d}": array for i, array in enumerate(arrays)}


def _weight_labels(model):
    return [label for layer in model.layers for label in layer.weight_labels()]


def save_model(model, path):
    compiled = None
    if model.loss is not None:
        compiled = {"optimizer": {"class_name": type(model.optimizer).__name__,
                                  "config": model.optimizer.get_config()},
                    "loss": {"class_name": type(model.loss).__name__,
                             "config": model.loss.get_config()},
                    "metrics": list(model.metrics_names[1:])}
    net = model._net if compiled else None
    model._pull_weights()  # a GPU engine's weights and optimizer state, as trained
    state = [a.copy() for a in net.optimizer_state()] if net is not None else []
    config = {"format": MODEL_FORMAT, "version": VERSION, "fastnn_version": _C.__version__,
              "model": {"class_name": "Sequential", "config": model.get_config()},
              "compile": compiled, "dropout_seed": model._dropout_seed,
              "weights": _weight_labels(model),
              "iterations": net.iterations if net is not None else None,
              "optimizer_arrays": len(state)}
    arrays = {**_numbered("weights", model.get_weights()), **_numbered("optimizer", state)}
    write_atomically(path, lambda file: write_archive(file, config, arrays))


def save_weights(model, path):
    config = {"format": WEIGHTS_FORMAT, "version": VERSION, "fastnn_version": _C.__version__,
              "weights": _weight_labels(model)}
    arrays = _numbered("weights", model.get_weights())
    write_atomically(path, lambda file: write_archive(file, config, arrays))


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

class _Invalid(Exception):
    """A problem with the file's content; load functions turn it into ValueError."""


def read_archive(path, formats):
    """(config, {name: array}) of a file in one of ``formats``; ValueError names the fault."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if CONFIG not in names:
                raise _Invalid("it is a zip file but holds no config.json, so it was not "
                               "written by fastnn")
            config = json.loads(archive.read(CONFIG).decode("utf-8"))
            found = config.get("format") if isinstance(config, dict) else None
            if found == WEIGHTS_FORMAT and found not in formats:
                raise _Invalid("it holds weights only (written by save_weights); load it into "
                               "a model with model.load_weights()")
            if found not in formats:
                raise _Invalid(f"its config.json has no fastnn format marker "
                               f"({' or '.join(map(repr, formats))})")
            if config.get("version") != VERSION:
                raise _Invalid(f"format version {config.get('version')!r} is not one this "
                               f"fastnn reads (version {VERSION}); it was written by fastnn "
                               f"{config.get('fastnn_version', '?')}")
            arrays = {name[:-len(".npy")]: np.lib.format.read_array(archive.open(name),
                                                                     allow_pickle=False)
                      for name in names if name.endswith(".npy")}
    except _Invalid as e:
        raise ValueError(f"cannot load {path!r}: {e}") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, UnicodeDecodeError, ValueError) as e:
        # BadZipFile: not a zip, or truncated; CRC errors; EOFError/ValueError: a cut array.
        raise ValueError(f"cannot load {path!r}: it is not a complete fastnn file "
                         f"(truncated, corrupt or another format): {e}") from None
    return config, arrays


def _arrays(arrays, prefix, count):
    try:
        return [arrays[f"{prefix}/{i:03d}"] for i in range(count)]
    except KeyError as e:
        raise _Invalid(f"the array {e.args[0]}.npy is missing") from None


def _weights(config, arrays):
    labels = config.get("weights")
    if not isinstance(labels, list):
        raise _Invalid("its config.json has no weights list")
    return _arrays(arrays, "weights", len(labels))


def load_model(path, compile=True, device="auto"):
    from fastnn.models import Sequential
    device = _training.resolve_device(device, "load_model")  # before the file's own errors
    config, arrays = read_archive(path, (MODEL_FORMAT,))
    try:
        model = Sequential.from_config(config["model"]["config"])
        model.set_weights(_weights(config, arrays))
        model._dropout_seed = config["dropout_seed"]
        compiled = config["compile"]
        if compile and compiled is not None:
            optimizer = optimizers.OPTIMIZER_CLASSES[compiled["optimizer"]["class_name"]]
            loss = losses.LOSS_CLASSES[compiled["loss"]["class_name"]]
            model.compile(optimizer=optimizer.from_config(compiled["optimizer"]["config"]),
                          loss=loss.from_config(compiled["loss"]["config"]),
                          metrics=compiled["metrics"], device=device)
            if config["iterations"] is not None:
                _restore_optimizer(model, config, arrays)
    except _Invalid as e:
        raise ValueError(f"cannot load {os.fspath(path)!r}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot load {os.fspath(path)!r}: its content does not describe a "
                         f"valid model: {type(e).__name__}: {e}") from None
    return model


def _restore_optimizer(model, config, arrays):
    net = model._ensure_net()
    targets = net.optimizer_state()
    state = _arrays(arrays, "optimizer", config["optimizer_arrays"])
    if len(state) != len(targets) or any(s.shape != t.shape for s, t in zip(state, targets)):
        raise _Invalid("its optimizer state does not fit the model")
    for target, value in zip(targets, state):
        target[...] = value
    model._push_weights()
    net.iterations = int(config["iterations"])


def load_weights(model, path):
    config, arrays = read_archive(path, (MODEL_FORMAT, WEIGHTS_FORMAT))
    try:
        model.set_weights(_weights(config, arrays))
    except (_Invalid, ValueError) as e:
        raise ValueError(f"cannot load weights from {os.fspath(path)!r} into {model.name}: "
                         f"{e}") from None
