"""Randomness control shared by every stochastic layer of the project.

A stochastic layer (``RandomSwitch``, ``DefensiveDropout``, SAP, Gaussian noise, ``RandomSpiking``...)

- is random whatever the ``training`` flag: attack libraries call models in inference mode, and a
  defense that switched itself off there would be evaluated as the undefended model;
- draws inside ``call()`` from a ``keras.random.SeedGenerator`` owned by the layer, so a new draw is made
  on every forward execution, also inside traced ``tf.function``\\ s (never frozen at trace time);
- has a runtime *randomness mode*, kept in a TF variable that is not a weight (never saved, and a change
  takes effect in functions already traced, e.g. a cached ``model.predict``):

  ``random``  a fresh draw on every forward execution (deployment);
  ``pinned``  one fixed realisation (a fixed HRS path; a fixed noise / mask seed), for deterministic
              tests and fixed-randomness attacks;
  ``off``     the deterministic model the randomness was added to (HRS: channel 0 of every block, the
              reference's fixed-randomness path; noise layers: identity).
"""

import contextlib
import zlib

import keras
import tensorflow as tf

from hrs_tf.errors import ConfigError, ModelError

RANDOM, PINNED, OFF = "random", "pinned", "off"
MODES = (RANDOM, PINNED, OFF)
PINNED_SEED = 20190810  # seed of the pinned realisation, combined with the layer's own seed


class StochasticLayer(keras.layers.Layer):
    """Base class: seed generator, randomness mode, and the seed to draw from in ``call()``."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._mode = tf.Variable(MODES.index(RANDOM), dtype=tf.int32, trainable=False, name="randomness_mode")
        self.supports_jit = False  # data-dependent control flow (switch_case, dynamic_partition)

    @property
    def randomness(self):
        """The current randomness mode: ``"random"``, ``"pinned"`` or ``"off"``."""
        return MODES[int(self._mode.numpy())]

    def set_randomness(self, mode):
        if mode not in MODES:
            raise ConfigError(f"randomness mode {mode!r} is not one of {', '.join(MODES)}")
        self._mode.assign(MODES.index(mode))

    def mode_is(self, mode):
        """Boolean tensor: is the layer in ``mode`` now (read at run time, not at trace time)."""
        return tf.equal(self._mode, MODES.index(mode))

    def next_seed(self):
        """A seed tensor for TF stateless random ops: fresh each call, or fixed in ``pinned`` mode."""
        fresh = self.seed_generator.next()
        # Distinct per layer (by name) so that two unseeded layers do not share one pinned realisation.
        own = self.seed if self.seed is not None else zlib.crc32(self.name.encode()) % (2**31)
        pinned = tf.constant([PINNED_SEED, own], dtype=fresh.dtype)
        return tf.where(self.mode_is(PINNED), pinned, fresh)

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


def stochastic_layers(model):
    """Every :class:`StochasticLayer` inside ``model`` (nested models included), in layer order."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, StochasticLayer):
            found.append(layer)
        found.extend(stochastic_layers(layer))
    return found


def set_randomness(model, mode):
    """Sets the randomness mode of every stochastic layer of ``model``; returns the previous modes."""
    layers = stochastic_layers(model)
    previous = [layer.randomness for layer in layers]
    for layer in layers:
        layer.set_randomness(mode)
    return previous


@contextlib.contextmanager
def randomness(model, mode):
    """Context in which every stochastic layer of ``model`` runs in ``mode``; restored afterwards."""
    layers = stochastic_layers(model)
    previous = set_randomness(model, mode)
    try:
        yield model
    finally:
        for layer, old in zip(layers, previous):
            layer.set_randomness(old)


def require_stochastic(model, kind=StochasticLayer):
    """The stochastic layers of type ``kind`` in ``model``; ModelError if there are none."""
    layers = [layer for layer in stochastic_layers(model) if isinstance(layer, kind)]
    if not layers:
        raise ModelError(f"model {model.name!r} has no {kind.__name__} layer")
    return layers
