"""gpu_check_judge.py — the verdicts of bench/gpu_check.sh: each section's outcome from its
exit code, its log and its report (pytest's JUnit XML, a benchmark's JSON), and the final
table. Standard library only: it runs before (and whatever) fastnn is built.

    python3 bench/gpu_check_judge.py KIND --rc N --log LOG [--report PATH] [--seen-by TEXT]
        prints one line "PASS<TAB>key figure" or "FAIL<TAB>why"
    python3 bench/gpu_check_judge.py table ROWS.tsv
        prints the table; exits 1 if a section FAILed or a required one was skipped

A section PASSes only on its real outcome: pytest exited 0, ran tests, none failed or
errored and (on the GPU) none skipped; a benchmark exited 0 and timed fastnn and PyTorch.
"""
import argparse
import json
import math
import re
import sys
import xml.etree.ElementTree as ElementTree

PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED(budget)"
MIN_ACCURACY = 0.85  # the seed recipe reaches 0.90 on Fashion-MNIST in 5 epochs (README)

PYTEST_EXIT = {2: "interrupted (rc 2)", 3: "internal error (rc 3)",
               4: "usage error (rc 4: bad option, -k expression or test id)",
               5: "0 tests ran (rc 5: none collected, or all deselected)"}


# ---------------------------------------------------------------------------
# pytest
# ---------------------------------------------------------------------------

def junit_counts(text):
    """{'passed', 'failed', 'errors', 'skipped'} counted over the <testcase> elements of a
    JUnit XML report, or None when the text is not one."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if "failure" in tags:
            counts["failed"] += 1
        if "error" in tags:
            counts["errors"] += 1
        if "skipped" in tags:
            counts["skipped"] += 1
        if not tags & {"failure", "error", "skipped"}:
            counts["passed"] += 1
    # collection errors have no <testcase>; the suite's attribute counts them
    for suite in root.iter("testsuite"):
        counts["errors"] = max(counts["errors"], int(suite.get("errors", 0) or 0))
    return counts


_SUMMARY_ITEM = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def summary_counts(log):
    """The counts of pytest's last summary line ("3 passed, 1 skipped in 0.2s", "no tests
    ran in 0.01s", "== 2 errors in 1.1s =="), or None when the log has none."""
    for line in reversed(log.splitlines()):
        text = line.strip().strip("=").strip()
        if not re.search(r"\bin [\d.]+s\b", text):
            continue
        if text.startswith("no tests ran"):
            return dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
        items = _SUMMARY_ITEM.findall(text)
        if not items:
            continue
        counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
        for number, word in items:
            word = "errors" if word.startswith("error") else word
            if word in counts:
                counts[word] += int(number)
        return counts
    return None


_ERROR_LINE = re.compile(r"^(error:|ERROR\b|E   |[\w.]*(Error|Exception)(:|$))|: error: ",
                         re.IGNORECASE)


def _first_error(log):
    """The first line of the log that reads as an error, shortened."""
    for line in log.splitlines():
        if _ERROR_LINE.search(line.strip()):
            return line.strip()[:160]
    return ""


def judge_pytest(rc, log, junit=None, allow_skips=False):
    """(PASS or FAIL, key figure) of a pytest run from its exit code, its output and its
    JUnit XML text (preferred over the summary line where it parses)."""
    counts = (junit_counts(junit) if junit else None) or summary_counts(log)
    if rc in PYTEST_EXIT:
        why = PYTEST_EXIT[rc]
        detail = _first_error(log)
        return FAIL, f"{why}: {detail}" if detail else why
    if counts is None:
        return FAIL, f"no pytest summary in the log (rc {rc})"
    figure = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "errors", "skipped")
                       if counts[k])
    if counts["passed"] + counts["failed"] + counts["errors"] == 0:
        skipped = f" ({counts['skipped']} skipped)" if counts["skipped"] else ""
        return FAIL, f"0 tests ran{skipped}"
    if counts["failed"] or counts["errors"]:
        return FAIL, figure
    if counts["skipped"] and not allow_skips:
        return FAIL, f"{figure}: skipped on the GPU"
    if rc != 0:
        return FAIL, f"{figure}, but pytest exited {rc}"
    if counts["passed"] == 0:
        return FAIL, f"0 tests passed ({figure})"
    return PASS, figure


# ---------------------------------------------------------------------------
# compute-sanitizer
# ---------------------------------------------------------------------------

def sanitizer_errors(log):
    """Error counts of every summary compute-sanitizer printed: "ERROR SUMMARY: 0 errors"
    and racecheck's "RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)"."""
    counts = [int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) errors?", log)]
    counts += [int(n) for n in re.findall(r"RACECHECK SUMMARY: .*?\((\d+) errors?", log)]
    return counts


