"""fastnn.datasets: tiny synthetic IDX/.npz sets in tmp dirs, a local HTTP server for the
download path; HOME is redirected and the network is never used."""

import functools
import gzip
import hashlib
import http.server
import os
import struct
import threading

import numpy as np
import pytest

from fastnn.datasets import DatasetNotFoundError, fashion_mnist, mnist

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
# (module, <name> under ~/.fastnn/datasets and $FASTNN_DATA, Keras cache subdir)
DATASETS = {
    "mnist": (mnist, "mnist", ""),
    "fashion": (fashion_mnist, "fashion-mnist", "fashion-mnist"),
}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Fake home, no FASTNN_DATA, offline, and no Debian dir unless a test puts one back."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_DATASETS_URL", raising=False)
    monkeypatch.setenv("FASTNN_OFFLINE", "1")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    return home


def make_set(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, n_train, dtype=np.uint8)),
            (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, n_test, dtype=np.uint8)))


def idx_bytes(a, magic=None):
    magic = (0x803 if a.ndim == 3 else 0x801) if magic is None else magic
    return struct.pack(f">{1 + a.ndim}I", magic, *a.shape) + a.tobytes()


def write_idx(directory, data, gz=False):
    """Write the four IDX files; return their paths in IDX_NAMES order."""
    directory.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = data
    paths = []
    for name, a in zip(IDX_NAMES, (xtr, ytr, xte, yte)):
        path = directory / (name + (".gz" if gz else ""))
        raw = idx_bytes(a)
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths.append(path)
    return paths


def write_npz(path, data, **override):
    (xtr, ytr), (xte, yte) = data
    arrays = {**dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte), **override}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def assert_same(got, want):
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        assert g.dtype == np.uint8 and g.shape == w.shape and g.flags.writeable
        np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("ds", list(DATASETS))
def test_idx_round_trip(tmp_path, ds, gz):
    data = make_set()
    write_idx(tmp_path / "d", data, gz=gz)
    assert_same(DATASETS[ds][0].load_data(path=tmp_path / "d"), data)


def test_mixed_raw_and_gz(tmp_path):
    data = make_set()
    write_idx(tmp_path / "d", data, gz=True)
    raw = tmp_path / "d" / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress((tmp_path / "d" / "t10k-images-idx3-ubyte.gz").read_bytes()))
    (tmp_path / "d" / "t10k-images-idx3-ubyte.gz").unlink()
    assert_same(mnist.load_data(path=str(tmp_path / "d")), data)


def test_npz_round_trip(tmp_path):
    data = make_set()
    npz = write_npz(tmp_path / "d" / "mnist.npz", data)
    assert_same(mnist.load_data(path=npz), data)
    assert_same(mnist.load_data(path=tmp_path / "d"), data)  # a directory holding mnist.npz
    assert_same(fashion_mnist.load_data(path=npz), data)      # any .npz by explicit path


# ---------------------------------------------------------------- where it looks

@pytest.mark.parametrize("ds", list(DATASETS))
def test_search_order(tmp_path, monkeypatch, isolated, ds):
    module, name, keras_sub = DATASETS[ds]
    env = tmp_path / "env"
    monkeypatch.setenv("FASTNN_DATA", str(env))
    keras = isolated / ".keras" / "datasets" / keras_sub
    places = [tmp_path / "arg", env / name, env, isolated / ".fastnn" / "datasets" / name, keras]
    for n, place in zip(range(12, 0, -1), places):  # each place has its own train count
        if ds == "mnist" and place == keras:
            write_npz(place / "mnist.npz", make_set(n_train=n))
        else:
            write_idx(place, make_set(n_train=n), gz=True)
    assert len(module.load_data(path=tmp_path / "arg")[0][0]) == 12
    for n, place in zip(range(11, 0, -1), places[1:]):
        assert len(module.load_data()[0][0]) == n, place
        for f in place.glob("*.*"):  # .gz / .npz only: subfolders stay
            f.unlink()
    with pytest.raises(DatasetNotFoundError):
        module.load_data()


