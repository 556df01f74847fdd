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

Generic protocols, so that attacks, metrics and BPDA never need to know a layer's class:

- *discrete realisations*: a layer with finitely many realisations (``num_realisations``, e.g. the channels
  of an HRS switch) can be pinned to one of them (``pin(index)``); :func:`pinned` pins every such layer of a
  model to a path such as ``(3, 1)``, and :func:`fixed_realisation` is the crafting model of a
  fixed-randomness attack;
- *per-example draws*: a layer whose draw is shared by a whole batch (``shares_draw_across_batch``, e.g. an
  HRS switch in ``batch`` granularity) can be told to draw per example (``set_per_example``), which equals the
  papers' one-image-at-a-time evaluation; :func:`per_example` does it for a whole model;
- *BPDA*: a layer whose backward pass an adaptive attacker should replace declares ``bpda_surrogate``
  (``"identity"`` or a differentiable function of the layer input); :func:`bpda_layers` lists them.

Layers are found at any depth (:func:`walk`): inside nested models, inside ``RandomSwitch`` channels, in any
layer that holds sublayers.
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
    """Base class: seed generator, randomness mode, and the seed to draw from in ``call()``.

    Subclasses with finitely many realisations override :attr:`num_realisations`, :meth:`pin` and
    :attr:`pinned_realisation`; those whose draw is shared across a batch override
    :attr:`shares_draw_across_batch` and :meth:`set_per_example`.
    """

    bpda_surrogate = None  # "identity" or a differentiable function: the backward pass BPDA should use
    # How the layer's paper evaluates a shared draw: one image at a time (True: HRS's references) or in batches
    # (False: the Random Spiking code, whose batch-wide range is part of the defense); read by evaluations that
    # follow the papers (:func:`per_example` with ``reference_only``).
    reference_per_example = True

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

    # -- discrete realisations (default: none) ---------------------------------------------------------
    @property
    def num_realisations(self):
        """How many discrete realisations the layer has (``None``: a continuum, cannot be pinned by index)."""
        return None

    @property
    def pinned_realisation(self):
        return None

    def pin(self, index):
        raise ModelError(f"layer {self.name!r} has no discrete realisations to pin")

    # -- per-example draws (default: already per element) ---------------------------------------------
    @property
    def shares_draw_across_batch(self):
        """Does one draw serve the whole batch (so that examples evaluated together share their randomness)?"""
        return False

    def set_per_example(self, per_example):
        """Draw per example (True) or as configured (False); a no-op for layers that draw per element."""

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


# -- finding layers --------------------------------------------------------------------------------------
def walk(model):
    """Every layer inside ``model`` at any depth (nested models, switch channels, sublayers), each once,
    parents before their sublayers, in forward order."""
    found, seen = [], set()

    def visit(layer):
        for sub in getattr(layer, "_layers", None) or []:
            if id(sub) not in seen:
                seen.add(id(sub))
                found.append(sub)
                visit(sub)

    visit(model)
    return found


def reseed(model, seed):
    """Restarts the seed generator of every layer inside ``model`` that has one (stochastic layers at any
    depth, Keras dropout) from ``seed`` and the layer's position: the draws that follow depend only on ``seed``,
    so an evaluation repeated with the same seed gives the same number."""
    import numpy as np

    for i, layer in enumerate(walk(model)):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(np.array([int(seed), i * 1_000_003], np.int64).astype(generator.state.dtype))


def stochastic_layers(model):
    """Every :class:`StochasticLayer` inside ``model``, at any depth, in layer order."""
    return [layer for layer in walk(model) if isinstance(layer, StochasticLayer)]


def is_stochastic(model):
    """Does ``model`` hold any stochastic layer (derived from its layers, whatever its defense is called)?"""
    return bool(stochastic_layers(model))


# -- randomness modes ------------------------------------------------------------------------------------
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


# -- discrete realisations ---------------------------------------------------------------------------------
def pinnable_layers(model):
    """The stochastic layers of ``model`` with discrete realisations (e.g. HRS switches), in forward order."""
    return [layer for layer in stochastic_layers(model) if layer.num_realisations]


