"""``StochasticActivationPruning`` (Dhillon et al., ICLR 2018; REFERENCE section 3; eq. 7-8 of the
defensive-dropout paper): the exact sampling-with-replacement form, or the approximation the HRS authors used."""

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.layers.stochastic import OFF, StochasticLayer

VARIANTS = ("exact", "hrs")


def _scaled_mask(keep, probability):
    """``keep / probability`` where kept, 0 elsewhere (no division by a zero probability)."""
    safe = tf.where(keep, probability, tf.ones_like(probability))
    return tf.where(keep, 1.0 / safe, tf.zeros_like(probability))


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
        self.variant = checks.choice(variant, "SAP variant", VARIANTS)

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
