"""bench/gpu_check.sh, the whole device check, on a machine without a GPU, and its verdicts
(bench/gpu_check_judge.py) on real and sample pytest outputs and benchmark reports.

Where no GPU is visible the script must stop within 60 s, before building, saying so. Here
that runs for real: a PATH without nvidia-smi (or with one that fails as it does without a
driver) and a python whose `import torch` fails; the script's own detection decides.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
_spec = importlib.util.spec_from_file_location("gpu_check_judge",
                                               ROOT / "bench" / "gpu_check_judge.py")
judge = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(judge)


# ---- no GPU visible: a loud, quick failure before any build ---------------------------------

def _path_without_nvidia_smi(tmp_path):
    """A bin folder holding every command on PATH but nvidia-smi, with python3 and python
    this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = {"nvidia-smi", "python3", "python"}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            if name not in seen and os.path.isfile(path) and os.access(path, os.X_OK):
                seen.add(name)
                (bin_dir / name).symlink_to(path)
    for name in ("python3", "python"):
        (bin_dir / name).symlink_to(sys.executable)
    return bin_dir


def _run_without_gpu(tmp_path, fake_nvidia_smi=None):
    bin_dir = _path_without_nvidia_smi(tmp_path)
    if fake_nvidia_smi is not None:
        (bin_dir / "nvidia-smi").write_text(fake_nvidia_smi)
        (bin_dir / "nvidia-smi").chmod(0o755)
    # `import torch` fails whether or not this interpreter has torch
    hidden = tmp_path / "hide_torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('torch hidden by test_gpu_check')\n")
    site = tmp_path / "site"  # the script replaces this folder when it builds
    site.mkdir()
    (site / "marker").write_text("untouched")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES",)}
    env.update(PATH=str(bin_dir), OUT=str(out), GPU_CHECK_SITE=str(site),
               PYTHONPATH=str(hidden.parent))
    start = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=90)
    seconds = time.monotonic() - start
    return done, seconds, out, site


@pytest.mark.parametrize("nvidia_smi", [
    None,  # not installed
    "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the "
    "NVIDIA driver.\"\nexit 9\n",  # installed, no driver
], ids=["no_nvidia_smi", "nvidia_smi_without_driver"])
def test_no_gpu_fails_fast_before_building(tmp_path, nvidia_smi):
    done, seconds, out, site = _run_without_gpu(tmp_path, nvidia_smi)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert seconds < 60, f"took {seconds:.0f} s"
    assert "no GPU is visible" in output
    assert "torch" in output and "nvidia-smi" in output  # says what it asked
    if nvidia_smi:
        assert "exit 9" in output
    else:
        assert "nvidia-smi: not found" in output
    # nothing was built: no build log, no build section, the install folder left alone
    assert not (out / "build.log").exists()
    assert "== build" not in output
    assert (site / "marker").read_text() == "untouched"
    # the table comes last, with the failure in it
    table = done.stdout.strip().splitlines()
    assert any(re.match(r"GPU visible\s+\|\s+FAIL", line) for line in table), done.stdout
    assert table[-1].startswith("gpu_check: FAILED")


def test_script_passes_bash_n():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---- the sanitizer step selects a real, small set of GPU tests ------------------------------

def _sanitizer_selection():
    """(test files, -k expression) as bash sees the script's SANITIZER_* assignments."""
    lines = [line for line in SCRIPT.read_text().splitlines() if line.startswith("SANITIZER_")]
    assert lines, f"no SANITIZER_TESTS / SANITIZER_K in {SCRIPT}"
    done = subprocess.run(["bash", "-c", "\n".join(lines) + '\nprintf "%s\\n" '
                           '"${SANITIZER_TESTS[@]}" -- "$SANITIZER_K"'],
                          capture_output=True, text=True, check=True)
    values = done.stdout.splitlines()
    split = values.index("--")
    return values[:split], values[split + 1]


def test_sanitizer_selection_is_a_valid_small_set_of_every_op():
    files, expression = _sanitizer_selection()
    assert files and expression
    # collected (and skipped, not deselected) here even without a GPU
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
                           "-p", "no:cacheprovider", *files, "-k", expression],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert 10 <= len(ids) <= 60, ids
    assert all("cuda" in i for i in ids), ids
    functions = {re.sub(r"\[.*", "", i.split("::")[-1]) for i in ids}
    for op in ("conv2d_forward", "conv2d_backward", "gemm", "dense", "maxpool2d", "relu",
               "softmax_cross_entropy", "adam_update"):
        assert f"test_{op}" in functions, f"the sanitizer runs no test_{op}"


# ---- judging pytest ---------------------------------------------------------------------------