def judge_sanitizer(rc, log, junit=None):
    errors = sanitizer_errors(log)
    status, figure = judge_pytest(0 if rc == 0 else (1 if rc == 9 else rc), log, junit)
    if not errors:
        return FAIL, f"no compute-sanitizer summary in the log (rc {rc}); pytest: {figure}"
    if sum(errors):
        return FAIL, f"{sum(errors)} sanitizer error(s); pytest: {figure}"
    if rc != 0:
        return FAIL, f"compute-sanitizer exited {rc}; pytest: {figure}"
    return status, f"0 sanitizer errors; {figure}"


# ---------------------------------------------------------------------------
# the build and fastnn's view of the GPU
# ---------------------------------------------------------------------------

def judge_build(rc, log):
    if rc == 0:
        return PASS, "installed"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return FAIL, f"exit {rc}: {(errors or lines or ['no output'])[-1][:160]}"


def _last_json(text):
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def judge_fastnn_gpu(rc, log, seen_by):
    """fastnn.build_info() (a JSON line in the log) against who saw a GPU before the build."""
    info = _last_json(log)
    if rc != 0 or info is None:
        return FAIL, f"import fastnn failed (rc {rc}): {_first_error(log) or log.strip()[-160:]}"
    devices = info.get("cuda_devices") or 0
    if devices > 0:
        names = ", ".join(info.get("cuda_device_names") or []) or "?"
        runtime = info.get("cuda_runtime_version")
        return PASS, f"{devices} device(s): {names}; CUDA runtime {runtime}"
    if not info.get("cuda_compiled"):
        return FAIL, f"fastnn was built without CUDA while {seen_by} sees a GPU"
    who = "torch" if seen_by.startswith("torch") else seen_by
    return FAIL, (f"fastnn sees no GPU while {who} does: cuda_error "
                  f"{info.get('cuda_error') or '(none reported)'}")


# ---------------------------------------------------------------------------
# the benchmarks' JSON reports
# ---------------------------------------------------------------------------

def _report(path):
    try:
        with open(path) as file:
            return json.load(file), None
    except (OSError, TypeError):
        return None, "no JSON report"
    except ValueError as error:
        return None, f"unreadable JSON report ({error})"


def _not_timed(report, names):
    """Why the required contenders in ``names`` were not timed, then any other that failed."""
    whys = {**report.get("skipped", {}), **report.get("failed", {})}
    return ([f"{name} not timed: {whys[name]}" for name in names if name in whys]
            + [f"{name} failed: {why}" for name, why in report.get("failed", {}).items()
               if name not in names])


def _fail_reason(rc, log, report_why):
    """Why a benchmark failed: its exit status and its first error line, else the report's
    absence."""
    detail = _first_error(log) or report_why
    return f"exit {rc}" + (f": {detail}" if detail else "")


def judge_train(rc, log, path):
    """bench train --device cuda: fastnn and PyTorch timed; the figure: the largest batch."""
    report, why = _report(path)
    if report is None or rc != 0:
        missing = _not_timed(report, ("fastnn", "torch")) if report else []
        return FAIL, "; ".join(missing) or _fail_reason(rc, log, why)
    missing = _not_timed(report, ("fastnn", "torch"))
    results = report.get("results", [])
    if missing or not results:
        return FAIL, "; ".join(missing) or "no results"
    batch = max(r["batch"] for r in results)
    at = {r["contender"]: r for r in results if r["batch"] == batch}
    if "fastnn" not in at:
        return FAIL, f"fastnn has no result at batch {batch}"
    figure = f"batch {batch}: fastnn {at['fastnn']['images_per_second']:,.0f} img/s"
    peers = [r for name, r in at.items() if name != "fastnn"]
    if peers:
        best = max(peers, key=lambda r: r["images_per_second"])
        figure += f", fastnn/{best['contender']} {best['fastnn_ratio']:.2f}x"
    return PASS, figure


def judge_recipe(rc, log, path):
    report, why = _report(path)
    if report is None or rc != 0:
        missing = _not_timed(report, ("fastnn",)) if report else []
        return FAIL, "; ".join(missing) or _fail_reason(rc, log, why)
    results = {r["contender"]: r for r in report.get("results", [])}
    if "fastnn" not in results:
        return FAIL, "; ".join(_not_timed(report, ("fastnn",))) or "fastnn has no result"
    fast = results["fastnn"]
    figure = f"fastnn {fast['seconds']:.1f} s, accuracy {fast['test_accuracy']:.4f}"
    peers = [r for name, r in results.items() if name != "fastnn"]
    if peers:
        best = min(peers, key=lambda r: r["seconds"])
        figure += f"; {best['contender']} {best['seconds']:.1f} s"
    if fast["test_accuracy"] < MIN_ACCURACY:
        return FAIL, f"test accuracy below {MIN_ACCURACY}: {figure}"
    return PASS, figure


def judge_cli(rc, log, path):
    report, why = _report(path)
    if report is None or rc != 0:
        return FAIL, _fail_reason(rc, log, why)
    figure = (f"test accuracy {report['test_accuracy']:.4f}, "
              f"{report['train_images_per_second']:,.0f} img/s on {report.get('device')}")
    if report.get("device") != "cuda":
        return FAIL, f"trained on {report.get('device')}, not cuda: {figure}"
    if report["test_accuracy"] < MIN_ACCURACY:
        return FAIL, f"test accuracy below {MIN_ACCURACY}: {figure}"
    return PASS, figure


