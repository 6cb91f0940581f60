"""Command line: ``python -m fastnn train`` and ``python -m fastnn info``."""
import argparse
import sys

import fastnn
from fastnn import _cli


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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
