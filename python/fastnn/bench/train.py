"""``python -m fastnn bench train``: the seed CNN's training throughput in images/s
(``--model batchnorm``: a Keras-style BatchNorm CNN's, conv -> BN -> ReLU -> pool blocks).

On the CPU (the default): fastnn through its Keras-style API (``model.fit``), the NumPy
reference training step (``fastnn.reference_net.ReferenceNet``), and PyTorch and Keras when
they import. Each round times every contender once, in rotating order, so a noisy
neighbour hits all of them alike; the table gives the median round.

With ``--device cuda``: the training set is resident on the GPU before the clock starts,
and fastnn (its engine's ``train_steps``) runs against PyTorch eager, PyTorch with the whole
step captured as one CUDA graph, a jitted JAX step and a whole JAX epoch as one jitted
``lax.scan``. ``--recipe`` instead times the seed recipe end to end: 5 epochs of
Fashion-MNIST at batch 64, then the test accuracy. bench/NOTES.md ("GPU training bench")
says what each contender does.
"""

import argparse
import functools
import gc
import itertools
import os
import statistics
import sys
import time
import traceback

import numpy as np

import fastnn
from fastnn import datasets, optimizers, utils
from fastnn._seed_cnn import seed_cnn
from fastnn.bench import _common
from fastnn.reference_net import ReferenceNet

DESCRIPTION = "Time training the seed CNN (images/s): on the CPU, fastnn's model.fit against " \
              "the NumPy reference step, PyTorch and Keras; with --device cuda, fastnn on " \
              "the GPU against PyTorch (eager and CUDA graph) and JAX (jit step and scan), " \
              "the data resident on the GPU; --recipe: 5 epochs of Fashion-MNIST, wall time " \
              "and test accuracy."
# How "fastnn is 2.31x PyTorch" names each contender.
SHORT_NAMES = {"fastnn": "fastnn", "numpy": "NumPy", "torch": "PyTorch", "keras": "Keras",
               "torch-graph": "PyTorch graph", "jax": "JAX jit", "jax-scan": "JAX scan"}
# Keras's Adam, as fastnn's and every contender's.
LEARNING_RATE, BETA_1, BETA_2, EPSILON = 1e-3, 0.9, 0.999, 1e-7
RECIPE_BATCH = 64
EVAL_BATCH = 1000  # the peers' test-set batches: 10 equal ones, one shape to tune or compile
DEFAULT_IMAGES = {"cpu": 2560, "cuda": 20480}  # 20480: whole batches of 64, 256 and 1024


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="python -m fastnn bench train", description=DESCRIPTION)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: fastnn's model.fit against NumPy, PyTorch and Keras on the "
                             "CPU; cuda: fastnn on the GPU against PyTorch and JAX on the GPU, "
                             "the training data resident there (default: cpu)")
    parser.add_argument("--model", choices=tuple(MODELS), default="seed",
                        help="seed: the seed CNN; batchnorm: two conv -> BatchNormalization -> "
                             "ReLU -> max-pool blocks and the seed CNN's dense head (CPU only; "
                             "default: seed)")
    parser.add_argument("--batch", type=_common.positive_int, nargs="+", default=[64],
                        help="batch sizes, e.g. --batch 64 256 1024 (default: 64)")
    # Many short rounds rather than a few long ones: on a shared machine a burst of
    # someone else's work then spoils a round of each contender, not all of one.
    parser.add_argument("--images", type=_common.positive_int,
                        help="images per contender and round (on cuda: the resident training "
                             "set, one shuffled epoch over it per round), rounded down to "
                             "whole batches (default: 2560 on cpu, 20480 on cuda; with "
                             "--recipe: the first N training images, default all 60,000)")
    parser.add_argument("--numpy-images", type=_common.positive_int, default=640,
                        help="images per round for the slower NumPy step (default: 640)")
    parser.add_argument("--rounds", type=_common.positive_int, default=7,
                        help="timed rounds; the median is reported (default: 7)")
    parser.add_argument("--data", choices=("auto", "fashion-mnist", "random"), default="auto",
                        help="auto: Fashion-MNIST if it is on this machine, else random "
                             "images (default: auto)")
    parser.add_argument("--recipe", action="store_true",
                        help="with --device cuda: time the seed recipe instead (Fashion-MNIST, "
                             "batch 64, --epochs epochs, then the test accuracy): wall seconds "
                             "from the start of training, data upload included, to the test "
                             "accuracy, for fastnn's fit/evaluate, PyTorch eager, PyTorch CUDA "
                             "graph and JAX scan")
    parser.add_argument("--epochs", type=_common.positive_int, default=5,
                        help="epochs of the --recipe run (default: 5)")
    parser.add_argument("--tf32", action="store_true",
                        help="with --device cuda: let PyTorch and JAX use TF32 tensor cores for "
                             "convolutions and matrix products, as they do by default on "
                             "Ampere and later (default: full float32, as fastnn computes)")
    parser.add_argument("--peers-on-cpu", action="store_true",
                        help="development smoke test of the --device cuda code without a GPU: "
                             "the PyTorch eager and JAX contenders run on the CPU, fastnn and "
                             "the CUDA graph are skipped; the numbers mean nothing")
    _common.add_runtime_arguments(parser)
    parser.set_defaults(run=main_args)
    return parser


