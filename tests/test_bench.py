"""Smoke tests of the benchmarks (fastnn.bench, ``python -m fastnn bench``, bench/*.py).

Each runs in-process with tiny settings and checks the JSON report: the expected contenders
(PyTorch and Keras only where they import) and positive numbers. No timing asserts: speed
is what the benchmarks report, not what the tests check.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from fastnn import __main__ as cli
from fastnn.bench import ops as bench_ops, train as bench_train

OPTIONAL = {name for name in ("torch", "keras") if importlib.util.find_spec(name) is not None}
TINY_OPS = ["--budget", "0.001", "--samples", "1", "--threads", "1"]


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
    assert names == {(op, d) for op in ("conv2d", "maxpool2d", "dense", "relu")
                     for d in ("forward", "backward")} | {
        ("softmax_xent", "fused"), ("adam_update", "update"), ("gemm", "forward")}
    assert len(report["results"]) == 19
    contenders = {"fastnn", "numpy"} | (OPTIONAL & {"torch"})
    for result in report["results"]:
        assert set(result["ms"]) == contenders and min(result["ms"].values()) > 0
        assert set(result["speedup"]) == contenders - {"fastnn"}
        assert min(result["speedup"].values(), default=1) > 0
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
    assert cli.main(["bench", "ops", *TINY_OPS, "--filter", "softmax", "--json", "-"]) == 0
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
