"""The build and the runtime switches: build_info's contents, the thread count (a setting
that must not change results beyond float reassociation, and never run to run), the CPU
ISA path chosen by set_cpu_isa or by FASTNN_ISA at import, and `python -m fastnn`.
"""
import importlib.metadata
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import ops

ALL_ISAS = ["portable", "avx2", "avx512"]  # every path fastnn knows, worst to best
AVAILABLE = fastnn.build_info()["cpu_isa_available"]
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
MISSING = [isa for isa in ("avx2", "avx512") if isa not in AVAILABLE]
# On x86 a missing path is known but unsupported; elsewhere fastnn does not know it at all.
MISSING_MESSAGE = "'{}' is not supported by this CPU" if X86 else "unknown CPU ISA path '{}'"


def run_python(*args, isa=None):
    """Run the venv's Python in a fresh process, with FASTNN_ISA set to `isa` (or unset)."""
    env = dict(os.environ)
    env.pop("FASTNN_ISA", None)
    if isa is not None:
        env["FASTNN_ISA"] = isa
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def tagged(stdout, tag):
    """The value printed as 'tag=value'. The editable install may print its own rebuild
    lines ("Running cmake --build ...") on import, so search rather than take line 0."""
    values = [line[len(tag) + 1:] for line in stdout.splitlines() if line.startswith(tag + "=")]
    assert values, f"no {tag}= line in:\n{stdout}"
    return values[-1]


# ---- build_info -----------------------------------------------------------------------

def test_build_info():
    info = fastnn.build_info()
    assert isinstance(info["version"], str) and info["version"] == fastnn.__version__
    assert importlib.metadata.version("fastnn") == fastnn.__version__

    available = info["cpu_isa_available"]
    assert isinstance(available, list) and available and available[0] == "portable"
    # A subset of the known paths, in their order (best last), each once.
    assert available == [isa for isa in ALL_ISAS if isa in available]
    assert len(available) == len(set(available)) and set(available) <= set(ALL_ISAS)
    assert info["cpu_isa"] in available and info["cpu_isa"] == fastnn.get_cpu_isa()

    assert type(info["cuda_compiled"]) is bool
    assert type(info["cuda_devices"]) is int and info["cuda_devices"] >= 0
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == 0
    assert type(info["num_threads"]) is int and info["num_threads"] >= 1
    assert info["num_threads"] == fastnn.get_num_threads()


def test_default_isa_is_the_best_available():
    result = run_python("-c", "import fastnn; print('isa=' + fastnn.get_cpu_isa())")
    assert result.returncode == 0, result.stderr
    assert tagged(result.stdout, "isa") == AVAILABLE[-1]


# ---- threads --------------------------------------------------------------------------

@pytest.mark.usefixtures("restore_runtime")
def test_set_num_threads_round_trip():
    for n in (1, 2, 3, 5, 17, 1024):
        fastnn.set_num_threads(n)
        assert fastnn.get_num_threads() == n
        assert fastnn.build_info()["num_threads"] == n


def _inputs():
    """Shapes big enough that every kernel splits across 5 threads: batches of 6+ items,
    and relu over 5 blocks of 16384 elements plus a ragged tail."""
    rng = np.random.default_rng(0)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    return dict(x=f32(6, 9, 9, 5), w=f32(3, 3, 5, 7), b=f32(7), dy=f32(6, 5, 5, 7),
                xd=f32(37, 29), wd=f32(29, 19), bd=f32(19), dyd=f32(37, 19),
                a=f32(45, 33), bt=f32(70, 33), wide=f32(33, 300),
                pool_x=f32(6, 8, 8, 5), relu_x=f32(5 * 16384 + 77),
                logits=f32(37, 10) * 5, labels=rng.integers(0, 10, 37))


INPUTS = _inputs()


def _deterministic(i):
    """Ops whose results must be bitwise equal run to run at a fixed thread count."""
    return {
        "conv2d_backward": ops.conv2d_backward(i["x"], i["w"], i["dy"], strides=(2, 2),
                                               padding="same"),
        "dense_backward": ops.dense_backward(i["xd"], i["wd"], i["dyd"]),
        "softmax_cross_entropy": ops.softmax_cross_entropy(i["logits"], i["labels"]),
        "gemm": (ops.gemm(i["a"], i["bt"], trans_b=True),),
    }


def _thread_invariant(i):
    """Ops with no cross-thread reduction: each output is computed by one thread, so the
    result is bitwise the same for every thread count."""
    return {
        "gemm-split-rows": ops.gemm(i["a"], i["bt"], trans_b=True),
        "gemm-split-columns": ops.gemm(i["a"][:5], i["wide"]),
        "conv2d": ops.conv2d(i["x"], i["w"], i["b"], strides=(2, 2), padding="same"),
        "dense": ops.dense(i["xd"], i["wd"], i["bd"]),
        "maxpool2d": ops.maxpool2d(i["pool_x"], pool_size=3, strides=2),
        "relu": ops.relu(i["relu_x"]),
    }


