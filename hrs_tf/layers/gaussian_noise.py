"""``GaussianNoiseInjection``: additive Gaussian noise in training and at test (random self-ensemble, Liu et al.
2018; HRS appendix C.2)."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.layers.stochastic import OFF, StochasticLayer


@keras.saving.register_keras_serializable(package="hrs_tf")
class GaussianNoiseInjection(StochasticLayer):
    """Additive N(0, stddev^2) noise on every element, in training and at test (random self-ensemble,
    Liu et al. 2018; HRS appendix C.2). ``off`` mode: identity."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = checks.nonnegative(stddev, "stddev")

    def call(self, inputs, training=None):
        noise = tf.random.stateless_normal(tf.shape(inputs), seed=self.next_seed(), stddev=self.stddev,
                                           dtype=inputs.dtype)
        return tf.where(self.mode_is(OFF), inputs, inputs + noise)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["stddev"] = self.stddev
        return config
