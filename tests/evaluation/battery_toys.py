"""Toy defenses for the battery's tests: a masked one (a quantiser whose backward pass is zero, declared nowhere) and
an honestly robust one (a model that ignores its input). Their layers are registered so the saved ``.h5`` files load
in safe mode like any defense's."""

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="battery_toys")
class ZeroGradientQuantizer(keras.layers.Layer):
    """``round(x * levels) / levels`` forward, zero gradient backward: a non-differentiable layer that masks every
    gradient attack (no ``bpda_surrogate`` declared, so the battery's BPDA does not apply)."""

    def __init__(self, levels=16, **kwargs):
        super().__init__(**kwargs)
        self.levels = int(levels)

    def call(self, inputs):
        quantised = tf.round(inputs * self.levels) / self.levels
        return tf.stop_gradient(quantised) + 0.0 * inputs

    def get_config(self):
        return {**super().get_config(), "levels": self.levels}


@keras.saving.register_keras_serializable(package="battery_toys")
class IgnoreInput(keras.layers.Layer):
    """Multiplies its input by zero: the model after it decides the same for every image."""

    def call(self, inputs):
        return 0.0 * inputs


def classifier(dataset, images=3000, epochs=3, seed=0):
    """A small dense classifier trained on the first ``images`` training images (about 90% test accuracy)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(dataset.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)], name="toy")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(dataset.x_train[:images], dataset.y_train[:images], epochs=epochs, batch_size=64, verbose=0)
    return model


def masked(model):
    """``model`` behind :class:`ZeroGradientQuantizer` (the same weights)."""
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(ZeroGradientQuantizer()(inputs)), name="masked_toy")


def ignoring(dataset, label):
    """A model that outputs the same logits for every image, favouring ``label``."""
    inputs = keras.Input(dataset.input_shape)
    dense = keras.layers.Dense(10)
    outputs = dense(keras.layers.Flatten()(IgnoreInput()(inputs)))
    model = keras.Model(inputs, outputs, name="ignores_input")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, np.eye(10, dtype=np.float32)[label] * 5.0])
    return model