THREADS = (1, 2, 3, 5)


@pytest.mark.usefixtures("restore_runtime")
@pytest.mark.parametrize("isa", AVAILABLE)
def test_thread_counts(isa):
    fastnn.set_cpu_isa(isa)
    deterministic, invariant = {}, {}
    for n in THREADS:
        fastnn.set_num_threads(n)
        first, second = _deterministic(INPUTS), _deterministic(INPUTS)
        for name in first:
            for got, again in zip(first[name], second[name]):
                assert np.array_equal(got, again), f"{name}: two runs differ with {n} threads"
        deterministic[n], invariant[n] = first, _thread_invariant(INPUTS)

    for n in THREADS[1:]:
        for name, results in invariant[n].items():
            assert np.array_equal(results, invariant[1][name]), f"{name}: {n} threads vs 1"
        # Reductions may be partitioned by thread count: equal up to reassociation, whose
        # error scales with the summed terms, hence atol relative to the largest output.
        for name, results in deterministic[n].items():
            for got, want in zip(results, deterministic[1][name]):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(),
                                           err_msg=f"{name}: {n} threads vs 1")


@pytest.mark.usefixtures("restore_runtime")
def test_more_threads_than_work():
    """64 threads on batches of 6 (and on 2 cores): idle workers must not change a thing."""
    fastnn.set_num_threads(1)
    want = _thread_invariant(INPUTS)
    fastnn.set_num_threads(64)
    for name, got in _thread_invariant(INPUTS).items():
        assert np.array_equal(got, want[name]), name


# ---- CPU ISA selection ----------------------------------------------------------------

@pytest.mark.usefixtures("restore_runtime")
@pytest.mark.parametrize("isa", AVAILABLE)
def test_set_cpu_isa(isa):
    fastnn.set_cpu_isa(isa)
    assert fastnn.get_cpu_isa() == isa
    assert fastnn.build_info()["cpu_isa"] == isa
    x = np.arange(-3, 3, dtype=np.float32)
    assert np.array_equal(ops.relu(x), np.maximum(x, 0))  # the switched-to path runs


@pytest.mark.usefixtures("restore_runtime")
@pytest.mark.parametrize("isa", MISSING or [pytest.param(None, marks=pytest.mark.skip(
    reason="this CPU has every ISA path"))])
def test_set_cpu_isa_refuses_a_missing_path(isa):
    before = fastnn.get_cpu_isa()
    with pytest.raises(ValueError, match=MISSING_MESSAGE.format(isa)):
        fastnn.set_cpu_isa(isa)
    assert fastnn.get_cpu_isa() == before


@pytest.mark.parametrize("isa", AVAILABLE)
def test_fastnn_isa_environment_variable(isa):
    result = run_python("-c", "import fastnn; print('isa=' + fastnn.build_info()['cpu_isa'])",
                        isa=isa)
    assert result.returncode == 0, result.stderr
    assert tagged(result.stdout, "isa") == isa


def test_fastnn_isa_unknown_fails_at_import():
    result = run_python("-c", "import fastnn", isa="bogus")
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "FASTNN_ISA" in error and "bogus" in error
    for known in ALL_ISAS if X86 else ["portable"]:
        assert known in error


@pytest.mark.parametrize("isa", MISSING or [pytest.param(None, marks=pytest.mark.skip(
    reason="this CPU has every ISA path"))])
def test_fastnn_isa_missing_path_fails_at_import(isa):
    result = run_python("-c", "import fastnn", isa=isa)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "FASTNN_ISA" in error and MISSING_MESSAGE.format(isa) in error


# ---- command line ---------------------------------------------------------------------

def test_cli_info():
    result = run_python("-m", "fastnn", "info")
    assert result.returncode == 0, result.stderr
    # Lines are "key   value"; rebuild chatter from the editable install may precede them.
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines()
                  if len(line.split(None, 1)) == 2)
    assert fields["version"] == fastnn.__version__
    assert fields["cpu_isa"] == AVAILABLE[-1]
    assert fields["cpu_isa_available"] == ", ".join(AVAILABLE)
    if hasattr(os, "sched_getaffinity"):  # default threads: the cores this process may use
        assert int(fields["num_threads"]) == len(os.sched_getaffinity(0))


def test_cli_without_command_prints_usage():
    result = run_python("-m", "fastnn")
    assert result.returncode != 0
    assert "usage:" in result.stderr and "info" in result.stderr