def main(argv=None):
    return main_args(build_parser().parse_args(argv))


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def load_images(choice, count):
    """(x (count, 28, 28, 1) float32 in [0, 1], int32 labels, what they are)."""
    if choice != "random":
        try:
            (x, y), _ = _load_fashion_mnist(offline=choice == "auto")
        except datasets.DatasetNotFoundError:
            if choice == "fashion-mnist":
                raise
        else:
            rows = np.arange(count) % len(x)  # repeats the set if more images are asked for
            return (x[rows].reshape(-1, 28, 28, 1).astype(np.float32) / 255,
                    y[rows].astype(np.int32), "fashion-mnist")
    rng = np.random.default_rng(0)
    return (rng.random((count, 28, 28, 1), dtype=np.float32),
            rng.integers(0, 10, count).astype(np.int32), "random")


def _load_fashion_mnist(offline):
    """Fashion-MNIST from disk; with offline, never a download as a benchmark's side effect."""
    saved = os.environ.get("FASTNN_OFFLINE")
    if offline:
        os.environ["FASTNN_OFFLINE"] = "1"
    try:
        return datasets.fashion_mnist.load_data()
    finally:
        if saved is None:
            os.environ.pop("FASTNN_OFFLINE", None)
        else:
            os.environ["FASTNN_OFFLINE"] = saved


# ---------------------------------------------------------------------------
# the models: one builder over a layers module, so fastnn and Keras build the same stack
# ---------------------------------------------------------------------------

def batchnorm_cnn_layers(L):
    """A Keras-style BatchNorm CNN: conv (no bias: BN's beta is one) -> BN -> ReLU -> pool,
    twice, then the seed CNN's third conv and dense head (93,610 parameters, 192 of them
    moving statistics)."""
    return [L.Input((28, 28, 1)),
            L.Conv2D(32, (3, 3), use_bias=False), L.BatchNormalization(), L.Activation("relu"),
            L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), use_bias=False), L.BatchNormalization(), L.Activation("relu"),
            L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"), L.Flatten(),
            L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")]


def seed_cnn_layers(L):
    return [L.Input((28, 28, 1)),
            L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"), L.Flatten(),
            L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")]


MODELS = {"seed": ("the seed CNN", seed_cnn_layers),
          "batchnorm": ("a BatchNorm CNN", batchnorm_cnn_layers)}


def build_model(name):
    """fastnn's model ``name`` (MODELS), uncompiled; the seed CNN as the train command builds it."""
    if name == "seed":
        return seed_cnn()
    return fastnn.Sequential(MODELS[name][1](fastnn.layers))


# ---------------------------------------------------------------------------
# CPU contenders: setup(x, y, batch) -> train(n), one epoch over the first n images, shuffled
# ---------------------------------------------------------------------------

def _fastnn_model(device="cpu", metrics=None, model=None):
    """The seed model (or ``model``) compiled for ``device``: never 'auto', so that the CPU
    benchmark stays on the CPU on a machine with a GPU."""
    model = model or seed_cnn()
    model.compile(optimizer=optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=EPSILON),
                  loss="sparse_categorical_crossentropy", metrics=metrics, device=device)
    return model


def setup_fastnn(x, y, batch, model_name="seed"):
    model = _fastnn_model(model=build_model(model_name))
    return lambda n: model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0)


def setup_numpy(x, y, batch, model_name="seed"):
    model = _fastnn_model(model=build_model(model_name))
    net = ReferenceNet(model._engine_layers(), model.input_shape[1:],
                       model.optimizer.engine_spec(), model._engine_loss())
    # The same Glorot-initialised start as fastnn's; all-zero weights would be a dead net.
    for param, value in zip(net.parameters(), model.get_weights()):
        param[...] = value
    rng = np.random.default_rng(0)

    def train(n):
        order = rng.permutation(n)  # shuffled batches, as fit does
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            net.train_step(x[rows], y[rows])
    return train


