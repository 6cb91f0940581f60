"""``python -m fastnn bench train``: the seed CNN's training throughput in images/s.

Contenders, on the same data and batch size: fastnn through its Keras-style API
(``model.fit``), the NumPy reference training step (``fastnn.reference_net.ReferenceNet``),
and PyTorch and Keras when they import. Each round times every contender once, in rotating
order, so a noisy neighbour hits all of them alike; the table gives the median round.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn import _cli, datasets, optimizers
from fastnn.bench import _common
from fastnn.reference_net import ReferenceNet

DESCRIPTION = "Time training the seed CNN (images/s): fastnn's model.fit against the NumPy " \
              "reference step, PyTorch and Keras."
# How "fastnn is 2.31x PyTorch" names each contender.
SHORT_NAMES = {"fastnn": "fastnn", "numpy": "NumPy", "torch": "PyTorch", "keras": "Keras"}


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="python -m fastnn bench train", description=DESCRIPTION)
    parser.add_argument("--batch", type=_common.positive_int, nargs="+", default=[64],
                        help="batch sizes, e.g. --batch 64 256 1024 (default: 64)")
    # Many short rounds rather than a few long ones: on a shared machine a burst of
    # someone else's work then spoils a round of each contender, not all of one.
    parser.add_argument("--images", type=_common.positive_int, default=2560,
                        help="images per contender and round for fastnn, PyTorch and Keras, "
                             "rounded down to whole batches (default: 2560)")
    parser.add_argument("--numpy-images", type=_common.positive_int, default=640,
                        help="images per round for the slower NumPy step (default: 640)")
    parser.add_argument("--rounds", type=_common.positive_int, default=7,
                        help="timed rounds; the median is reported (default: 7)")
    parser.add_argument("--data", choices=("auto", "fashion-mnist", "random"), default="auto",
                        help="auto: Fashion-MNIST if it is on this machine, else random "
                             "images (default: auto)")
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
# contenders: setup(x, y, batch) -> train(n), one epoch over the first n images, shuffled
# ---------------------------------------------------------------------------

def _fastnn_model():
    model = _cli.build_model()
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
                  loss="sparse_categorical_crossentropy")
    return model


def setup_fastnn(x, y, batch):
    model = _fastnn_model()
    return lambda n: model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0)


def setup_numpy(x, y, batch):
    model = _fastnn_model()
    net = ReferenceNet([layer.engine_spec() for layer in model.layers], model.input_shape[1:],
                       model.optimizer.engine_spec())
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


def setup_torch(torch, x, y, batch):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()  # on logits: softmax and cross-entropy fused, as in fastnn
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


def setup_keras(keras, x, y, batch):
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
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
# the run
# ---------------------------------------------------------------------------

def whole_batches(images, batch):
    return max(1, images // batch) * batch


def main_args(args):
    out = _common.output_stream(args)
    try:
        threads = _common.apply_runtime(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # name -> (label, setup(x, y, batch) -> train(n))
    contenders = {"fastnn": (f"fastnn {fastnn.__version__}", setup_fastnn),
                  "numpy": ("NumPy reference step", setup_numpy)}
    torch, torch_skipped = _common.import_torch(threads)
    if torch is not None:
        contenders["torch"] = (f"PyTorch {torch.__version__}",
                               lambda *data: setup_torch(torch, *data))
    keras, keras_skipped = import_keras(threads)
    if keras is not None:
        contenders["keras"] = (f"Keras {keras.__version__} ({keras.backend.backend()})",
                               lambda *data: setup_keras(keras, *data))
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
    params = _fastnn_model().count_params()
    print(f"fastnn bench train: the seed CNN ({params:,} parameters), Adam, sparse categorical "
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
            "benchmark": "train", "model": "seed CNN", "parameters": params, "data": data,
            "rounds": args.rounds, "machine": facts, "results": results, "skipped": skipped})
    return 0


def _run_batch(contenders, x, y, batch, images_for, rounds, out):
    """Time every contender at one batch size; their result dicts, fastnn's first."""
    trainers = {name: setup(x, y, batch) for name, (_, setup) in contenders.items()}
    for train in trainers.values():  # builds plans, grows buffers, warms caches
        train(min(2 * batch, len(x)))
    speeds = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            images = images_for(name, batch)
            _common.settle()
            start = time.perf_counter()
            trainers[name](images)
            speeds[name].append(images / (time.perf_counter() - start))
        print(f"batch {batch}, round {r + 1}/{rounds}: " + ", ".join(
            f"{SHORT_NAMES[n]} {speeds[n][-1]:,.0f}" for n in names) + " images/s",
              file=out, flush=True)
    fastnn_speed = statistics.median(speeds["fastnn"])
    return [{"contender": name, "label": contenders[name][0], "batch": batch,
             "images": images_for(name, batch),
             "images_per_second": statistics.median(speeds[name]),
             "rounds_images_per_second": speeds[name],
             "fastnn_ratio": fastnn_speed / statistics.median(speeds[name])} for name in names]


def _print_results(results, out):
    rows = []
    for r in results:
        versus = ("-" if r["contender"] == "fastnn" else
                  f"fastnn is {r['fastnn_ratio']:.2f}x {SHORT_NAMES[r['contender']]}")
        spread = f"{min(r['rounds_images_per_second']):,.0f}-" \
                 f"{max(r['rounds_images_per_second']):,.0f}"
        rows.append([r["label"], r["batch"], f"{r['images']:,}",
                     f"{r['images_per_second']:,.0f}", spread, versus])
    print(file=out)
    _common.table(["contender", "batch", "images", "images/s", "rounds", "fastnn / contender"],
                  rows, out)


if __name__ == "__main__":
    sys.exit(main())