def test_debian_dir_is_searched_last(tmp_path, monkeypatch, isolated):
    debian = tmp_path / "debian"
    write_idx(debian, make_set(n_train=3), gz=True)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(debian))
    assert len(fashion_mnist.load_data()[0][0]) == 3
    write_idx(isolated / ".keras" / "datasets" / "fashion-mnist", make_set(n_train=4), gz=True)
    assert len(fashion_mnist.load_data()[0][0]) == 4
    with pytest.raises(DatasetNotFoundError):
        mnist.load_data()  # Debian's package is Fashion-MNIST only


def test_path_is_the_only_place_looked(tmp_path, isolated):
    write_idx(isolated / ".fastnn" / "datasets" / "mnist", make_set())
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(DatasetNotFoundError, match=str(path)):
            mnist.load_data(path=path)


def test_partial_set_is_not_found(tmp_path):
    paths = write_idx(tmp_path / "d", make_set())
    paths[3].unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        mnist.load_data(path=tmp_path / "d")


def test_offline_error_message(monkeypatch, isolated):
    def no_network(*args, **kwargs):
        raise AssertionError("FASTNN_OFFLINE=1 must not touch the network")
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist.load_data()
    msg = str(e.value)
    assert isinstance(e.value, DatasetNotFoundError)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "FASTNN_OFFLINE" in msg
    assert str(isolated / ".fastnn" / "datasets" / "fashion-mnist") in msg
    assert str(isolated / ".keras" / "datasets" / "fashion-mnist") in msg
    assert all(name in msg for name in IDX_NAMES)


# ---------------------------------------------------------------- damaged files