def torch_seed_cnn(torch, weights=None):
    """The seed CNN in PyTorch (NCHW, torch's own layout); with ``weights`` (fastnn's,
    Keras layouts) loaded so that it computes exactly what fastnn's model does."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))
    if weights is not None:
        k1, b1, k2, b2, k3, b3, d1, c1, d2, c2 = weights
        values = [k.transpose(3, 2, 0, 1) for k in (k1, k2, k3)]  # HWIO -> OIHW
        # Dense 1's rows follow Keras's flatten order (h, w, c) of conv 3's 3x3x64 output;
        # torch flattens (c, h, w).
        values += [d1.reshape(3, 3, 64, 64).transpose(3, 2, 0, 1).reshape(64, 576), d2.T]
        layers = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for layer, kernel, bias in zip(layers, values, (b1, b2, b3, c1, c2)):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                layer.bias.copy_(torch.from_numpy(bias))
    return model


def torch_batchnorm_cnn(torch):
    """batchnorm_cnn_layers in PyTorch, with Keras's BatchNormalization numbers (torch's
    momentum is Keras's 1 - momentum)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=1e-3, momentum=0.01), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))


def setup_torch(torch, x, y, batch, model_name="seed"):
    torch.manual_seed(0)
    model = torch_seed_cnn(torch) if model_name == "seed" else torch_batchnorm_cnn(torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=EPSILON)
    loss_fn = torch.nn.CrossEntropyLoss()  # on logits: softmax and cross-entropy fused, as fastnn
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW, torch's own
    labels = torch.from_numpy(y.astype(np.int64))

    def train(n):
        order = torch.randperm(n)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images[rows]), labels[rows]).backward()
            optimizer.step()
    return train


def setup_keras(keras, x, y, batch, model_name="seed"):
    model = keras.Sequential(MODELS[model_name][1](keras.layers))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=EPSILON),
                  loss="sparse_categorical_crossentropy")
    return lambda n: model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0)


def import_keras(threads):
    """(keras, None), or (None, why it is skipped)."""
    try:
        import keras
    except ImportError as error:
        return None, f"Keras/TensorFlow is not installed ({error})"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already started: it keeps its own thread count
            pass
    return keras, None


# ---------------------------------------------------------------------------
# device contenders. Each holds a model and its Adam state on one device and offers:
#   load(x, y)                     upload the training set (NHWC float32, int32 labels) once
#   epoch(batch, steps, seed)      train the first `steps` whole batches of the epoch that
#                                  `seed` shuffles; returns with the device idle (synchronised);
#                                  record=True returns the per-step losses
#   accuracy(x, y)                 test accuracy (the recipe)
# Compiling, cuDNN autotuning and graph capture happen inside the first epoch call.
# ---------------------------------------------------------------------------

class FastnnOnDevice:
    """fastnn's engine with the data resident: ``net.dataset`` uploads once, ``train_steps``
    enqueues a run of steps and returns, ``step_results`` waits for them."""

    def __init__(self, model):
        self.net = model._ensure_net()  # a model compiled with device='cuda'

    def load(self, x, y):
        self.dataset = self.net.dataset(x, y)

    def epoch(self, batch, steps, seed, record=False):
        self.net.train_steps(self.dataset, batch, seed, 0, steps)
        loss, _correct = self.net.step_results(0, steps)
        return np.asarray(loss) if record else None


