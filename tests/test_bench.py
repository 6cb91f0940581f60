"""Smoke tests of the benchmarks (fastnn.bench, ``python -m fastnn bench``, bench/*.py).

Each runs in-process with tiny settings and checks the JSON report: the expected contenders
(PyTorch and Keras only where they import) and positive numbers. No timing asserts: speed
is what the benchmarks report, not what the tests check.
"""
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fastnn
from fastnn import __main__ as cli, reference
from fastnn.bench import ops as bench_ops, train as bench_train

OPTIONAL = {name for name in ("torch", "keras") if importlib.util.find_spec(name) is not None}
TINY_OPS = ["--budget", "0.001", "--samples", "1", "--threads", "1"]
HAS_GPU = fastnn.build_info()["cuda_devices"] > 0


def test_train_reports_every_contender_per_batch(tmp_path, restore_runtime):
    path = tmp_path / "train.json"
    status = bench_train.main(["--batch", "16", "32", "--images", "32", "--numpy-images", "16",
                               "--rounds", "1", "--data", "random", "--threads", "1",
                               "--json", str(path)])
    assert status == 0
    report = json.loads(path.read_text())
    assert report["data"] == "random" and report["parameters"] == 93_322
    assert report["machine"]["num_threads"] == 1
    assert set(report["skipped"]) == {"torch", "keras"} - OPTIONAL
    for batch in (16, 32):
        results = {r["contender"]: r for r in report["results"] if r["batch"] == batch}
        assert set(results) == {"fastnn", "numpy"} | OPTIONAL
        assert results["fastnn"]["fastnn_ratio"] == 1.0
        # whole batches only, at least one: NumPy's 16 images become 32 at batch 32
        assert results["numpy"]["images"] == batch
        for result in results.values():
            assert result["images_per_second"] > 0 and result["fastnn_ratio"] > 0
            assert len(result["rounds_images_per_second"]) == 1


