"""fastnn: hand-written C++/CUDA kernels for training small CNNs, under the Keras API.

``fastnn.models.Sequential`` with ``fastnn.layers`` trains as Keras does, on one compiled
plan (``fastnn._C.Net``); ``fastnn.ops`` runs each kernel alone on NumPy arrays,
``fastnn.reference`` is the NumPy specification every kernel is tested against,
``fastnn.datasets`` loads MNIST and Fashion-MNIST.
"""
import numbers

from fastnn import _C
from fastnn import (activations, callbacks, datasets, initializers, layers, losses, metrics,
                    models, ops, optimizers, reference, utils)
from fastnn.layers import Input
from fastnn.models import Sequential, load_model

__version__ = _C.__version__
__all__ = ["Input", "Sequential", "activations", "build_info", "callbacks", "datasets",
           "get_cpu_isa", "initializers",
           "get_num_threads", "layers", "load_model", "losses", "metrics", "models", "ops",
           "optimizers", "reference", "set_cpu_isa", "set_num_threads", "utils"]


def build_info():
    """What this build of fastnn has and uses: version, CPU ISA paths, CUDA, threads."""
    return _C.build_info()


def get_num_threads():
    """The number of threads the CPU kernels use."""
    return _C.get_num_threads()


def set_num_threads(n):
    """Use ``n`` threads in the CPU kernels (default: the cores this process may use)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n > 1024:  # before the C++ int conversion, which cannot name the problem
        raise ValueError(f"num_threads must be <= 1024, got {n}")
    _C.set_num_threads(int(n))


def get_cpu_isa():
    """The CPU kernel path in use: 'portable', 'avx2' or 'avx512'."""
    return _C.get_cpu_isa()


def set_cpu_isa(name):
    """Force a CPU kernel path, as the environment variable FASTNN_ISA does at import.

    Raises ValueError if the name is unknown or this CPU lacks the instructions.
    """
    if not isinstance(name, str):
        raise TypeError(f"set_cpu_isa: name must be a str, got {type(name).__name__}")
    _C.set_cpu_isa(name)