def judge_ops(rc, log, path):
    """bench ops --device cuda: every op timed for fastnn and PyTorch, every result checked;
    the figure: the geometric mean and the worst of torch time / fastnn time."""
    report, why = _report(path)
    if report is None:
        return FAIL, _fail_reason(rc, log, why)
    results = report.get("results", [])
    problems = _not_timed(report, ("torch",))
    problems += [f"{r['op']} {r['direction']} {r['shape']}: relative error "
                 f"{r['max_rel_error']:.2g}" for r in results if r.get("mismatch")]
    if rc != 0 or problems or not results:
        return FAIL, "; ".join(problems) or _fail_reason(rc, log, "" if results else "no results")
    ratios = [(r["speedup"]["torch"], f"{r['op']} {r['direction']}") for r in results
              if r.get("speedup", {}).get("torch")]
    if len(ratios) != len(results):
        return FAIL, f"PyTorch timed {len(ratios)} of {len(results)} ops"
    mean = math.exp(sum(math.log(r) for r, _ in ratios) / len(ratios))
    worst = min(ratios)
    return PASS, (f"{len(results)} ops, torch/fastnn time: geomean {mean:.2f}, "
                  f"worst {worst[0]:.2f} ({worst[1]})")


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------

def read_rows(path):
    """Rows (name, status, seconds, figure, optional) of the TSV gpu_check.sh writes."""
    rows = []
    with open(path) as file:
        for line in file:
            cells = line.rstrip("\n").split("\t")
            if len(cells) >= 4:
                rows.append((cells[0], cells[1], cells[2], cells[3],
                             len(cells) > 4 and cells[4] == "optional"))
    return rows


def table(rows, out=None):
    """Print the table; the exit status: 1 if any section FAILed or a required one was
    skipped for the budget (or there are no rows), else 0."""
    out = out or sys.stdout
    headers = ("section", "result", "seconds", "key figure")
    cells = [(name, status, seconds, figure) for name, status, seconds, figure, _ in rows]
    widths = [max(len(row[i]) for row in [headers, *cells]) for i in range(3)]
    for row in [headers, tuple("-" * w for w in widths) + ("-" * 10,), *cells]:
        print(f"{row[0]:<{widths[0]}} | {row[1]:<{widths[1]}} | {row[2]:>{widths[2]}} | "
              f"{row[3]}".rstrip(), file=out)
    failed = [name for name, status, _, _, _ in rows if status == FAIL]
    skipped = [name for name, status, _, _, optional in rows if status == SKIPPED and not optional]
    if failed or skipped or not rows:
        parts = ([f"FAILED: {', '.join(failed)}"] if failed else []) + \
                ([f"not run for the time budget: {', '.join(skipped)}"] if skipped else [])
        print("gpu_check: " + ("; ".join(parts) or "no sections"), file=out)
        return 1
    print(f"gpu_check: all {len(rows)} sections passed"
          + (" (optional ones skipped for the budget)" if any(r[1] == SKIPPED for r in rows)
             else ""), file=out)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("pytest", "pytest-allow-skips", "sanitizer", "build",
                                         "fastnn-gpu", "train", "recipe", "cli", "ops", "table"))
    parser.add_argument("rows", nargs="?", help="table: the TSV of rows")
    parser.add_argument("--rc", type=int, default=0)
    parser.add_argument("--log", help="the section's output")
    parser.add_argument("--report", help="its JUnit XML or JSON report")
    parser.add_argument("--seen-by", default="torch", help="fastnn-gpu: who saw a GPU")
    args = parser.parse_args(argv)
    if args.kind == "table":
        return table(read_rows(args.rows))

    def read(path):
        try:
            with open(path, errors="replace") as file:
                return file.read()
        except (OSError, TypeError):
            return ""
    log = read(args.log)
    if args.kind in ("pytest", "pytest-allow-skips"):
        verdict = judge_pytest(args.rc, log, read(args.report) if args.report else None,
                               allow_skips=args.kind == "pytest-allow-skips")
    elif args.kind == "sanitizer":
        verdict = judge_sanitizer(args.rc, log, read(args.report) if args.report else None)
    elif args.kind == "build":
        verdict = judge_build(args.rc, log)
    elif args.kind == "fastnn-gpu":
        verdict = judge_fastnn_gpu(args.rc, log, args.seen_by)
    else:
        verdict = {"train": judge_train, "recipe": judge_recipe, "cli": judge_cli,
                   "ops": judge_ops}[args.kind](args.rc, log, args.report)
    status, figure = verdict
    print(f"{status}\t{' '.join(str(figure).split())}")  # one line, no tabs
    return 0


if __name__ == "__main__":
    sys.exit(main())