CORRUPTIONS = {
    # name: (file index in IDX_NAMES, gz?, function(raw bytes of that file) -> new bytes, match)
    "images bad magic": (0, False, lambda b: struct.pack(">I", 0x801) + b[4:], "magic"),
    "labels bad magic": (1, False, lambda b: struct.pack(">I", 0x803) + b[4:], "magic"),
    "truncated header": (2, False, lambda b: b[:6], "header"),
    "truncated payload": (0, False, lambda b: b[:-1], "payload"),
    "trailing bytes": (3, False, lambda b: b + b"\0", "payload"),
    "wrong dims": (0, False, lambda b: b[:8] + struct.pack(">II", 27, 28) + b[16:-28], "27, 28"),
    "label >= 10": (1, False, lambda b: b[:-1] + bytes([10]), "label 10"),
    "truncated gzip": (2, True, lambda b: b[: len(b) // 2], "gzip"),
    "bad gzip crc": (3, True, lambda b: b[:-8] + bytes(255 - x for x in b[-8:-4]) + b[-4:], "gzip"),
    "not gzip": (0, True, lambda b: b"plain bytes, no gzip header", "gzip"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_damaged_idx_raises_value_error_naming_the_file(tmp_path, case):
    index, gz, damage, match = CORRUPTIONS[case]
    path = write_idx(tmp_path / "d", make_set(), gz=gz)[index]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=match) as e:
        fashion_mnist.load_data(path=tmp_path / "d")
    assert str(path) in str(e.value)


def test_image_label_count_mismatch(tmp_path):
    (xtr, ytr), test = make_set()
    paths = write_idx(tmp_path / "d", ((xtr, ytr[:-1]), test))
    with pytest.raises(ValueError, match="12 images but .* 11 labels") as e:
        mnist.load_data(path=tmp_path / "d")
    assert str(paths[0]) in str(e.value) and str(paths[1]) in str(e.value)


def test_damaged_file_in_search_path_is_reported_not_skipped(isolated):
    paths = write_idx(isolated / ".fastnn" / "datasets" / "mnist", make_set())
    paths[1].write_bytes(paths[1].read_bytes()[:-3])
    write_npz(isolated / ".keras" / "datasets" / "mnist.npz", make_set())
    with pytest.raises(ValueError, match=str(paths[1])):
        mnist.load_data()


NPZ_DAMAGE = {
    "missing key": (dict(y_test=None), "missing key.*y_test"),
    "float images": (dict(x_train=np.zeros((12, 28, 28), np.float32)), "x_train is float32"),
    "wrong image shape": (dict(x_test=np.zeros((5, 28, 27), np.uint8)), r"x_test is .* 28, 27\)"),
    "2-d labels": (dict(y_train=np.zeros((12, 1), np.uint8)), "y_train is uint8"),
    "count mismatch": (dict(y_test=np.zeros(4, np.uint8)), "5 images but .* 4 labels"),
    "label >= 10": (dict(y_train=np.full(12, 10, np.uint8)), "label 10"),
}


@pytest.mark.parametrize("case", list(NPZ_DAMAGE))
def test_damaged_npz(tmp_path, case):
    override, match = NPZ_DAMAGE[case]
    npz = write_npz(tmp_path / "mnist.npz", make_set(), **override)
    with pytest.raises(ValueError, match=match) as e:
        mnist.load_data(path=npz)
    assert str(npz) in str(e.value)


@pytest.mark.parametrize("content", [b"not a zip file at all", None], ids=["garbage", "truncated"])
def test_unreadable_npz(tmp_path, content):
    npz = write_npz(tmp_path / "mnist.npz", make_set())
    npz.write_bytes(content if content is not None else npz.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable .npz") as e:
        mnist.load_data(path=npz)
    assert str(npz) in str(e.value)


# ---------------------------------------------------------------- download

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/served on 127.0.0.1 at FASTNN_DATASETS_URL; shut down after the test."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("FASTNN_DATASETS_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.delenv("FASTNN_OFFLINE")
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_mnist(server, monkeypatch, isolated):
    data = make_set()
    npz = write_npz(server / "mnist.npz", data)
    monkeypatch.setitem(mnist.FILE_HASHES, "mnist.npz", sha256(npz))
    assert_same(mnist.load_data(), data)
    cache = isolated / ".fastnn" / "datasets" / "mnist"
    assert sorted(os.listdir(cache)) == ["mnist.npz"]
    monkeypatch.setenv("FASTNN_OFFLINE", "1")  # now served from the cache
    assert_same(mnist.load_data(), data)


def test_download_fashion_mnist(server, monkeypatch, isolated):
    data = make_set()
    paths = write_idx(server, data, gz=True)
    monkeypatch.setattr(fashion_mnist, "FILE_HASHES", {p.name: sha256(p) for p in paths})
    assert_same(fashion_mnist.load_data(), data)
    cache = isolated / ".fastnn" / "datasets" / "fashion-mnist"
    assert sorted(os.listdir(cache)) == sorted(p.name for p in paths)


def test_download_hash_mismatch_leaves_nothing(server, monkeypatch, isolated):
    write_npz(server / "mnist.npz", make_set())
    monkeypatch.setitem(mnist.FILE_HASHES, "mnist.npz", "0" * 64)
    with pytest.raises(DatasetNotFoundError, match="SHA-256 .* does not match"):
        mnist.load_data()
    assert os.listdir(isolated / ".fastnn" / "datasets" / "mnist") == []


def test_download_404(server, isolated):
    with pytest.raises(DatasetNotFoundError, match="404") as e:
        fashion_mnist.load_data()
    assert "train-images-idx3-ubyte.gz" in str(e.value)
    assert "apt-get install dataset-fashion-mnist" in str(e.value)
    assert os.listdir(isolated / ".fastnn" / "datasets" / "fashion-mnist") == []


# ---------------------------------------------------------------- the real thing

@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason="needs apt package dataset-fashion-mnist")
def test_debian_fashion_mnist(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", DEBIAN_DIR)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
