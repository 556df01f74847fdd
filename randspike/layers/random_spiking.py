"""``RandomSpiking``: the Random Spiking layer (Random Spiking paper, section 4 "Generating Random Noises";
REFERENCE section 4).

Every element is kept with probability ``keep_prob`` (the paper's p = 0.8) and otherwise *spiked*: replaced by a value
drawn uniformly in [min, max) of the **whole batch tensor** (the paper: "the minimum and maximum values are computed
from the whole batch"). Kept elements are not rescaled. The noise is behind a stop-gradient: a spiked element passes
zero gradient to its input, a kept one passes it unchanged, and nothing flows through min / max.

Random whatever the ``training`` flag (on in training, inference and under attack). ``pinned``: one fixed mask and
noise realisation; ``off``: identity. ``range_over="sample"`` takes min / max per example instead (the published
code's unused variant).

Batch-level min / max makes an image's prediction depend on the other images of its batch: the layer declares
``shares_draw_across_batch`` so that :func:`hrs_tf.layers.stochastic.per_example` switches it to the per-example
range, which equals evaluating each image alone. The paper's batch semantics stay the default of every evaluation
(``reference_per_example = False``: :func:`hrs_tf.evaluation.metrics.clean_accuracy` keeps them; see
:mod:`randspike.decision`).

The stop-gradient zeroes the gradient of the spiked elements (about 1 - p of them on every pass), a partial
gradient an adaptive attacker should not accept: the layer declares ``bpda_surrogate = "identity"``, so BPDA
(:mod:`hrs_tf.attacks.bpda`, Athalye et al. 2018 section 4.1) passes every element's gradient as if it were kept.
"""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.layers.stochastic import OFF, StochasticLayer

RANGES = ("batch", "sample")


def keep_probability(value, name="keep_prob"):
    """``value`` as a float in (0, 1]; ConfigError otherwise."""
    p = checks.number(value, name)
    if not 0.0 < p <= 1.0:
        raise ConfigError(f"{name}={value!r} must be in (0, 1] (the probability of keeping an element)")
    return p


@keras.saving.register_keras_serializable(package="randspike")
class RandomSpiking(StochasticLayer):
    """Keeps each element with probability ``keep_prob``; replaces the others by U[min, max) of the batch tensor
    (``range_over="batch"``) or of the example (``"sample"``), behind a stop-gradient."""

    reference_per_example = False  # the paper's code predicts in batches: the batch range is the default semantics
    bpda_surrogate = "identity"  # backward pass as if every element were kept (the stop-gradient masks 1 - p of them)

    def __init__(self, keep_prob=0.8, range_over="batch", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.keep_prob = keep_probability(keep_prob)
        if range_over not in RANGES:
            raise ConfigError(f"range_over={range_over!r} must be one of {', '.join(RANGES)}")
        self.range_over = range_over
        self._per_example = range_over == "sample"  # read at call / trace time (see set_per_example)
        self.supports_jit = True

    @property
    def shares_draw_across_batch(self):
        return self.range_over == "batch"

    def set_per_example(self, per_example):
        self._per_example = bool(per_example) or self.range_over == "sample"

    def call(self, inputs, training=None):
        axes = list(range(1, len(inputs.shape))) if self._per_example else None
        low = tf.reduce_min(inputs, axis=axes, keepdims=axes is not None)
        high = tf.reduce_max(inputs, axis=axes, keepdims=axes is not None)
        if axes is None:
            low, high = tf.fill(tf.shape(inputs)[:1], low), tf.fill(tf.shape(inputs)[:1], high)
        else:
            low, high = tf.reshape(low, [-1]), tf.reshape(high, [-1])
        bits = tf.random.stateless_uniform([(tf.size(inputs) + 1) // 2], seed=self.next_seed(), minval=None,
                                           maxval=None, dtype=tf.uint32)
        return _spike(inputs, bits, low, high, tf.constant(self.keep_prob, inputs.dtype), self.mode_is(OFF))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(keep_prob=self.keep_prob, range_over=self.range_over)
        return config


@tf.function(jit_compile=True)
def _spike(inputs, bits, low, high, keep_prob, off):
    """The element-wise part of the layer, fused by XLA into one pass (the random bits come from TF's Philox kernel:
    XLA's own generator is far slower on CPU). Each 32-bit draw gives two 16-bit uniforms u on [0, 1): an element is
    kept iff u < p (P(keep) = ceil(65536 p) / 65536, within 2e-5 of p); a spiked element's u is uniform on [p, 1), so
    (u - p) / (1 - p) places it uniformly in [low, high) of its example's range (13,107 levels at p = 0.8)."""
    flat = tf.reshape(inputs, [tf.shape(inputs)[0], -1])
    size = tf.size(flat)
    halves = tf.stack([tf.bitwise.bitwise_and(bits, 0xFFFF), tf.bitwise.right_shift(bits, 16)], axis=1)
    u = tf.reshape(tf.cast(tf.reshape(halves, [-1])[:size], inputs.dtype) * (1.0 / 65536.0), tf.shape(flat))
    keep = (u < keep_prob) | off
    spread = (u - keep_prob) / tf.maximum(1.0 - keep_prob, 1e-12)
    noise = tf.stop_gradient(low[:, None] + spread * (high - low)[:, None])
    return tf.reshape(tf.where(keep, flat, noise), tf.shape(inputs))


def spiking_layers(model):
    """The :class:`RandomSpiking` layers inside ``model`` at any depth."""
    from hrs_tf.layers.stochastic import walk

    return [layer for layer in walk(model) if isinstance(layer, RandomSpiking)]
