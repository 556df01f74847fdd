"""``RandomSwitch``: one switching block of hierarchical random switching (HRS paper section 5.1).

The block holds N parallel channels of identical structure and different weights. On every forward
execution one channel is drawn uniformly at random (independently of every other block) and only
that channel is computed: inactive channels get no gradient (REFERENCE section 1; the published code
computes all N and masks, which is N times slower for the same result).

Granularity:

- ``batch``:  one channel for the whole batch, as the published code (one path per training
  mini-batch, per predict batch, per attack step);
- ``sample``: every example draws its own channel, equivalent to the reference's one-image-at-a-time
  evaluation, computed batched (examples are grouped by channel and regrouped afterwards).

The configured granularity is saved; :func:`hrs_tf.layers.stochastic.per_example` makes a ``batch`` switch draw
per example while it is active (read when ``call()`` runs eagerly or is traced: eager calls, ``model.predict`` and
the attacks' cached functions follow it; see that function).

Randomness protocols (see :mod:`hrs_tf.layers.stochastic`): the channels are the layer's discrete
realisations (``pin``); ``pinned`` mode uses :attr:`pinned_channel`; ``off`` uses channel 0, the reference's
fixed-randomness path.
"""

import keras
import numpy as np
import tensorflow as tf

from hrs_tf.errors import ConfigError
from hrs_tf.layers.stochastic import OFF, PINNED, StochasticLayer, stochastic_layers

GRANULARITIES = ("batch", "sample")


@keras.saving.register_keras_serializable(package="hrs_tf")
class RandomSwitch(StochasticLayer):
    """Switching block: N channel sub-models, one active per forward execution (per batch or per example).

    Args:
        channels: list of Keras layers / models with identical input and output shapes.
        granularity: ``"batch"`` (one draw per forward pass) or ``"sample"`` (one draw per example).
        seed: seed of the layer's SeedGenerator (``None``: nondeterministic).
    """

    def __init__(self, channels, granularity="batch", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        channels = list(channels)
        if not channels:
            raise ConfigError("a RandomSwitch needs at least one channel")
        if granularity not in GRANULARITIES:
            raise ConfigError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
        self.channels = channels
        self.granularity = granularity
        self._pinned = tf.Variable(0, dtype=tf.int32, trainable=False, name="pinned_channel")
        self._per_example = granularity == "sample"  # read at call / trace time (see set_per_example)
        self._last = tf.Variable(tf.zeros([0], tf.int32), shape=tf.TensorShape([None]), trainable=False,
                                 name="last_channels")

    @property
    def num_channels(self):
        return len(self.channels)

    def build(self, input_shape):
        for channel in self.channels:
            if not channel.built:
                channel.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.channels[0].compute_output_shape(input_shape)

    # -- randomness -------------------------------------------------------------------------------
    @property
    def pinned_channel(self):
        return int(self._pinned.numpy())

    def pin(self, channel):
        """Pins the active channel to ``channel`` (and the layer to ``pinned`` mode)."""
        channel = int(channel)
        if not 0 <= channel < self.num_channels:
            raise ConfigError(f"channel {channel} is out of range for {self.name!r} with {self.num_channels} channels")
        self._pinned.assign(channel)
        self.set_randomness(PINNED)

    @property
    def num_realisations(self):
        return self.num_channels

    @property
    def pinned_realisation(self):
        return self.pinned_channel

    @property
    def shares_draw_across_batch(self):
        return self.granularity == "batch"

    def set_per_example(self, per_example):
        self._per_example = bool(per_example) or self.granularity == "sample"

    @property
    def last_channels(self):
        """Channels used by the last forward execution: one entry (batch) or one per example (sample)."""
        return self._last.numpy()

    def _active_channels(self, count):
        drawn = tf.random.stateless_uniform([count], seed=self.next_seed(), minval=0, maxval=self.num_channels,
                                            dtype=tf.int32)
        fixed = tf.where(self.mode_is(OFF), 0, self._pinned)
        return tf.where(self.mode_is(PINNED) | self.mode_is(OFF), tf.fill([count], fixed), drawn)

    # -- forward ----------------------------------------------------------------------------------
    def call(self, inputs, training=None):
        # A Python choice, not a tf.cond: a graph holding both ways costs twice the tracing of every attack.
        if self._per_example:
            outputs, active = self._per_example_call(inputs, training)
        else:
            outputs, active = self._per_batch_call(inputs, training)
        self._last.assign(active)
        return outputs

    def _per_batch_call(self, inputs, training):
        active = self._active_channels(1)
        branches = [lambda c=c: c(inputs, training=training) for c in self.channels]
        return tf.switch_case(active[0], branches), active

    def _per_example_call(self, inputs, training):
        batch = tf.shape(inputs)[0]
        active = self._active_channels(batch)
        groups = tf.dynamic_partition(inputs, active, self.num_channels)
        positions = tf.dynamic_partition(tf.range(batch), active, self.num_channels)
        outputs = [self._run_nonempty(channel, group, training) for channel, group in zip(self.channels, groups)]
        return tf.dynamic_stitch(positions, outputs), active

    def _run_nonempty(self, channel, group, training):
        """``channel(group)``, or an empty result when no example drew the channel.

        Skips the work, and sidesteps TF's CPU Conv2D returning wrong shapes on a zero-size batch.
        """
        out_shape = channel.compute_output_shape((None,) + tuple(group.shape[1:]))
        empty = lambda: tf.zeros([0] + list(out_shape[1:]), dtype=self.compute_dtype)  # noqa: E731
        return tf.cond(tf.shape(group)[0] > 0, lambda: channel(group, training=training), empty)

    # -- serialization ----------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config["granularity"] = self.granularity
        config["channels"] = [keras.saving.serialize_keras_object(c) for c in self.channels]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["channels"] = [keras.saving.deserialize_keras_object(c) for c in config["channels"]]
        return cls(**config)


def channel_counts(model):
    """Channel counts of the switching blocks of ``model`` in forward order, e.g. ``[5, 5]``."""
    return [layer.num_channels for layer in switches(model)]


def switches(model):
    """The :class:`RandomSwitch` layers of ``model`` in forward order."""
    return [layer for layer in stochastic_layers(model) if isinstance(layer, RandomSwitch)]


def last_path(model):
    """Per block, the channels used by the last forward execution (arrays)."""
    return [np.asarray(layer.last_channels) for layer in switches(model)]
