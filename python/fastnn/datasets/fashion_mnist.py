"""Fashion-MNIST (Zalando): 60,000 training and 10,000 test 28x28 grayscale images of
clothing in 10 classes: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt,
Sneaker, Bag, Ankle boot.

Found locally (Debian's dataset-fashion-mnist package included, see load_data) or
downloaded once, as the four upstream .gz files, into ~/.fastnn/datasets/fashion-mnist/.
"""

from . import _loader

# SHA-256 of the upstream files on Keras's mirror, as keras/src/datasets/fashion_mnist.py
# pins them. (Debian's copies are recompressed: same data, other .gz bytes.)
FILE_HASHES = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist


def load_data(path=None):
    """Load Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``, uint8, like Keras.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,); pixels 0-255,
    labels 0-9. ``path`` is where the data already is: a directory holding the four
    IDX files (raw or .gz), or an .npz file with keys x_train, y_train, x_test, y_test;
    only there is looked. Without it the search is $FASTNN_DATA/fashion-mnist,
    $FASTNN_DATA, ~/.fastnn/datasets/fashion-mnist, ~/.keras/datasets/fashion-mnist,
    /usr/share/datasets/fashion-mnist, then a download from $FASTNN_DATASETS_URL
    (default: Keras's mirror) unless FASTNN_OFFLINE=1.

    Raises fastnn.datasets.DatasetNotFoundError (a FileNotFoundError) when the data
    is nowhere and cannot be downloaded, ValueError when a file is damaged.
    """
    return _loader.load(
        "fashion-mnist", path, hashes=FILE_HASHES, keras_dir="fashion-mnist",
        system_dirs=(DEBIAN_DIR,),
    )