class TorchPeer:
    """PyTorch on ``device``: eager (one Python step per batch, fused Adam on CUDA), or with
    ``graph`` the whole step captured once as a CUDA graph and replayed per batch."""

    WARMUP_STEPS = 3  # eager steps on a side stream before capture, as PyTorch's docs do

    def __init__(self, torch, device, weights, graph=False):
        self.torch, self.device, self.graph = torch, torch.device(device), graph
        self.cuda = self.device.type == "cuda"
        self.model = torch_seed_cnn(torch, weights).to(self.device)
        adam = {"capturable": True} if graph else {"fused": True} if self.cuda else {}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE,
                                          betas=(BETA_1, BETA_2), eps=EPSILON, **adam)
        self.loss_fn = torch.nn.CrossEntropyLoss()  # on logits: softmax + cross-entropy fused
        self.captured = None  # (batch, graph, static x, static labels, static loss)

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def _upload(self, x, y):
        """NHWC float32 and int labels -> NCHW (torch's default layout) and int64 on the device.
        The NHWC bytes go up as they are; the layout changes there. (With one channel the
        permuted view would pass for channels_last too, and cuDNN would run the whole net in
        that layout: the explicit copy pins it to NCHW.)"""
        images = self.torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2)
        return (images.clone(memory_format=self.torch.contiguous_format),
                self.torch.from_numpy(y.astype(np.int64)).to(self.device))

    def load(self, x, y):
        self.images, self.labels = self._upload(x, y)
        self.sync()

    def _step(self, rows):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self.images[rows]), self.labels[rows])
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _capture(self, batch, order, steps):
        """Train the epoch's first steps eagerly on a side stream (cuDNN picks its
        algorithms, Adam makes its state), then capture one whole step; their losses."""
        torch = self.torch
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            losses = [self._step(order[s * batch:(s + 1) * batch])
                      for s in range(min(self.WARMUP_STEPS, steps))]
        torch.cuda.current_stream(self.device).wait_stream(side)
        static_x = torch.empty((batch,) + tuple(self.images.shape[1:]), device=self.device)
        static_y = torch.empty(batch, dtype=torch.int64, device=self.device)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad in the graph's pool
        with torch.cuda.graph(graph):
            static_loss = self.loss_fn(self.model(static_x), static_y)
            static_loss.backward()
            self.optimizer.step()
        self.captured = (batch, graph, static_x, static_y, static_loss)
        return losses

    def epoch(self, batch, steps, seed, record=False):
        torch = self.torch
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        order = torch.randperm(len(self.images), device=self.device, generator=generator)
        losses = []
        if self.graph and (self.captured is None or self.captured[0] != batch):
            losses = self._capture(batch, order, steps)
        for s in range(len(losses), steps):
            rows = order[s * batch:(s + 1) * batch]
            if self.graph:
                _, graph, static_x, static_y, static_loss = self.captured
                torch.index_select(self.images, 0, rows, out=static_x)
                torch.index_select(self.labels, 0, rows, out=static_y)
                graph.replay()
                loss = static_loss.clone() if record else None
            else:
                loss = self._step(rows)
            if record:
                losses.append(loss)
        self.sync()
        return torch.stack(losses).cpu().numpy() if record else None

    def accuracy(self, x, y):
        torch = self.torch
        images, labels = self._upload(x, y)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            for start in range(0, len(x), EVAL_BATCH):
                logits = self.model(images[start:start + EVAL_BATCH])
                correct += (logits.argmax(1) == labels[start:start + EVAL_BATCH]).sum()
        return int(correct.item()) / len(x)


def jax_seed_cnn(jax, precision):
    """(logits(params, x), train_step(state, x, y)) for the seed CNN in JAX: NHWC, HWIO
    kernels (fastnn's layouts, so fastnn's weights load as they are), Keras's Adam."""
    jnp, lax = jax.numpy, jax.lax
    dims = ("NHWC", "HWIO", "NHWC")

    def conv_relu(x, kernel, bias):
        return jax.nn.relu(lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                                    dimension_numbers=dims,
                                                    precision=precision) + bias)

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def logits(p, x):
        x = pool(conv_relu(x, p[0], p[1]))
        x = pool(conv_relu(x, p[2], p[3]))
        x = conv_relu(x, p[4], p[5])
        x = jax.nn.relu(jnp.dot(x.reshape(len(x), -1), p[6], precision=precision) + p[7])
        return jnp.dot(x, p[8], precision=precision) + p[9]

    def loss(p, x, y):
        z = logits(p, x)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1)
        return jnp.mean(nll), jnp.sum(jnp.argmax(z, axis=1) == y)

    def train_step(state, x, y):
        params, m, v, t = state
        (value, correct), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y)
        t = t + 1
        m = [BETA_1 * mi + (1 - BETA_1) * g for mi, g in zip(m, grads)]
        v = [BETA_2 * vi + (1 - BETA_2) * g * g for vi, g in zip(v, grads)]
        alpha = LEARNING_RATE * jnp.sqrt(1 - BETA_2 ** t) / (1 - BETA_1 ** t)
        params = [p - alpha * mi / (jnp.sqrt(vi) + EPSILON) for p, mi, vi in zip(params, m, v)]
        return (params, m, v, t), value, correct

    return logits, train_step


