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

This module knows the file, not the model: ``models`` hands it configs and arrays to write
and builds the model from what it reads.
"""

import contextlib
import json
import os
import secrets
import zipfile
import zlib

import numpy as np

from fastnn import _C

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


def save_model(path, model, compiled, dropout_seed, weight_labels, weights, iterations,
               optimizer_state):
    """Write a model file: ``model`` and ``compiled`` are the model's and its compile
    settings' configs (``compiled`` None when not compiled), ``iterations`` None when it has
    no optimizer state."""
    config = {"format": MODEL_FORMAT, "version": VERSION, "fastnn_version": _C.__version__,
              "model": model, "compile": compiled, "dropout_seed": dropout_seed,
              "weights": weight_labels, "iterations": iterations,
              "optimizer_arrays": len(optimizer_state)}
    arrays = {**_numbered("weights", weights), **_numbered("optimizer", optimizer_state)}
    write_atomically(path, lambda file: write_archive(file, config, arrays))


def save_weights(path, weight_labels, weights):
    config = {"format": WEIGHTS_FORMAT, "version": VERSION, "fastnn_version": _C.__version__,
              "weights": weight_labels}
    arrays = _numbered("weights", weights)
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


def read_model(path):
    """The ``ModelFile`` at ``path``; ValueError if it is not a complete model file."""
    return ModelFile(path, *read_archive(path, (MODEL_FORMAT,)))


class ModelFile:
    """A model file's parts, each read when asked for, so that a part loading does not use
    (the optimizer state, with compile=False) cannot make it fail. The parts raise KeyError,
    TypeError or their own errors when missing or malformed: use them inside ``building``."""

    def __init__(self, path, config, arrays):
        self.path, self._config, self._arrays = os.fspath(path), config, arrays

    @property
    def model(self):
        return self._config["model"]

    @property
    def compiled(self):
        """The compile settings' config, None if the model was saved uncompiled."""
        return self._config["compile"]

    @property
    def dropout_seed(self):
        return self._config["dropout_seed"]

    @property
    def iterations(self):
        """The optimizer's step count, None if the file holds no optimizer state."""
        return self._config["iterations"]

    def weights(self):
        return _weights(self._config, self._arrays)

    def optimizer_state(self, shapes):
        """The optimizer's arrays, checked against ``shapes``, those the model's engine holds."""
        state = _arrays(self._arrays, "optimizer", self._config["optimizer_arrays"])
        if len(state) != len(shapes) or any(s.shape != t for s, t in zip(state, shapes)):
            raise _Invalid("its optimizer state does not fit the model")
        return state

    @contextlib.contextmanager
    def building(self):
        """Around building the model from the parts: a fault in them is a ValueError naming
        the file."""
        try:
            yield
        except _Invalid as e:
            raise ValueError(f"cannot load {self.path!r}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"cannot load {self.path!r}: its content does not describe a "
                             f"valid model: {type(e).__name__}: {e}") from None


def load_weights(path, set_weights, owner):
    """Read the weights of a model or weights file and pass them to ``set_weights``; a
    fault in the file, or weights that do not fit, is a ValueError naming it and ``owner``."""
    config, arrays = read_archive(path, (MODEL_FORMAT, WEIGHTS_FORMAT))
    try:
        set_weights(_weights(config, arrays))
    except (_Invalid, ValueError) as e:
        raise ValueError(f"cannot load weights from {os.fspath(path)!r} into {owner}: "
                         f"{e}") from None
