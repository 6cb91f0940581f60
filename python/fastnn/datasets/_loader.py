"""Shared loader behind fastnn.datasets: find, download and validate an MNIST-format set.

A set is the four IDX files (each raw or .gz) or a Keras-style .npz with keys
x_train, y_train, x_test, y_test. Every file is checked (header, sizes, label range)
before its arrays are returned, so a damaged file raises ValueError, never bad data.
"""

import functools
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zipfile
import zlib

import numpy as np

DEFAULT_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
TIMEOUT_S = 30
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGES_MAGIC = 0x00000803  # IDX: unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 0x00000801  # IDX: unsigned bytes, 1 dimension (count)
SIDE = 28
NUM_CLASSES = 10


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is in none of the searched places and could not be downloaded."""


def load(name, path, *, hashes, keras_dir, npz_name=None, system_dirs=()):
    """Return ``(x_train, y_train), (x_test, y_test)`` for the dataset ``name``.

    ``hashes`` maps each file to download (from ``$FASTNN_DATASETS_URL`` or Keras's
    mirror) to its SHA-256; ``keras_dir`` is the dataset's place under
    ``~/.keras/datasets``; ``npz_name`` is the .npz file a directory may hold instead
    of the IDX files; ``system_dirs`` are further places to look (e.g. Debian's).
    """
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isfile(path):
            return _load_npz(path)
        found = _find_in(path, npz_name) if os.path.isdir(path) else None
        if found is None:
            raise DatasetNotFoundError(_not_found(name, [path], npz_name, None))
        return found()

    home = os.path.expanduser("~")
    cache = os.path.join(home, ".fastnn", "datasets", name)
    searched = []
    env_dir = os.environ.get("FASTNN_DATA")
    if env_dir:
        searched += [os.path.join(env_dir, name), env_dir]
    searched += [cache, os.path.join(home, ".keras", "datasets", keras_dir), *system_dirs]
    searched = [os.path.normpath(d) for d in searched]
    for directory in searched:
        found = _find_in(directory, npz_name)
        if found is not None:
            return found()

    if os.environ.get("FASTNN_OFFLINE", "") not in ("", "0"):
        raise DatasetNotFoundError(
            _not_found(name, searched, npz_name, "Download skipped: FASTNN_OFFLINE is set.")
        )
    base = os.environ.get("FASTNN_DATASETS_URL") or DEFAULT_URL
    for fname, sha256 in hashes.items():
        url = base.rstrip("/") + "/" + fname
        try:
            _download(url, os.path.join(cache, fname), sha256)
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, timeouts: OSError
            raise DatasetNotFoundError(
                _not_found(name, searched, npz_name, f"Download of {url} failed: {e}")
            ) from e
    return _find_in(cache, npz_name)()


def _not_found(name, searched, npz_name, download_note):
    files = ", ".join(IDX_FILES)
    what = f"{npz_name}, or the four IDX files" if npz_name else "the four IDX files"
    lines = [f"{name} dataset not found. Searched:"]
    lines += [f"  {d}" for d in searched]
    if download_note:
        lines.append(download_note)
    lines += [
        f"Put {what} ({files}; each raw or .gz) in ~/.fastnn/datasets/{name}/ "
        f"or $FASTNN_DATA/{name}/, or pass load_data(path=...).",
        "Fashion-MNIST is also packaged for Debian/Ubuntu: "
        "apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist).",
    ]
    return "\n".join(lines)


def _find_in(directory, npz_name):
    """Return a loader for the set in ``directory`` (IDX files first, then .npz), or None."""
    paths = []
    for fname in IDX_FILES:
        candidates = [os.path.join(directory, fname + ext) for ext in ("", ".gz")]
        paths.append(next((p for p in candidates if os.path.isfile(p)), None))
    if all(paths):
        return functools.partial(_load_idx, *paths)
    if npz_name and os.path.isfile(os.path.join(directory, npz_name)):
        return functools.partial(_load_npz, os.path.join(directory, npz_name))
    return None


def _download(url, dest, sha256):
    """Fetch ``url`` to a temporary file beside ``dest``; move it there if the hash matches."""
    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(dest) + ".", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(f"SHA-256 {digest.hexdigest()} does not match the expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if not path.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # bad header/CRC, truncated, bad deflate
        raise ValueError(f"{path}: broken gzip file ({e})") from None


def _read_idx(path, magic, dims):
    """Read an IDX file of uint8 with the given magic and trailing dims, checking every size."""
    data = _read_bytes(path)
    header = 4 * (2 + len(dims))
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    fields = [int(v) for v in np.frombuffer(data, ">u4", count=header // 4)]
    if fields[0] != magic:
        raise ValueError(f"{path}: bad IDX magic number 0x{fields[0]:08x}, expected 0x{magic:08x}")
    count, shape = fields[1], tuple(fields[2:])
    if shape != dims:
        raise ValueError(f"{path}: items are {shape}, expected {dims}")
    expected = count * int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: payload is {len(data) - header} bytes, the header's count of "
            f"{count} items needs exactly {expected}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape((count,) + dims).copy()


def _load_idx(train_x, train_y, test_x, test_y):
    out = []
    for xpath, ypath in ((train_x, train_y), (test_x, test_y)):
        x = _read_idx(xpath, IMAGES_MAGIC, (SIDE, SIDE))
        y = _read_idx(ypath, LABELS_MAGIC, ())
        _check_pair(x, y, xpath, ypath)
        out.append((x, y))
    return tuple(out)


def _load_npz(path):
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named arrays")
        with f:
            arrays = {k: f[k] for k in NPZ_KEYS if k in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; an .npz needs {list(NPZ_KEYS)}")
    for key, ndim in zip(NPZ_KEYS, (3, 1, 3, 1)):
        a = arrays[key]
        if a.dtype != np.uint8 or a.ndim != ndim or (ndim == 3 and a.shape[1:] != (SIDE, SIDE)):
            want = "(n, 28, 28)" if ndim == 3 else "(n,)"
            raise ValueError(f"{path}: {key} is {a.dtype} {a.shape}, expected uint8 {want}")
    out = []
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        _check_pair(arrays[xk], arrays[yk], f"{path}[{xk}]", f"{path}[{yk}]")
        out.append((arrays[xk], arrays[yk]))
    return tuple(out)


def _check_pair(x, y, xname, yname):
    if len(x) != len(y):
        raise ValueError(f"{xname} holds {len(x)} images but {yname} holds {len(y)} labels")
    if y.size and y.max() >= NUM_CLASSES:
        i = int(np.argmax(y >= NUM_CLASSES))
        raise ValueError(f"{yname}: label {y[i]} at index {i}, labels must be < {NUM_CLASSES}")