@pytest.mark.parametrize("rc, log, status, words", [
    (5, "\nno tests ran in 0.01s\n", "FAIL", "0 tests ran (rc 5"),
    (0, "\nno tests ran in 0.01s\n", "FAIL", "0 tests ran"),
    (0, "0 tests ran", "FAIL", "no pytest summary"),
    (0, "sssss\n5 skipped, 65 deselected in 0.30s\n", "FAIL", "0 tests ran (5 skipped)"),
    (0, "...\n3 passed in 0.50s\n", "PASS", "3 passed"),
    (1, ".F.\n1 failed, 2 passed in 0.50s\n", "FAIL", "1 failed"),
    (0, "..s\n2 passed, 1 skipped in 0.5s\n", "FAIL", "skipped"),
    (2, "==== 1 error in 0.20s ====\n", "FAIL", "interrupted"),
    (1, "==== 2 passed, 1 error in 0.20s ====\n", "FAIL", "1 errors"),
    (4, "ERROR: Wrong expression passed to '-k': n1_ or 7, 13: at column 10: expected end "
        "of input; got ,\n", "FAIL", "usage error"),
    (0, "", "FAIL", "no pytest summary"),
    (1, "...\n3 passed in 0.50s\n", "FAIL", "exited 1"),
])
def test_judge_pytest_summary_lines(rc, log, status, words):
    got, figure = judge.judge_pytest(rc, log)
    assert got == status and words in figure, figure


def test_judge_pytest_allows_skips_only_where_asked():
    assert judge.judge_pytest(0, "2 passed, 1 skipped in 0.5s", allow_skips=True)[0] == "PASS"


def _real_pytest(tmp_path, body, *args):
    """rc, output and JUnit XML of a real pytest run over a test file holding ``body``."""
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "test_sample.py").write_text("import pytest\n" + body)
    junit = folder / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *args], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    xml = junit.read_text() if junit.exists() else None
    return done.returncode, done.stdout + done.stderr, xml


PASSING = "@pytest.mark.parametrize('i', range(3))\ndef test_ok(i):\n    pass\n"
FAILING = PASSING + "def test_bad():\n    assert False\n"
SKIPPING = "@pytest.mark.parametrize('i', range(5))\ndef test_gpu(i):\n    pytest.skip('no GPU')\n"


@pytest.mark.parametrize("body, args, status, words", [
    (PASSING, (), "PASS", "3 passed"),
    (FAILING, (), "FAIL", "3 passed, 1 failed"),
    (SKIPPING, (), "FAIL", "0 tests ran (5 skipped)"),
    (PASSING + SKIPPING, (), "FAIL", "skipped"),
    ("", (), "FAIL", "0 tests ran"),  # rc 5
    (PASSING, ("-k", "ok or 7, 13"), "FAIL", "usage error"),  # rc 4
    (PASSING, ("-k", "nothing_matches"), "FAIL", "0 tests ran"),  # rc 5, all deselected
], ids=["passed", "failed", "skipped", "some_skipped", "empty", "bad_k", "deselected"])
def test_judge_real_pytest_runs(tmp_path, body, args, status, words):
    rc, log, xml = _real_pytest(tmp_path, body, *args)
    for junit in (xml, None):  # from the JUnit XML, and from the summary line alone
        got, figure = judge.judge_pytest(rc, log, junit)
        assert got == status and words in figure, (figure, log)


def test_judge_sanitizer():
    ok = "...\n3 passed in 2.0s\n========= ERROR SUMMARY: 0 errors\n"
    assert judge.judge_sanitizer(0, ok) == ("PASS", "0 sanitizer errors; 3 passed")
    bad = "...\n3 passed in 2.0s\n========= ERROR SUMMARY: 2 errors\n"
    assert judge.judge_sanitizer(9, bad)[0] == "FAIL"
    assert "2 sanitizer error" in judge.judge_sanitizer(9, bad)[1]
    race = ("...\n3 passed in 2.0s\n========= RACECHECK SUMMARY: 1 hazard displayed "
            "(1 error, 0 warnings)\n")
    assert judge.judge_sanitizer(9, race)[0] == "FAIL"
    assert "no compute-sanitizer summary" in judge.judge_sanitizer(0, "3 passed in 1.0s")[1]
    skipped = "sss\n3 skipped in 2.0s\n========= ERROR SUMMARY: 0 errors\n"
    assert judge.judge_sanitizer(0, skipped) == \
        ("FAIL", "0 sanitizer errors; 0 tests ran (3 skipped)")


# ---- judging the build's view of the GPU and the benchmarks -----------------------------------

def test_judge_fastnn_sees_no_gpu_while_torch_does():
    info = {"cuda_compiled": True, "cuda_devices": 0, "cuda_device_names": [],
            "cuda_error": "cudaErrorInsufficientDriver: CUDA driver version is insufficient"}
    status, figure = judge.judge_fastnn_gpu(0, "noise\n" + json.dumps(info) + "\n", "torch")
    assert status == "FAIL"
    assert "fastnn sees no GPU while torch does" in figure
    assert "cudaErrorInsufficientDriver" in figure
    info.update(cuda_devices=1, cuda_device_names=["NVIDIA H200"], cuda_error=None)
    assert judge.judge_fastnn_gpu(0, json.dumps(info), "torch") == \
        ("PASS", "1 device(s): NVIDIA H200; CUDA runtime None")
    assert judge.judge_fastnn_gpu(1, "ImportError: no _C", "torch")[0] == "FAIL"