class JaxPeer:
    """JAX on ``device``: one jitted call per training step, or with ``scan`` a whole epoch
    (shuffle, gather, every step) as one jitted ``lax.scan``."""

    def __init__(self, jax, device, weights, scan=False, tf32=False):
        self.jax, self.device, self.scan = jax, device, scan
        jnp = jax.numpy
        precision = jax.lax.Precision.DEFAULT if tf32 else jax.lax.Precision.HIGHEST
        logits, train_step = jax_seed_cnn(jax, precision)
        zeros = [[np.zeros_like(w) for w in weights] for _ in "mv"]
        # All committed to the device: an uncommitted leaf would compile the step twice.
        self.state = jax.device_put((list(weights), *zeros, np.float32(0)), device)

        def gather(images, labels, rows):
            return jnp.take(images, rows, axis=0), jnp.take(labels, rows, axis=0)

        def order(images, seed):
            return jax.random.permutation(jax.random.PRNGKey(seed), len(images))

        def step(state, images, labels, order, s, batch):
            rows = jax.lax.dynamic_slice_in_dim(order, s * batch, batch)
            return train_step(state, *gather(images, labels, rows))

        def epoch(state, images, labels, seed, batch, steps):
            rows = order(images, seed)[:steps * batch].reshape(steps, batch)

            def body(state, rows):
                state, value, correct = train_step(state, *gather(images, labels, rows))
                return state, (value, correct)
            return jax.lax.scan(body, state, rows)

        # The state is donated: Adam updates the parameters in place, as in the other contenders.
        self._order = jax.jit(order)
        self._step = jax.jit(step, static_argnames="batch", donate_argnums=0)
        self._epoch = jax.jit(epoch, static_argnames=("batch", "steps"), donate_argnums=0)
        self._correct = jax.jit(lambda p, x, y: jnp.sum(jnp.argmax(logits(p, x), axis=1) == y))

    def load(self, x, y):
        self.images = self.jax.device_put(x, self.device)
        self.labels = self.jax.device_put(y, self.device)
        self.jax.block_until_ready((self.images, self.labels))

    def epoch(self, batch, steps, seed, record=False):
        jax = self.jax
        with jax.default_device(self.device):
            if self.scan:
                self.state, (losses, _) = self._epoch(self.state, self.images, self.labels,
                                                      seed, batch=batch, steps=steps)
            else:
                order = self._order(self.images, seed)
                losses = []
                for s in range(steps):
                    self.state, loss, _ = self._step(self.state, self.images, self.labels,
                                                     order, s, batch=batch)
                    losses.append(loss)
            jax.block_until_ready(self.state)
        return np.asarray(jax.device_get(losses)) if record else None

    def accuracy(self, x, y):
        jax = self.jax
        with jax.default_device(self.device):
            images, labels = jax.device_put(x, self.device), jax.device_put(y, self.device)
            correct = [self._correct(self.state[0], images[start:start + EVAL_BATCH],
                                     labels[start:start + EVAL_BATCH])
                       for start in range(0, len(x), EVAL_BATCH)]
            return sum(int(c) for c in correct) / len(x)


def device_contenders(args, threads):
    """({name: (label, make(model, weights) -> contender)}, {name: why skipped}, torch, jax).

    ``make`` gets a built, uncompiled fastnn seed model and copies of its initial weights,
    so that every contender starts from the same point."""
    peer_device = "cpu" if args.peers_on_cpu else "cuda"
    contenders, skipped = {}, {}

    if args.peers_on_cpu:
        skipped["fastnn"] = "--peers-on-cpu (fastnn's CPU path is --device cpu)"
    else:
        info = fastnn.build_info()
        if not info.get("cuda_compiled"):
            skipped["fastnn"] = "this fastnn was built without CUDA"
        elif not info.get("cuda_devices"):
            skipped["fastnn"] = "fastnn sees no CUDA GPU"
        else:
            contenders["fastnn"] = (
                f"fastnn {fastnn.__version__} (cuda)",
                lambda model, weights: FastnnOnDevice(_fastnn_model("cuda", model=model)))

    torch, why = _common.import_torch(threads)  # kept for the machine facts even when skipped
    if torch is not None and peer_device == "cuda" and not torch.cuda.is_available():
        why = f"torch {torch.__version__} sees no CUDA device"
    if why:
        skipped["torch"] = skipped["torch-graph"] = why
    else:
        if peer_device == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = args.tf32
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
        contenders["torch"] = (f"PyTorch {torch.__version__} eager ({peer_device})",
                               lambda model, weights: TorchPeer(torch, peer_device, weights))
        if peer_device == "cuda":
            contenders["torch-graph"] = (
                f"PyTorch {torch.__version__} CUDA graph",
                lambda model, weights: TorchPeer(torch, peer_device, weights, graph=True))
        else:
            skipped["torch-graph"] = "a CUDA graph needs CUDA (--peers-on-cpu)"

    jax, jax_device, why = _common.import_jax(peer_device)
    if jax is None:
        skipped["jax"] = skipped["jax-scan"] = why
    else:
        where = jax_device.platform
        for name, scan, what in (("jax", False, "jit step"), ("jax-scan", True, "scan epoch")):
            contenders[name] = (
                f"JAX {jax.__version__} {what} ({where})",
                functools.partial(lambda scan, model, weights: JaxPeer(
                    jax, jax_device, weights, scan=scan, tf32=args.tf32), scan))
    return contenders, skipped, torch, jax