def test_ops_covers_every_op(tmp_path, restore_runtime):
    path = tmp_path / "ops.json"
    assert bench_ops.main([*TINY_OPS, "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    names = {(r["op"], r["direction"]) for r in report["results"]}
    newer = {("softmax", "forward"), ("dropout", "forward"), ("sgd_update", "update")}
    # issue 12's: activations, the softmax's gradient, average pooling (a 2x2 and a global
    # one), batch normalisation, and the losses (sigmoid cross-entropy at 1 and 10 outputs)
    layers = {(op, d) for op in ("sigmoid", "tanh", "gelu", "swish", "avgpool2d", "batchnorm")
              for d in ("forward", "backward")} | {("softmax", "backward")}
    losses = {("categorical_xent", "fused"), ("sigmoid_xent", "fused"),
              ("mean_squared_error", "fused")}
    augment = {("augment_rotation", "forward"), ("augment_contrast", "forward")}
    assert names == {(op, d) for op in ("conv2d", "maxpool2d", "dense", "relu")
                     for d in ("forward", "backward")} | {
        ("softmax_xent", "fused"), ("adam_update", "update"), ("gemm", "forward")} | newer | \
        layers | losses | augment
    assert len(report["results"]) == 19 + len(newer) + 19 + len(augment)
    contenders = {"fastnn", "numpy"} | (OPTIONAL & {"torch"})
    for result in report["results"]:
        assert set(result["ms"]) == contenders and min(result["ms"].values()) > 0
        assert set(result["speedup"]) == contenders - {"fastnn"}
        assert min(result["speedup"].values(), default=1) > 0
        # each fastnn result is checked once against fastnn.reference
        assert result["max_rel_error"] < bench_ops.TOLERANCE and not result["mismatch"]
    assert report["device"] == "cpu" and report["failed"] == {}
    assert report["floor"]["sgemm_gflops"] > 0
    assert round(report["floor"]["train_flop_per_image"] / 1e6, 1) == 16.4  # as DESIGN.md says


def test_ops_without_torch_skips_it(tmp_path, monkeypatch, capsys, restore_runtime):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    path = tmp_path / "ops.json"
    assert bench_ops.main([*TINY_OPS, "--filter", "relu forward", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert "torch" in report["skipped"] and report["machine"]["torch"] is None
    assert [set(r["ms"]) for r in report["results"]] == [{"fastnn", "numpy"}]
    assert "skipped PyTorch" in capsys.readouterr().out


def test_cli_bench_json_to_stdout(capsys, restore_runtime):
    assert cli.main(["bench", "ops", *TINY_OPS, "--filter", "softmax_xent", "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # the table went to stderr
    assert [r["op"] for r in report["results"]] == ["softmax_xent"]
    assert "softmax_xent" in captured.err


def test_ops_filter_matching_nothing_fails(capsys):
    assert bench_ops.main(["--filter", "no such op"]) == 2
    assert "no op matches" in capsys.readouterr().err


def test_source_tree_wrapper_runs():
    script = Path(__file__).resolve().parent.parent / "bench" / "bench_ops.py"
    done = subprocess.run([sys.executable, str(script), *TINY_OPS, "--filter", "adam"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "adam_update" in done.stdout


def test_cli_bench_without_a_suite_runs_both(monkeypatch):
    ran = []
    monkeypatch.setattr(bench_train, "main", lambda argv: ran.append(("train", argv)) or 0)
    monkeypatch.setattr(bench_ops, "main", lambda argv: ran.append(("ops", argv)) or 0)
    assert cli.main(["bench"]) == 0
    assert ran == [("train", []), ("ops", [])]


def test_ops_batch_sizes(tmp_path, restore_runtime):
    path = tmp_path / "ops.json"
    assert bench_ops.main([*TINY_OPS, "--batch", "2", "3", "--filter", "relu forward",
                           "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert [r["shape"] for r in report["results"]] == ["2x26x26x32", "3x26x26x32"]
    assert report["batches"] == [2, 3]


def test_ops_a_wrong_result_fails(monkeypatch, capsys, restore_runtime):
    monkeypatch.setattr(reference, "relu", lambda x: 2 * x)  # the reference disagrees
    assert bench_ops.main([*TINY_OPS, "--filter", "relu forward"]) == 1
    assert "MISMATCH relu forward" in capsys.readouterr().out


class KernelTimer:
    """A stand-in for fastnn._C's kernel timer (time_kernels, last_kernel_seconds), around
    the real _C."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(bench_ops.ops._C, name)

    def time_kernels(self, repeats):
        self.calls.append(repeats)

    def last_kernel_seconds(self):
        return 2.5e-6


def test_ops_cpu_kernel_time_column_where_c_has_the_timer(tmp_path, monkeypatch, capsys,
                                                          restore_runtime):
    timer = KernelTimer()
    monkeypatch.setattr(bench_ops, "_C", timer)
    path = tmp_path / "ops.json"
    assert bench_ops.main([*TINY_OPS, "--filter", "relu backward", "--json", str(path)]) == 0
    [result] = json.loads(path.read_text())["results"]
    assert result["kernel_ms"] == pytest.approx(2.5e-3)
    assert timer.calls and timer.calls[-1] == 0  # switched off again after each op call
    assert all(r > 0 for r in timer.calls[::2]) and set(timer.calls[1::2]) == {0}
    assert "fastnn kernel ms" in capsys.readouterr().out


def test_ops_cpu_without_the_timer_has_no_kernel_column(tmp_path, monkeypatch, restore_runtime):
    monkeypatch.setattr(bench_ops, "_C", types.SimpleNamespace())
    path = tmp_path / "ops.json"
    assert bench_ops.main([*TINY_OPS, "--filter", "relu forward", "--json", str(path)]) == 0
    assert "kernel_ms" not in json.loads(path.read_text())["results"][0]


# ---- bench ops --device cuda -------------------------------------------------------------------

@pytest.mark.skipif(HAS_GPU, reason="this process has a GPU")
def test_ops_cuda_without_a_gpu_refuses_clearly(capsys):
    assert cli.main(["bench", "ops", "--device", "cuda"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: bench ops --device cuda: no CUDA GPU visible: ")
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.skipif(HAS_GPU, reason="this process has a GPU")
def test_ops_cuda_without_a_gpu_exits_without_a_traceback():
    done = subprocess.run([sys.executable, "-m", "fastnn", "bench", "ops", "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no CUDA GPU visible" in done.stderr and "Traceback" not in done.stderr


def _fake_build_info(monkeypatch, **values):
    info = dict(fastnn.build_info(), cuda_compiled=True, cuda_device_names=["a GPU"], **values)
    monkeypatch.setattr(fastnn, "build_info", lambda: dict(info))


def test_ops_cuda_refusal_names_the_cuda_error(monkeypatch, capsys):
    _fake_build_info(monkeypatch, cuda_devices=0,
                     cuda_error="cudaErrorInsufficientDriver: driver too old for this runtime")
    assert bench_ops.main(["--device", "cuda"]) == 1
    assert "no CUDA GPU visible: fastnn sees no CUDA device: cudaErrorInsufficientDriver" in \
        capsys.readouterr().err


def test_ops_cuda_without_the_kernel_timer_refuses(monkeypatch, capsys):
    _fake_build_info(monkeypatch, cuda_devices=1, cuda_error=None)
    monkeypatch.setattr(bench_ops, "_C", types.SimpleNamespace())
    assert bench_ops.main(["--device", "cuda"]) == 1
    assert "no kernel timer (time_kernels, last_kernel_seconds)" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU in this process")
def test_ops_cuda_tiny_run(tmp_path, restore_runtime):
    path = tmp_path / "ops.json"
    assert bench_ops.main(["--device", "cuda", "--batch", "1", "--filter", "relu", *TINY_OPS,
                           "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["device"] == "cuda"
    assert [(r["op"], r["direction"]) for r in report["results"]] == \
        [("relu", "forward"), ("relu", "backward")]
    torch_on_gpu = "torch" not in report["skipped"]
    for result in report["results"]:
        assert set(result["ms"]) == {"fastnn"} | ({"torch"} if torch_on_gpu else set())
        assert min(result["ms"].values()) > 0 and not result["mismatch"]
        assert result["repeats"]["fastnn"] >= 1
