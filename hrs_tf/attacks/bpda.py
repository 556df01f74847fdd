"""BPDA hook: replace the backward pass of named layers, leaving their forward pass unchanged
(Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a false sense of security", section 4.1).

Inside ``with bpda(model, {"quantize": "identity", "spike": surrogate}):`` every call of those layers
returns the layer's own output, but gradients flow as if the layer were

- ``"identity"`` / ``None``: the identity (straight-through; the layer's output must have its input's shape);
- a callable ``g``: the differentiable surrogate ``g(inputs)`` (e.g. ``tf.nn.sigmoid`` in place of a
  softmax, or a smooth approximation of a quantiser), i.e. the input gradient is ``J_g(x)^T dy``.

The patch is an instance-level override of ``layer.call`` (Keras calls ``self.call``) built with
``tf.custom_gradient``; it is undone when the context exits. Layers are found by name anywhere in the
model, nested models included (e.g. inside the channels of an HRS switch). Attacks trace their
``tf.function`` on each call, so the patch applies to every attack run inside the context.
Weights get no gradient through a patched layer (attacks only need input gradients).

``bpda(model)`` without replacements patches every layer that declares a ``bpda_surrogate`` (the layers a
defense marks as masking gradients, :func:`hrs_tf.layers.stochastic.bpda_layers`).
"""

import contextlib

import tensorflow as tf

from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import stochastic

IDENTITY = "identity"


def find_layers(model, name):
    """Every layer called ``name`` inside ``model`` (nested models and HRS channels included)."""
    return [layer for layer in stochastic.walk(model) if layer.name == name]


def _patched_call(layer, original, surrogate):
    def call(inputs, *args, **kwargs):
        @tf.custom_gradient
        def forward(x):
            out = original(x, *args, **kwargs)

            def backward(dy, variables=None):
                if surrogate is None:
                    if dy.shape.rank != x.shape.rank or (dy.shape.is_fully_defined() and x.shape.is_fully_defined()
                                                         and dy.shape != x.shape):
                        raise ModelError(f"BPDA identity on layer {layer.name!r} needs its output shape {dy.shape} "
                                         f"to equal its input shape {x.shape}; pass a surrogate instead")
                    dx = dy
                else:
                    with tf.GradientTape(watch_accessed_variables=False) as tape:
                        tape.watch(x)
                        s = surrogate(x)
                    dx = tape.gradient(s, x, output_gradients=dy)
                    dx = tf.zeros_like(x) if dx is None else dx
                return (dx, [None] * len(variables)) if variables is not None else dx

            return out, backward

        return forward(tf.convert_to_tensor(inputs))

    return call


def _check_identity_shapes(layer):
    """ModelError if the layer's known output shape differs from its input shape (identity impossible)."""
    try:
        shape_in, shape_out = tuple(layer.input.shape), tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return  # not (yet) part of a graph: checked when the gradient is taken
    if shape_in != shape_out:
        raise ModelError(f"BPDA identity on layer {layer.name!r} needs its output shape {shape_out} to equal its "
                         f"input shape {shape_in}; pass a differentiable surrogate instead")


@contextlib.contextmanager
def bpda(model, replacements=None):
    """Context replacing the backward pass of the named layers: ``{name: "identity" | None | callable}``;
    ``None``: every layer of ``model`` that declares a ``bpda_surrogate``."""
    if replacements is None:
        replacements = {layer.name: surrogate for layer, surrogate in stochastic.bpda_layers(model).items()}
        if not replacements:
            raise ModelError(f"model {getattr(model, 'name', '?')!r} has no layer that declares a BPDA surrogate")
    if not isinstance(replacements, dict) or not replacements:
        raise ConfigError("bpda needs a dict {layer name: 'identity' or a differentiable surrogate}")
    patches = []
    for name, surrogate in replacements.items():
        if surrogate == IDENTITY:
            surrogate = None
        if surrogate is not None and not callable(surrogate):
            raise ConfigError(f"BPDA replacement for {name!r} must be 'identity' or a callable, not {surrogate!r}")
        layers = find_layers(model, name)
        if not layers:
            raise ModelError(f"model {getattr(model, 'name', '?')!r} has no layer named {name!r} for BPDA")
        for layer in layers:
            if surrogate is None:
                _check_identity_shapes(layer)
            patches.append((layer, surrogate))
    from hrs_tf.attacks import backends, gradients

    saved = []
    gradients.bump_generation()
    try:
        for layer, surrogate in patches:
            had_own = "call" in layer.__dict__
            original = layer.call
            saved.append((layer, had_own, layer.__dict__.get("call")))
            object.__setattr__(layer, "call", _patched_call(layer, original, surrogate))
        with backends.refused("under BPDA (it differentiates the layers as they are)"):
            yield model
    finally:
        for layer, had_own, previous in reversed(saved):
            if had_own:
                object.__setattr__(layer, "call", previous)
            else:
                object.__delattr__(layer, "call")
        gradients.bump_generation()


def through_bpda(attack, replacements=None):
    """``attack`` crafted inside :func:`bpda` on its model (the layers' declared surrogates when ``replacements`` is
    None): a wrapper like EOT and fixed randomness, usable wherever an attack function is (e.g. the protocol)."""
    import functools

    @functools.wraps(attack)
    def wrapped(model, x, y, *args, **kwargs):
        with bpda(model, replacements):
            return attack(model, x, y, *args, **kwargs)

    return wrapped
