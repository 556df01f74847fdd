"""Helpers shared by the attack tests (no tests here): one small MNIST model, trained once per process.

The model is the HRS MNIST base CNN trained 2 epochs on the first 8000 real MNIST training images
(seed 0): about 93% test accuracy, trained in ~10 s here.
"""

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import models, training
from hrs_tf.defenses import hrs
from hrs_tf.layers import stochastic
_CACHE = {}


def trained_model(real_mnist):
    """The session's small trained MNIST model (memoised, so every test module shares one training run)."""
    if "model" not in _CACHE:
        keras.utils.set_random_seed(0)
        model = models.build_base_model("mnist")
        training.fit(model, real_mnist.x_train[:8000], real_mnist.y_train[:8000], epochs=2, seed=0, verbose=0)
        _CACHE["model"] = model
    return _CACHE["model"]


def hrs_model(seed=7, channels=(3, 3)):
    """An untrained HRS MNIST model whose channels differ (fresh Glorot weights), in ``random`` mode."""
    keras.utils.set_random_seed(seed)
    model = hrs.build_hrs_model("mnist", channels, seed=seed)
    stochastic.set_randomness(model, stochastic.RANDOM)
    return model


def margins(model, x, y):
    """``Z_y - max_{j != y} Z_j`` per example (numpy)."""
    z = np.array(model(tf.constant(x), training=False))
    own = z[np.arange(len(y)), y]
    z[np.arange(len(y)), y] = -np.inf
    return own - z.max(axis=1)


def predictions(model, x):
    return np.argmax(np.asarray(model(tf.constant(x), training=False)), axis=1)


def l2(a, b):
    return np.sqrt(((np.asarray(a, np.float64) - b) ** 2).reshape(len(a), -1).sum(axis=1))


def wrong_targets(y, shift=1):
    return (np.asarray(y) + shift) % 10
