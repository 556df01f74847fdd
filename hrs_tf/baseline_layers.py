"""Stochastic layers of the baseline defenses the HRS paper compares with (REFERENCE sections 2-3).

- :class:`DefensiveDropout` (Wang et al., ICCAD 2018, section 3.2): dropout that stays on at test time
  and under attack, with a train rate r and a test rate r', each with inverted scaling 1 / (1 - rate);
- :class:`StochasticActivationPruning` (Dhillon et al., ICLR 2018, eq. 7-8 of the defensive-dropout
  paper): the exact sampling-with-replacement form, or the approximation the HRS authors used;
- :class:`GaussianNoiseInjection` (Liu et al. 2018, random self-ensemble; HRS appendix C.2): additive
  Gaussian noise, on in training and at test.

All are :class:`hrs_tf.stochastic.StochasticLayer`\\ s: random whatever the ``training`` flag (attack
libraries call models in inference mode), drawing inside ``call()`` from TF stateless ops seeded by
``next_seed()`` (fresh on every execution, also in traced functions), with the randomness modes
``random`` / ``pinned`` (one fixed realisation per input shape) / ``off`` (identity).
"""

import keras
import numpy as np
import tensorflow as tf

from hrs_tf.attacks import common
from hrs_tf.errors import ConfigError
from hrs_tf.stochastic import OFF, StochasticLayer

SAP_VARIANTS = ("exact", "hrs")


def check_rate(rate, name="rate"):
    """A dropout rate as a float in [0, 1); ConfigError otherwise."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={rate!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}={rate!r} must be in [0, 1)")
    return value


def check_stddev(stddev, name="stddev"):
    """A noise standard deviation as a non-negative float; ConfigError otherwise."""
    return common.check_nonnegative(stddev, name)


def _scaled_mask(keep, probability):
    """``keep / probability`` where kept, 0 elsewhere (no division by a zero probability)."""
    safe = tf.where(keep, probability, tf.ones_like(probability))
    return tf.where(keep, 1.0 / safe, tf.zeros_like(probability))


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
        self.rate = check_rate(rate, "rate")
        test_rate = self.rate if test_rate is None else check_rate(test_rate, "test_rate")
        self._test_rate = tf.Variable(test_rate, dtype=tf.float32, trainable=False, name="test_rate")

    @property
    def test_rate(self):
        return float(self._test_rate.numpy())

    def set_test_rate(self, test_rate):
        """Sets r' (takes effect in already traced functions)."""
        self._test_rate.assign(check_rate(test_rate, "test_rate"))

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


@keras.saving.register_keras_serializable(package="hrs_tf")
class StochasticActivationPruning(StochasticLayer):
    """SAP (Dhillon et al. 2018; REFERENCE section 3), per example over all non-batch elements h:

    p_i = |h_i| / sum_j |h_j| (eq. 7 of the defensive-dropout paper);

    - ``exact`` (the SAP author's code): S = number of units draws with replacement from Categorical(p);
      units drawn at least once are kept and scaled by 1 / q_i with q_i = 1 - (1 - p_i)^S (eq. 8), the
      others are zeroed;
    - ``hrs`` (the HRS authors' copy of the obfuscated-gradients code): each unit is kept independently
      with probability q_i = 1 - exp(-N p_i), N = 2 x units, and scaled by 1 / q_i.

    Both are unbiased (E[out] = h). The gradient is the upstream gradient times the mask (the mask is a
    constant for differentiation). An all-zero example stays zero. ``off`` mode: identity.
    """

    def __init__(self, variant="exact", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if variant not in SAP_VARIANTS:
            raise ConfigError(f"SAP variant {variant!r} is not one of {', '.join(SAP_VARIANTS)}")
        self.variant = variant

    def keep_probabilities(self, h):
        """q_i per element of a (batch, units) tensor: the probability that unit i survives."""
        units = int(h.shape[-1])
        magnitude = tf.abs(h)
        total = tf.reduce_sum(magnitude, axis=-1, keepdims=True)
        p = magnitude / tf.where(total > 0, total, tf.ones_like(total))
        if self.variant == "exact":
            return -tf.math.expm1(units * tf.math.log1p(-p))  # 1 - (1 - p)^S, accurate for tiny p
        return -tf.math.expm1(-2.0 * units * p)  # 1 - exp(-N p)

    def mask(self, h, seed):
        """The scaled keep mask (keep / q) of a (batch, units) tensor, drawn with ``seed``."""
        units = int(h.shape[-1])
        q = self.keep_probabilities(h)
        if self.variant == "hrs":
            keep = tf.random.stateless_uniform(tf.shape(h), seed=seed, dtype=h.dtype) < q
            return _scaled_mask(keep, q)
        magnitude = tf.abs(h)
        positive = magnitude > 0
        # Log-probabilities of the categorical per example; an all-zero example draws uniformly (and keeps
        # nothing, as no unit of it is positive).
        any_positive = tf.reduce_any(positive, axis=-1, keepdims=True)
        logits = tf.where(any_positive, tf.math.log(magnitude), tf.zeros_like(magnitude))
        draws = tf.random.stateless_categorical(logits, units, seed=seed, dtype=tf.int32)  # (batch, S)
        rows = tf.broadcast_to(tf.range(tf.shape(h)[0])[:, None], tf.shape(draws))
        index = tf.reshape(tf.stack([rows, draws], axis=-1), [-1, 2])
        counts = tf.scatter_nd(index, tf.ones([tf.shape(index)[0]], tf.int32), tf.shape(h, out_type=tf.int32))
        keep = tf.logical_and(counts > 0, positive)
        return _scaled_mask(keep, q)

    def call(self, inputs, training=None):
        units = int(np.prod(inputs.shape[1:]))
        flat = tf.reshape(tf.stop_gradient(inputs), [-1, units])
        scale = tf.reshape(self.mask(flat, self.next_seed()), tf.shape(inputs))
        return tf.where(self.mode_is(OFF), inputs, inputs * scale)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["variant"] = self.variant
        return config


@keras.saving.register_keras_serializable(package="hrs_tf")
class GaussianNoiseInjection(StochasticLayer):
    """Additive N(0, stddev^2) noise on every element, in training and at test (random self-ensemble,
    Liu et al. 2018; HRS appendix C.2). ``off`` mode: identity."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = check_stddev(stddev)

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