def _write(tmp_path, name, report):
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return str(path)


def test_judge_train(tmp_path):
    results = [{"contender": c, "batch": b, "images_per_second": s, "fastnn_ratio": r}
               for c, b, s, r in [("fastnn", 64, 1e5, 1.0), ("torch", 64, 5e4, 2.0),
                                  ("fastnn", 1024, 4e5, 1.0), ("torch", 1024, 2e5, 2.0),
                                  ("torch-graph", 1024, 5e5, 0.8)]]
    path = _write(tmp_path, "train.json", {"results": results, "skipped": {"jax": "absent"},
                                           "failed": {}})
    assert judge.judge_train(0, "", path) == \
        ("PASS", "batch 1024: fastnn 400,000 img/s, fastnn/torch-graph 0.80x")
    graph_failed = _write(tmp_path, "t3.json", {"results": results, "skipped": {},
                                                "failed": {"torch-graph": "capture failed"}})
    assert judge.judge_train(1, "", graph_failed) == \
        ("FAIL", "torch-graph failed: capture failed")
    no_fastnn = _write(tmp_path, "t2.json", {"results": results[1:2],
                                             "skipped": {"fastnn": "fastnn sees no CUDA GPU"},
                                             "failed": {}})
    assert judge.judge_train(0, "", no_fastnn) == \
        ("FAIL", "fastnn not timed: fastnn sees no CUDA GPU")
    assert judge.judge_train(0, "", str(tmp_path / "missing.json"))[0] == "FAIL"
    assert judge.judge_train(1, "", path)[0] == "FAIL"


def test_judge_recipe_and_cli(tmp_path):
    recipe = {"results": [{"contender": "fastnn", "seconds": 20.0, "test_accuracy": 0.9},
                          {"contender": "torch", "seconds": 30.0, "test_accuracy": 0.9}],
              "skipped": {}, "failed": {}}
    assert judge.judge_recipe(0, "", _write(tmp_path, "r.json", recipe)) == \
        ("PASS", "fastnn 20.0 s, accuracy 0.9000; torch 30.0 s")
    recipe["results"][0]["test_accuracy"] = 0.1
    assert judge.judge_recipe(0, "", _write(tmp_path, "r.json", recipe))[0] == "FAIL"
    cli = {"test_accuracy": 0.9, "train_images_per_second": 12345.0, "device": "cuda"}
    assert judge.judge_cli(0, "", _write(tmp_path, "c.json", cli))[0] == "PASS"
    assert judge.judge_cli(1, "error: dataset not found", str(tmp_path / "none.json")) == \
        ("FAIL", "exit 1: error: dataset not found")
    assert judge.judge_cli(3, "", str(tmp_path / "none.json")) == ("FAIL", "exit 3: no JSON report")


def test_judge_ops(tmp_path):
    def result(op, speedup, mismatch=False):
        return {"op": op, "direction": "forward", "shape": "1x2", "ms": {"fastnn": 1.0},
                "speedup": {"torch": speedup}, "max_rel_error": 1.0 if mismatch else 1e-7,
                "mismatch": mismatch}
    report = {"results": [result("relu", 2.0), result("gemm", 0.5)], "skipped": {},
              "failed": {}}
    assert judge.judge_ops(0, "", _write(tmp_path, "o.json", report)) == \
        ("PASS", "2 ops, torch/fastnn time: geomean 1.00, worst 0.50 (gemm forward)")
    report["results"][1]["mismatch"] = True
    assert "relative error" in judge.judge_ops(1, "", _write(tmp_path, "o.json", report))[1]
    no_torch = {"results": [result("relu", None)], "skipped": {"torch": "not installed"},
                "failed": {}}
    assert judge.judge_ops(0, "", _write(tmp_path, "o.json", no_torch)) == \
        ("FAIL", "torch not timed: not installed")
    assert judge.judge_ops(1, "error: bench ops --device cuda: no CUDA GPU visible: x",
                           str(tmp_path / "none.json"))[0] == "FAIL"


def test_table_exit_status(tmp_path, capsys):
    def table(*rows):
        path = tmp_path / "rows.tsv"
        path.write_text("".join("\t".join(r) + "\n" for r in rows))
        return judge.main(["table", str(path)])
    ok = ("build", "PASS", "100", "installed", "")
    assert table(ok, ("tf32", "SKIPPED(budget)", "0", "5 s left", "optional")) == 0
    assert table(ok, ("pytest", "FAIL", "3", "0 tests ran", "")) == 1
    assert table(ok, ("pytest", "SKIPPED(budget)", "0", "5 s left", "")) == 1
    out = capsys.readouterr().out
    assert "not run for the time budget: pytest" in out and "FAILED: pytest" in out
    assert re.search(r"^build\s+\| PASS\s+\|\s+100 \| installed$", out, re.MULTILINE)


def test_judge_command_line_prints_one_line(tmp_path):
    log = tmp_path / "log"
    log.write_text("3 passed in 0.1s\n")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check_judge.py"), "pytest",
                           "--rc", "0", "--log", str(log)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "PASS\t3 passed\n", done.stderr
