"""``DefensiveDropout`` (Wang et al., ICCAD 2018, section 3.2): dropout that stays on at test time and under
attack, with a train rate r and a test rate r', each with inverted scaling 1 / (1 - rate)."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.layers.stochastic import OFF, StochasticLayer


@keras.saving.register_keras_serializable(package="hrs_tf")
class DefensiveDropout(StochasticLayer):
    """Dropout on in training (rate r) and at test time / under attack (rate r'), defensive-dropout
    paper section 3.2: each element is kept independently with probability 1 - rate and scaled by
    1 / (1 - rate), the rate in use being ``rate`` when ``training=True`` and ``test_rate`` otherwise.

    ``test_rate`` (default: ``rate``) lives in a TF variable (not a weight): :meth:`set_test_rate` applies
    to functions already traced, so a search over r' needs no rebuilt model. ``off`` mode: identity.
    """

    def __init__(self, rate, test_rate=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = checks.rate(rate, "rate")
        test_rate = self.rate if test_rate is None else checks.rate(test_rate, "test_rate")
        self._test_rate = tf.Variable(test_rate, dtype=tf.float32, trainable=False, name="test_rate")

    @property
    def test_rate(self):
        return float(self._test_rate.numpy())

    def set_test_rate(self, test_rate):
        """Sets r' (takes effect in already traced functions)."""
        self._test_rate.assign(checks.rate(test_rate, "test_rate"))

    def rate_in_use(self, training=None):
        """The rate applied for this ``training`` flag (a Python bool / None, or a boolean tensor)."""
        if training is None or isinstance(training, bool):
            return tf.constant(self.rate, tf.float32) if training else tf.identity(self._test_rate)
        return tf.where(tf.cast(training, tf.bool), tf.constant(self.rate, tf.float32), self._test_rate)

    def call(self, inputs, training=None):
        rate = tf.cast(self.rate_in_use(training), inputs.dtype)
        uniform = tf.random.stateless_uniform(tf.shape(inputs), seed=self.next_seed(), dtype=inputs.dtype)
        dropped = tf.where(uniform >= rate, inputs / (1.0 - rate), tf.zeros_like(inputs))
        return tf.where(self.mode_is(OFF), inputs, dropped)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, test_rate=self.test_rate)
        return config
