"""MNIST handwritten digits: 60,000 training and 10,000 test 28x28 grayscale images, labels 0-9.

Found locally (see load_data) or downloaded once, as Keras's mnist.npz, into
~/.fastnn/datasets/mnist/.
"""

from . import _loader

# SHA-256 of Keras's mirror copy, as keras/src/datasets/mnist.py pins it (file_hash=).
FILE_HASHES = {
    "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
}


def load_data(path=None):
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, uint8, like Keras.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,); pixels 0-255,
    labels 0-9. Unlike Keras, ``path`` is where the data already is: a directory
    holding the four IDX files (raw or .gz) or mnist.npz, or an .npz file; only
    there is looked. Without it the search is $FASTNN_DATA/mnist, $FASTNN_DATA,
    ~/.fastnn/datasets/mnist, ~/.keras/datasets (mnist.npz), then a download from
    $FASTNN_DATASETS_URL (default: Keras's mirror) unless FASTNN_OFFLINE=1.

    Raises fastnn.datasets.DatasetNotFoundError (a FileNotFoundError) when the data
    is nowhere and cannot be downloaded, ValueError when a file is damaged.
    """
    return _loader.load("mnist", path, hashes=FILE_HASHES, keras_dir="", npz_name="mnist.npz")
