"""The seed CNN: the Keras example's model, which the train command, the training benchmark
and the tests all build from here."""

from fastnn import layers, models


def seed_cnn():
    """The seed CNN, uncompiled, layer for layer as in the Keras example (93,322 parameters);
    its weights are drawn from ``utils``' generator, so a fixed seed fixes them."""
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return model
