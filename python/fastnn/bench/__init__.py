"""Benchmarks: fastnn against NumPy (``fastnn.reference``) and PyTorch / Keras when installed.

``python -m fastnn bench train`` (``fastnn.bench.train``): the seed CNN's training throughput.
``python -m fastnn bench ops`` (``fastnn.bench.ops``): each op and direction alone.
They live in the package so that an installed fastnn can run them; ``bench/*.py`` in the
source tree are thin wrappers.
"""
