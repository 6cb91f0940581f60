"""Command line: ``python -m fastnn train``, ``python -m fastnn bench [train|ops]`` and
``python -m fastnn info``."""
import argparse
import sys

import fastnn
from fastnn import _cli
from fastnn.bench import ops as bench_ops, train as bench_train


def info(_args):
    for key, value in fastnn.build_info().items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        print(f"{key:22} {value}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=fastnn.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the build: version, CPU ISA paths, CUDA, threads").set_defaults(run=info)
    _cli.add_train_parser(commands)
    bench = commands.add_parser(
        "bench", help="benchmarks against NumPy and PyTorch: training throughput, single ops",
        description="Benchmark fastnn against its NumPy reference, and PyTorch and Keras "
                    "when they are installed.")
    bench.set_defaults(run=bench_both)  # no suite named: both, with their defaults
    suites = bench.add_subparsers(dest="suite")
    for name, module, help_text in (
            ("train", bench_train, "the seed CNN's training throughput (images/s)"),
            ("ops", bench_ops, "each op and direction alone at the seed CNN's shapes")):
        module.build_parser(suites.add_parser(name, help=help_text,
                                              description=module.DESCRIPTION))
    args = parser.parse_args(argv)
    return args.run(args)


def bench_both(_args):
    """``python -m fastnn bench``: the training benchmark, then the ops benchmark."""
    status = bench_train.main([])
    print()
    return status or bench_ops.main([])


if __name__ == "__main__":
    sys.exit(main())