def realisation_counts(model):
    """The number of realisations of each pinnable layer, e.g. ``[5, 5]`` for an HRS 5x5 model."""
    return [layer.num_realisations for layer in pinnable_layers(model)]


def pin(model, path):
    """Pins pinnable layer ``b`` of ``model`` to realisation ``path[b]``, for every such layer."""
    layers = pinnable_layers(model)
    if len(path) != len(layers):
        raise ConfigError(f"path {list(path)} has {len(path)} entries; model {model.name!r} has {len(layers)} layers "
                          "with discrete realisations")
    for layer, index in zip(layers, path):
        layer.pin(index)


@contextlib.contextmanager
def pinned(model, path):
    """Context in which ``model`` runs the fixed path ``path``; the previous modes and pins are restored."""
    layers = pinnable_layers(model)
    previous = [(layer.randomness, layer.pinned_realisation) for layer in layers]
    pin(model, path)
    try:
        yield model
    finally:
        for layer, (mode, index) in zip(layers, previous):
            layer.pin(index)
            layer.set_randomness(mode)


def parse_fixed(value):
    """``"off"`` / ``"pinned"`` / a path (``"0,3"``, ``"0x3"`` or a sequence) -> ``"off"``, ``"pinned"`` or a tuple."""
    if isinstance(value, (tuple, list)):
        text = ",".join(map(str, value))
    else:
        text = str(value).strip().lower()
        if text in (OFF, PINNED):
            return text
    try:
        path = tuple(int(c) for c in text.replace("x", ",").split(",") if c.strip() != "")
    except ValueError:
        raise ConfigError(f"fixed={value!r} must be off, pinned or a path of realisations such as 0,0") from None
    if not path or min(path) < 0:
        raise ConfigError(f"fixed={value!r} must be off, pinned or a path of realisations such as 0,0")
    return path


@contextlib.contextmanager
def fixed_realisation(model, fixed=OFF):
    """Context in which ``model`` is one fixed realisation: ``"off"`` (every stochastic layer off),
    ``"pinned"`` (each layer's pinned realisation) or a path such as ``(3, 1)`` (the layers with discrete
    realisations pinned to it, every other stochastic layer off)."""
    fixed = parse_fixed(fixed)
    if isinstance(fixed, str):
        with randomness(model, fixed):
            yield model
        return
    with randomness(model, OFF), pinned(model, fixed):
        yield model


# -- per-example draws ---------------------------------------------------------------------------------------
_trace_generation = [0]  # bumped when per-example draws start or end: functions traced before differ


def trace_generation():
    """A number that changes whenever the graph a stochastic layer traces to changes (cache keys include it)."""
    return _trace_generation[0]


@contextlib.contextmanager
def per_example(model, reference_only=False):
    """Context in which every example meets its own randomness (the papers' one-image-at-a-time evaluation),
    batched: layers whose draw is shared across a batch draw per example instead.

    The choice is made when a layer's ``call()`` runs eagerly or is traced. Eager calls (as the evaluation makes)
    and ``model.predict`` (its cached function is dropped on entry and exit) follow it, and so do the attacks'
    cached functions (:func:`trace_generation` is part of their key); a ``tf.function`` of your own traced outside
    the context keeps the per-batch draw.

    ``reference_only``: only the layers whose paper evaluates one image at a time (``reference_per_example``; not
    Random Spiking, whose paper predicts in batches).
    """
    layers = [layer for layer in stochastic_layers(model) if layer.shares_draw_across_batch
              and (layer.reference_per_example or not reference_only)]

    def switch(flag):
        for layer in layers:
            layer.set_per_example(flag)
        if layers:
            _trace_generation[0] += 1
            if hasattr(model, "predict_function"):
                model.predict_function = None

    switch(True)
    try:
        yield model
    finally:
        switch(False)


# -- BPDA ------------------------------------------------------------------------------------------------------
def bpda_layers(model):
    """``{layer: surrogate}`` of every layer inside ``model`` that declares a ``bpda_surrogate``."""
    return {layer: layer.bpda_surrogate for layer in walk(model) if getattr(layer, "bpda_surrogate", None) is not None}
