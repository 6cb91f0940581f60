"""Private helpers of models.Sequential: argument checks, input conversion, batching, and
the Keras-style progress bar.
"""

import numbers
import sys
import time

import numpy as np

from fastnn import _C


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device, where):
    """'cpu' or 'cuda' for compile's ``device``: 'auto' is the GPU when this process sees
    one (and fastnn was built with CUDA), else the CPU. RuntimeError when 'cuda' cannot be."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"{where}: device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    info = _C.build_info()
    if device == "auto":
        return "cuda" if info["cuda_compiled"] and info["cuda_devices"] > 0 else "cpu"
    if device == "cuda" and not info["cuda_compiled"]:
        raise RuntimeError(f"{where}: device='cuda', but this fastnn was built without CUDA (no "
                           f"nvcc when it was installed); reinstall it with the CUDA toolkit on "
                           f"PATH, or use device='cpu' or 'auto'")
    if device == "cuda" and info["cuda_devices"] == 0:
        raise RuntimeError(f"{where}: device='cuda' needs a CUDA GPU, and this process has "
                           f"none: {info['cuda_error']}; use device='cpu' or 'auto'")
    return device


def make_net(layer_specs, input_shape, optimizer_spec, loss_spec, device="cpu"):
    """The compiled training plan: ``_C.Net`` on the CPU or ``_C.CudaNet`` on the GPU
    (csrc/engine/CONTRACT.md)."""
    engine = _C.CudaNet if device == "cuda" else _C.Net
    return engine(layer_specs, input_shape, optimizer_spec, loss_spec)


def chunks(net, steps):
    """(first step, count) runs for the engine: one step at a time on the CPU, so callbacks
    see every batch as it happens; on the GPU about 16 runs per epoch, each enqueued while
    the previous one computes, so reading results never leaves the GPU idle."""
    size = 1 if net.device == "cpu" else max(1, -(-steps // 16))
    return [(first, min(size, steps - first)) for first in range(0, steps, size)]


def inference_chunks(net, steps):
    """Runs for evaluate/predict: one batch at a time on the CPU (callbacks and the progress
    bar see each), all batches in one call on the GPU (nothing to overlap with)."""
    return chunks(net, steps) if net.device == "cpu" else [(0, steps)]


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def int_arg(value, what, minimum, default=None):
    """``value`` as an int >= ``minimum`` (None -> ``default``), else ValueError/TypeError."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def verbose_arg(value, where):
    """Keras's verbose: 'auto' (= 1), 0 silent, 1 progress bar, 2 one line per epoch."""
    if value == "auto":
        return 1
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError(f"{where}: verbose must be 'auto', 0, 1 or 2, got {value!r}")
    return int(value)


def as_inputs(x, input_shape, where):
    """``x`` as C-contiguous float32 of shape (N, *input_shape), N >= 1, all finite."""
    if x is None:
        raise ValueError(f"{where}: x is required")
    if np.iscomplexobj(x):  # float32 conversion would drop the imaginary part silently
        raise TypeError(f"{where}: x must be real, got a complex array")
    try:
        x = np.ascontiguousarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: x must be a numeric array convertible to float32: {e}") from None
    if x.shape[1:] != tuple(input_shape):
        raise ValueError(f"{where}: x must have shape (N, {', '.join(map(str, input_shape))}) for "
                         f"the model's input shape {tuple(input_shape)}, got {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{where}: x is empty (0 samples)")
    if not np.isfinite(x).all():
        bad = np.unravel_index(np.argmax(~np.isfinite(x)), x.shape)
        raise ValueError(f"{where}: x contains NaN or Inf (first at index {tuple(map(int, bad))}: "
                         f"{x[bad]})")
    return x


def batch_count(n, batch_size):
    """Batches of ``batch_size`` in ``n`` samples; the last one may be smaller."""
    return -(-n // batch_size)


def batch_rows(n, batch_size, step):
    """Samples in batch ``step``."""
    return min(batch_size, n - step * batch_size)


# ---------------------------------------------------------------------------
# progress bar
# ---------------------------------------------------------------------------

def _format_value(value):
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _format_eta(seconds):
    if seconds > 3600:
        return f"{seconds // 3600:.0f}:{(seconds % 3600) // 60:02.0f}:{seconds % 60:02.0f}"
    if seconds > 60:
        return f"{seconds // 60:.0f}:{seconds % 60:02.0f}"
    return f"{seconds:.0f}s"


def _format_per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    """Keras's progress bar over ``target`` steps, written to sys.stdout.

    verbose=1 on a terminal (or in Jupyter) redraws one line with '\\r', at most every
    ``interval`` seconds so it costs nothing next to the steps; the line while running,
    then at the end (the only line printed when stdout is not a terminal):
    ``  64/1875 [>.............................] - ETA: 20s - loss: 0.4321 - accuracy: 0.8512``
    ``1875/1875 [==============================] - 12s 6ms/step - loss: 0.1234 - accuracy: 0.9612``
    verbose=2 prints the end line only, as
    ``1875/1875 - 12s - loss: 0.1234 - accuracy: 0.9612 - 12s/epoch - 6ms/step``
    """

    WIDTH = 30

    def __init__(self, target, verbose=1, interval=0.1):
        self.target = target
        self.verbose = verbose
        self.interval = interval
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn_width = 0
        stream = sys.stdout
        self._dynamic = (getattr(stream, "isatty", lambda: False)() or "ipykernel" in sys.modules)

    def update(self, current, values=(), finalize=False):
        """Show ``current`` steps done and the (name, value) pairs; ``finalize`` ends the line."""
        now = time.perf_counter()
        if not finalize and not (self.verbose == 1 and self._dynamic
                                 and now - self._last_draw >= self.interval):
            return
        self._last_draw = now
        elapsed = now - self.start
        metrics = "".join(f" - {name}: {_format_value(value)}" for name, value in values)
        per_step = _format_per_step(elapsed / max(current, 1))
        if self.verbose == 2:
            line = (f"{current}/{self.target} - {elapsed:.0f}s{metrics} - {elapsed:.0f}s/epoch"
                    f" - {per_step}")
        else:
            digits = len(str(self.target))
            done = int(self.WIDTH * current / self.target)
            bar = ("=" * (done - 1) + ("=" if current >= self.target else ">")) if done else ""
            bar += "." * (self.WIDTH - len(bar))
            if finalize:
                timing = f"{elapsed:.0f}s {per_step}"
            else:
                timing = f"ETA: {_format_eta(elapsed / max(current, 1) * (self.target - current))}"
            line = f"{current:{digits}d}/{self.target} [{bar}] - {timing}{metrics}"
        self._write(line, finalize)

    def _write(self, line, finalize):
        stream = sys.stdout
        if self._dynamic and self.verbose == 1:
            # Pad with spaces so a shorter line fully covers the previous one.
            stream.write("\r" + line + " " * max(self._drawn_width - len(line), 0))
            self._drawn_width = len(line)
        else:
            stream.write(line)
        if finalize:
            stream.write("\n")
        stream.flush()
