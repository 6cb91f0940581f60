"""``python -m fastnn train``: train the seed CNN on MNIST or Fashion-MNIST from the shell.

It runs the Keras example of the README (Conv2D 32 / pool / Conv2D 64 / pool / Conv2D 64 /
Dense 64 / Dense 10, Adam, categorical cross-entropy), then prints the test loss, the test
accuracy and the training speed (training images processed per second of ``fit``), and
optionally saves the model, a JSON report and a PNG of the curves and some predictions.
"""

import argparse
import json
import sys
import time

from fastnn import _C, _training, datasets, utils
from fastnn._seed_cnn import seed_cnn

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


class CliError(Exception):
    """A problem with the command line or the environment, reported without a traceback."""


def _int_at_least(minimum):
    def integer(text):  # argparse names the function in messages: "invalid integer value"
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return integer


def add_train_parser(subparsers):
    """Add the ``train`` command to ``python -m fastnn``'s subparsers."""
    parser = subparsers.add_parser(
        "train", help="train the seed CNN on MNIST or Fashion-MNIST; report accuracy and speed",
        description="Train the seed CNN of the Keras example (Conv2D/MaxPooling2D x2, Conv2D, "
                    "Dense 64, Dense 10; Adam) on MNIST or Fashion-MNIST, then print the test "
                    "loss and accuracy and the training speed in images/s.")
    parser.add_argument("--dataset", choices=("auto", "mnist", "fashion-mnist"), default="auto",
                        help="auto: MNIST if it is found locally or can be downloaded, "
                             "else Fashion-MNIST (default: auto)")
    parser.add_argument("--data", metavar="DIR",
                        help="read the four IDX files (or an .npz) from DIR only")
    parser.add_argument("--epochs", type=_int_at_least(1), default=5, help="default: 5")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=64, help="default: 64")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the GPU when there is one, else the CPU (default: auto)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="seeds initialisation and shuffling (default: 0)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 silent, 1 progress bar, 2 one line per epoch (default: 1)")
    parser.add_argument("--save", metavar="PATH", help="save the trained model to PATH")
    parser.add_argument("--plot", metavar="PATH",
                        help="write a PNG of the loss/accuracy curves and test predictions "
                             "(needs matplotlib)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.set_defaults(run=train_command)
    return parser


def _check_device(device):
    try:
        return _training.resolve_device(device, "train")
    except RuntimeError as e:  # "train: device='cuda', but ..." in the CLI's words
        raise CliError(str(e).replace("device='cuda'", "--device cuda")
                       .replace("device='cpu' or 'auto'", "--device cpu or auto")) from None


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CliError("--plot needs matplotlib, which is not installed: "
                       "pip install matplotlib (or pip install 'fastnn[plot]')") from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _load(dataset, data_dir):
    """(name, ((x_train, y_train), (x_test, y_test))) for the chosen data set."""
    loaders = {"mnist": datasets.mnist, "fashion-mnist": datasets.fashion_mnist}
    if dataset != "auto":
        return dataset, loaders[dataset].load_data(path=data_dir)
    if data_dir is not None:
        # Both sets use the same IDX files, so the files cannot say which one they hold.
        print(f"Using the MNIST-format data in {data_dir}")
        return "mnist-format", datasets.mnist.load_data(path=data_dir)
    try:
        data = datasets.mnist.load_data()
        print("Using MNIST")
        return "mnist", data
    except datasets.DatasetNotFoundError:
        print("MNIST is not available here (not found locally, download failed); "
              "using Fashion-MNIST")
        return "fashion-mnist", datasets.fashion_mnist.load_data()


def train_command(args):
    """Run ``python -m fastnn train``; returns the exit status."""
    try:
        return _train(args)
    except (CliError, datasets.DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _train(args):
    device = _check_device(args.device)
    plt = _pyplot() if args.plot else None  # fail before training, not after
    try:
        name, ((x_train, y_train), (x_test, y_test)) = _load(args.dataset, args.data)
    except ValueError as e:  # a damaged data file
        raise CliError(str(e)) from None
    utils.set_random_seed(args.seed)

    # The preprocessing of the Keras example.
    x_train = x_train.reshape((-1, 28, 28, 1)).astype("float32") / 255
    x_test = x_test.reshape((-1, 28, 28, 1)).astype("float32") / 255
    labels_test = y_test
    y_train = utils.to_categorical(y_train, 10)
    y_test = utils.to_categorical(y_test, 10)

    model = seed_cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"],
                  device=device)
    info = _C.build_info()
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs > 1 else "")
    where = (f"cuda ({info['cuda_device_names'][0]})" if device == "cuda" else
             f"cpu ({info['cpu_isa']}, {info['num_threads']} threads)")
    print(f"Training the seed CNN ({model.count_params():,} parameters) on {name}: "
          f"{len(x_train):,} training / {len(x_test):,} test images, {epochs}, "
          f"batch {args.batch_size}, {where}")
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        verbose=args.verbose)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    total = time.perf_counter() - start
    images_per_second = len(x_train) * args.epochs / seconds
    print(f"test loss: {test_loss:.4f}   test accuracy: {test_accuracy:.4f}")
    print(f"training: {seconds:.2f} s, {images_per_second:,.0f} images/s; "
          f"fit + evaluate: {total:.2f} s")

    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    if plt is not None:
        _plot(plt, args.plot, history, model, x_test, labels_test, name)
        print(f"plot written to {args.plot}")
    if args.json:
        report = {"test_loss": test_loss, "test_accuracy": test_accuracy,
                  "train_images_per_second": images_per_second, "train_seconds": seconds,
                  "fit_and_evaluate_seconds": total,
                  "dataset": name, "epochs": args.epochs, "batch_size": args.batch_size,
                  "device": device, "train_images": len(x_train), "test_images": len(x_test),
                  "seed": args.seed, "history": history.history}
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
        print(f"results written to {args.json}")
    return 0


def _plot(plt, path, history, model, x_test, labels_test, name):
    """One PNG: loss and accuracy per epoch on the left, 16 test images with the predicted
    class on the right (green when right, red when wrong)."""
    from matplotlib.ticker import MaxNLocator
    class_names = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    predicted = model.predict(x_test[:16]).argmax(axis=1)
    figure = plt.figure(figsize=(12, 6), layout="constrained")
    curves, grid = figure.subfigures(1, 2)
    epochs = [e + 1 for e in history.epoch]
    for axis, key in zip(curves.subplots(2, 1, sharex=True), ("loss", "accuracy")):
        axis.plot(epochs, history.history[key], "o-")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(key)
        axis.grid(True, alpha=0.3)
    axis.set_xlabel("epoch")
    curves.suptitle(f"training on {name}")
    for i, axis in enumerate(grid.subplots(4, 4).flat):
        axis.imshow(x_test[i, :, :, 0], cmap="gray_r")
        axis.set_title(class_names[predicted[i]], fontsize=9,
                       color="green" if predicted[i] == labels_test[i] else "red")
        axis.axis("off")
    grid.suptitle("test images, predicted class")
    figure.savefig(path, dpi=100)
    plt.close(figure)
