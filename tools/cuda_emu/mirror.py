#!/usr/bin/env python3
"""mirror.py — csrc/ through transform.py into a build directory, for FASTNN_CUDA=EMULATE
(emulate.cmake): every source and header keeps its path, each .cu becomes NAME.cu.cpp so
the C++ compiler takes it, and each file starts with #line 1 "its original", so compiler
messages, gdb and ASan point at csrc/. Only files whose text changed are rewritten, so a
rebuild recompiles only what changed.

Usage: mirror.py SRC_DIR DEST_DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transform  # noqa: E402

SUFFIXES = (".h", ".hpp", ".cuh", ".cu", ".cpp", ".cc", ".inc")


def mirror(src_root, dest_root):
    for root, _dirs, files in os.walk(src_root):
        for name in sorted(files):
            if not name.endswith(SUFFIXES):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src_root)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            try:
                text = '#line 1 "%s"\n%s' % (path, transform.transform(text))
            except transform.TransformError as e:
                sys.exit("transform.py: %s: %s" % (path, e))
            dest = os.path.join(dest_root, rel + (".cpp" if name.endswith(".cu") else ""))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.exists(dest):
                with open(dest, encoding="utf-8") as f:
                    if f.read() == text:
                        continue
            with open(dest + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(dest + ".tmp", dest)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    mirror(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
