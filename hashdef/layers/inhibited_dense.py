"""``InhibitedDense``: a fully connected layer whose kernel is redrawn as GI3's w + eps U(0, 1) sign(w) on every
forward pass (hash paper section IV-B, eq. 9, with a fresh uniform draw per call).

This is *not* the paper's GI3: the paper transforms the weights once and deploys them (the ``gi3`` defense, a
weight transform, draws once per seed). Redrawing per call makes the model stochastic, so the attacker's answer is
EOT over the draw; it is offered as a different defense (``gi3:EPS,redraw=true``) and documented as such.
"""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.layers.stochastic import OFF, StochasticLayer


@keras.saving.register_keras_serializable(package="hashdef")
class InhibitedDense(StochasticLayer):
    """``activation(x @ (W + eps U sign(W)) + b)`` with U ~ U(0, 1) per weight, drawn on every call (in training, at
    inference and under attack); ``off``: the plain Dense layer ``W``; ``pinned``: one fixed draw."""

    def __init__(self, units, epsilon, activation=None, use_bias=True, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.units = checks.count(units, "units", minimum=1)
        self.epsilon = checks.nonnegative(epsilon, "epsilon")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        n_in = input_shape[-1]
        if n_in is None:
            raise ConfigError(f"layer {self.name!r} needs a known input width")
        self.kernel = self.add_weight(name="kernel", shape=(int(n_in), self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def call(self, inputs, training=None):
        draw = tf.random.stateless_uniform(tf.shape(self.kernel), seed=self.next_seed(), dtype=self.kernel.dtype)
        inhibited = self.kernel + self.epsilon * draw * tf.sign(self.kernel)
        kernel = tf.where(self.mode_is(OFF), tf.convert_to_tensor(self.kernel), inhibited)
        outputs = tf.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, epsilon=self.epsilon, activation=keras.activations.serialize(self.activation),
                      use_bias=self.use_bias)
        return config
