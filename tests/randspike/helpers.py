"""Small models shared by the randspike tests."""

import keras


def linear_mnist_model(dataset, epochs=2, images=2000):
    """A linear softmax classifier (logits output) trained a few seconds on the first ``images`` training images,
    seeded: the cheapest model with a real decision boundary."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(dataset.x_train[:images], dataset.y_train[:images], epochs=epochs, batch_size=64, verbose=0)
    return model