def _seed_model():
    """A built, uncompiled seed model and copies of its Glorot-initialised weights."""
    model = seed_cnn()
    return model, [np.array(w, np.float32) for w in model.get_weights()]


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

def whole_batches(images, batch):
    return max(1, images // batch) * batch


def main_args(args):
    out = _common.output_stream(args)
    if (args.peers_on_cpu or args.recipe or args.tf32) and args.device != "cuda":
        print("error: --recipe, --tf32 and --peers-on-cpu go with --device cuda", file=sys.stderr)
        return 2
    try:
        threads = _common.apply_runtime(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.model != "seed" and args.device == "cuda":
        print("error: --model batchnorm is a CPU benchmark (the GPU contenders build the seed "
              "CNN only)", file=sys.stderr)
        return 2
    if args.recipe:
        return _main_recipe(args, threads, out)
    if args.images is None:
        args.images = DEFAULT_IMAGES[args.device]
    if args.device == "cuda":
        return _main_device(args, threads, out)

    # name -> (label, setup(x, y, batch) -> train(n))
    model_name = args.model
    contenders = {"fastnn": (f"fastnn {fastnn.__version__}",
                             lambda *data: setup_fastnn(*data, model_name)),
                  "numpy": ("NumPy reference step",
                            lambda *data: setup_numpy(*data, model_name))}
    torch, torch_skipped = _common.import_torch(threads)
    if torch is not None:
        contenders["torch"] = (f"PyTorch {torch.__version__}",
                               lambda *data: setup_torch(torch, *data, model_name))
    keras, keras_skipped = import_keras(threads)
    if keras is not None:
        contenders["keras"] = (f"Keras {keras.__version__} ({keras.backend.backend()})",
                               lambda *data: setup_keras(keras, *data, model_name))
    skipped = {name: why for name, why in (("torch", torch_skipped), ("keras", keras_skipped))
               if why}

    def images_for(name, batch):
        return whole_batches(args.numpy_images if name == "numpy" else args.images, batch)

    needed = max(images_for(name, b) for name in contenders for b in args.batch)
    try:
        x, y, data = load_images(args.data, needed)
    except (datasets.DatasetNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    facts = _common.machine_facts(torch)
    params = build_model(model_name).count_params()
    print(f"fastnn bench train: {MODELS[model_name][0]} ({params:,} parameters), Adam, sparse categorical "
          f"cross-entropy, on {data} images; {args.rounds} round(s), median images/s", file=out)
    _common.print_machine(facts, out)
    for name, why in skipped.items():
        print(f"skipped {SHORT_NAMES[name]}: {why}", file=out)

    results = []
    for batch in args.batch:
        results += _run_batch(contenders, x, y, batch, images_for, args.rounds, out)
    _print_results(results, out)

    if args.json:
        _common.write_json(args.json, {
            "benchmark": "train", "model": MODELS[model_name][0], "parameters": params, "data": data,
            "rounds": args.rounds, "machine": facts, "results": results, "skipped": skipped})
    return 0


def _run_batch(contenders, x, y, batch, images_for, rounds, out):
    """Time every contender at one batch size; their result dicts, fastnn's first."""
    trainers = {name: setup(x, y, batch) for name, (_, setup) in contenders.items()}
    for train in trainers.values():  # builds plans, grows buffers, warms caches
        train(min(2 * batch, len(x)))
    speeds = _time_rounds(trainers, batch, images_for, rounds, out)
    return _batch_results(contenders, speeds, batch, images_for)


def _time_rounds(trainers, batch, images_for, rounds, out, settle=True, sync=None):
    """{name: images/s of each round}: every round times each trainer once, in rotating
    order; ``sync`` (if any) runs before each clock start, ``train(n)`` returns synchronised."""
    speeds = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            images = images_for(name, batch)
            if settle:
                _common.settle()
            if sync:
                sync()
            start = time.perf_counter()
            trainers[name](images)
            speeds[name].append(images / (time.perf_counter() - start))
        print(f"batch {batch}, round {r + 1}/{rounds}: " + ", ".join(
            f"{SHORT_NAMES[n]} {speeds[n][-1]:,.0f}" for n in names) + " images/s",
              file=out, flush=True)
    return speeds


def _batch_results(contenders, speeds, batch, images_for):
    """Result dicts in the contenders' order; fastnn_ratio is None without fastnn."""
    fastnn_speed = statistics.median(speeds["fastnn"]) if "fastnn" in speeds else None
    return [{"contender": name, "label": contenders[name][0], "batch": batch,
             "images": images_for(name, batch),
             "images_per_second": statistics.median(speeds[name]),
             "rounds_images_per_second": speeds[name],
             "fastnn_ratio": (fastnn_speed / statistics.median(speeds[name])
                              if fastnn_speed is not None else None)}
            for name in speeds]


def _print_results(results, out):
    rows = []
    for r in results:
        versus = ("-" if r["contender"] == "fastnn" or r["fastnn_ratio"] is None else
                  f"fastnn is {r['fastnn_ratio']:.2f}x {SHORT_NAMES[r['contender']]}")
        spread = f"{min(r['rounds_images_per_second']):,.0f}-" \
                 f"{max(r['rounds_images_per_second']):,.0f}"
        rows.append([r["label"], r["batch"], f"{r['images']:,}",
                     f"{r['images_per_second']:,.0f}", spread, versus])
    print(file=out)
    _common.table(["contender", "batch", "images", "images/s", "rounds", "fastnn / contender"],
                  rows, out)


# ---------------------------------------------------------------------------
# --device cuda: resident data, throughput
# ---------------------------------------------------------------------------

def _device_header(args, contenders, skipped, torch, jax, out, what):
    facts = _common.machine_facts(torch)
    facts.update(_common.device_facts(torch, jax))
    precision = "TF32 allowed for PyTorch and JAX" if args.tf32 else "float32 throughout"
    where = "peers on the CPU (--peers-on-cpu: a smoke test, not a measurement)" \
        if args.peers_on_cpu else "on the GPU"
    print(f"fastnn bench train --device cuda: {what}, {where}; {precision}", file=out)
    _common.print_machine(facts, out)
    _common.print_device(facts, out)
    for name, why in skipped.items():
        print(f"skipped {SHORT_NAMES[name]}: {why}", file=out)
    return facts


def _failed(name, where, failed, out):
    """Record (and show, with its traceback on stderr) a contender that raised."""
    error = sys.exc_info()[1]
    traceback.print_exc(file=sys.stderr)
    failed[name] = f"{where}: {type(error).__name__}: {error}"
    print(f"FAILED {SHORT_NAMES[name]}: {failed[name]}", file=out, flush=True)


def _main_device(args, threads, out):
    contenders, skipped, torch, jax = device_contenders(args, threads)
    needed = max(whole_batches(args.images, b) for b in args.batch)
    try:
        x, y, data = load_images(args.data, needed)
    except (datasets.DatasetNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    facts = _device_header(args, contenders, skipped, torch, jax, out,
                           f"the seed CNN, {data} images resident, {args.rounds} round(s) "
                           f"of one shuffled epoch, median images/s")
    if not contenders:
        print("error: no contender can run here (see 'skipped' above)", file=sys.stderr)
        return 1
    # Every contender returns with its work done; this also waits for anything else queued.
    sync = torch.cuda.synchronize if "torch" in contenders and not args.peers_on_cpu else None
    failed, results = {}, []
    for batch in args.batch:
        results += _run_device_batch(contenders, x, y, batch, args, out, sync, failed)
        gc.collect()  # the last batch size's models, data and graphs leave the GPU
    if results:
        _print_results(results, out)
    for name, why in failed.items():
        print(f"FAILED {SHORT_NAMES[name]}: {why}", file=out)
    if args.json:
        _common.write_json(args.json, {
            "benchmark": "train", "device": "cuda",
            "peers_device": "cpu" if args.peers_on_cpu else "cuda",
            "precision": "tf32" if args.tf32 else "float32", "model": "seed CNN",
            "parameters": seed_cnn().count_params(), "data": data,
            "rounds": args.rounds, "machine": facts, "results": results,
            "skipped": skipped, "failed": failed})
    return 1 if failed else 0


def _run_device_batch(contenders, x, y, batch, args, out, sync, failed):
    """Upload the first n images to every contender, train one untimed epoch (compile,
    autotune, capture), then time rounds of one shuffled epoch each."""
    n = whole_batches(args.images, batch)
    steps = n // batch
    seeds = itertools.count(1)  # a new epoch order each round; the warm-up is seed 0
    model, weights = _seed_model()
    trainers = {}
    for name, (_, make) in contenders.items():
        if name in failed:
            continue
        try:
            contender = make(model if name == "fastnn" else None, weights)
            contender.load(x[:n], y[:n])
            contender.epoch(batch, steps, 0)
        except Exception:  # one broken contender must not cost the others' numbers
            _failed(name, f"batch {batch}, setup", failed, out)
            continue
        trainers[name] = lambda images, c=contender: c.epoch(batch, images // batch, next(seeds))
    if not trainers:
        return []
    speeds = _time_rounds(trainers, batch, lambda name, b: n, args.rounds, out,
                          settle=args.peers_on_cpu, sync=sync)
    return _batch_results(contenders, speeds, batch, lambda name, b: n)


# ---------------------------------------------------------------------------
# --recipe: 5 epochs of Fashion-MNIST at batch 64, then the test accuracy, wall time
# ---------------------------------------------------------------------------

def _main_recipe(args, threads, out):
    contenders, skipped, torch, jax = device_contenders(args, threads)
    if "jax" in contenders:
        del contenders["jax"]  # the recipe's JAX contender is the scan
        skipped["jax"] = "the recipe times JAX as one scan per epoch (jax-scan)"
    try:
        (x, y), (x_test, y_test) = _load_fashion_mnist(offline=True)
    except (datasets.DatasetNotFoundError, ValueError) as error:
        print(f"error: --recipe needs Fashion-MNIST: {error}", file=sys.stderr)
        return 2
    x, y = x[:args.images], y[:args.images]  # all 60,000 unless --images
    x = x.reshape(-1, 28, 28, 1).astype(np.float32) / 255  # prepared outside the clock,
    x_test = x_test.reshape(-1, 28, 28, 1).astype(np.float32) / 255  # as fit receives it
    y, y_test = y.astype(np.int32), y_test.astype(np.int32)
    facts = _device_header(
        args, contenders, skipped, torch, jax, out,
        f"the seed recipe: Fashion-MNIST, {len(x):,} images, batch {RECIPE_BATCH}, "
        f"{args.epochs} epoch(s), then {len(x_test):,} test images; wall seconds from the "
        f"start of training (upload included) to the test accuracy")
    if not contenders:
        print("error: no contender can run here (see 'skipped' above)", file=sys.stderr)
        return 1

    failed, results = {}, []
    for name, (label, make) in contenders.items():
        utils.set_random_seed(0)
        model, weights = _seed_model()  # every contender starts from these weights
        try:
            if name == "fastnn":
                seconds, accuracy = _recipe_fastnn(model, x, y, x_test, y_test, args.epochs)
            else:
                seconds, accuracy = _recipe_peer(make(None, weights), x, y, x_test, y_test,
                                                 args.epochs)
        except Exception:
            _failed(name, "recipe", failed, out)
            continue
        print(f"{SHORT_NAMES[name]}: {seconds:.2f} s, test accuracy {accuracy:.4f}",
              file=out, flush=True)
        results.append({"contender": name, "label": label, "epochs": args.epochs,
                        "batch": RECIPE_BATCH, "seconds": seconds, "test_accuracy": accuracy})

    fastnn_seconds = next((r["seconds"] for r in results if r["contender"] == "fastnn"), None)
    rows = []
    for r in results:
        r["fastnn_ratio"] = r["seconds"] / fastnn_seconds if fastnn_seconds else None
        versus = ("-" if r["contender"] == "fastnn" or fastnn_seconds is None else
                  f"fastnn is {r['fastnn_ratio']:.2f}x {SHORT_NAMES[r['contender']]}")
        rows.append([r["label"], r["epochs"], f"{r['seconds']:.2f}",
                     f"{r['test_accuracy']:.4f}", versus])
    if rows:
        print(file=out)
        _common.table(["contender", "epochs", "seconds", "test accuracy", "fastnn / contender"],
                      rows, out)
    for name, why in failed.items():
        print(f"FAILED {SHORT_NAMES[name]}: {why}", file=out)
    if args.json:
        _common.write_json(args.json, {
            "benchmark": "train-recipe", "device": "cuda",
            "peers_device": "cpu" if args.peers_on_cpu else "cuda",
            "precision": "tf32" if args.tf32 else "float32", "model": "seed CNN",
            "data": "fashion-mnist", "machine": facts, "results": results,
            "skipped": skipped, "failed": failed})
    return 1 if failed else 0


def _recipe_fastnn(model, x, y, x_test, y_test, epochs):
    """fastnn through its public API: compile for the GPU (before the clock), fit, evaluate."""
    model = _fastnn_model("cuda", metrics=["accuracy"], model=model)
    start = time.perf_counter()
    model.fit(x, y, batch_size=RECIPE_BATCH, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    return time.perf_counter() - start, float(accuracy)


def _recipe_peer(peer, x, y, x_test, y_test, epochs):
    """A peer built (model and weights on the device) before the clock; timed: the upload,
    every epoch's whole batches (the last partial one of each epoch is dropped: 32 of 60,000
    images), the test set's upload and evaluation."""
    start = time.perf_counter()
    peer.load(x, y)
    for epoch in range(epochs):
        peer.epoch(RECIPE_BATCH, len(x) // RECIPE_BATCH, epoch + 1)
    accuracy = peer.accuracy(x_test, y_test)
    return time.perf_counter() - start, accuracy


if __name__ == "__main__":
    sys.exit(main())
