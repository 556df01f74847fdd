"""Model surgery: a trained model rebuilt with layers inserted or replaced, its weights kept.

Wrapped defenses (SAP between FC1 and FC2, test-time dropout after FC1, a new noise layer anywhere...) are made
this way without retraining. A rebuilt model is a ``keras.Sequential`` of copies of the original layers (same
names, same weights) with the new layers in place. The original must be a plain chain of layers: the chain of
its copies must compute exactly its inference function (checked on a probe batch with randomness ``off``), so a
model with branches or shared layers is refused rather than silently changed.
"""

import keras
import numpy as np

from hrs_tf.errors import ModelError
from hrs_tf.layers import stochastic


def chain(model):
    """The layers of a plain chain model, without its input layer."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def layer_index(model, name, purpose):
    """Position of layer ``name`` in :func:`chain` of ``model``; ModelError naming ``purpose`` and the layers."""
    names = [layer.name for layer in chain(model)]
    if name not in names:
        raise ModelError(f"model {model.name!r} has no layer {name!r} ({purpose}); its layers are {', '.join(names)}")
    return names.index(name)


def rebuild(model, edit, name):
    """A ``Sequential`` of copies of ``model``'s layers, where ``edit(layer)`` returns the list of layers to
    put in its place (``layer`` itself stands for its copy); copied layers get the original weights."""
    _check_plain_chain(model)
    return _sequential(model, edit, name)


def _sequential(model, edit, name=None):
    new_layers, copies = [], []
    for layer in chain(model):
        for item in edit(layer):
            if item is layer:
                item = keras.layers.deserialize(keras.layers.serialize(layer))
                copies.append((item, layer))
            new_layers.append(item)
    rebuilt = keras.Sequential([keras.Input(shape=model.input_shape[1:])] + new_layers, name=name)
    for copy, layer in copies:
        copy.set_weights(layer.get_weights())
    return rebuilt


def insert(model, new_layer, after=None, before=None, name=None):
    """``model`` rebuilt with ``new_layer`` right after the layer named ``after`` (or right before ``before``)."""
    if (after is None) == (before is None):
        raise ModelError("insert a layer either after or before a named layer")
    anchor = after or before
    layer_index(model, anchor, f"the new layer {new_layer.name!r} goes {'after' if after else 'before'} it")

    def edit(item):
        if item.name != anchor:
            return [item]
        return [item, new_layer] if after else [new_layer, item]

    return rebuild(model, edit, name or f"{model.name}_{new_layer.name}")


def replace(model, old_name, new_layer, name=None):
    """``model`` rebuilt with the layer named ``old_name`` replaced by ``new_layer``."""
    layer_index(model, old_name, "the layer to replace")
    return rebuild(model, lambda item: [new_layer] if item.name == old_name else [item],
                   name or f"{model.name}_{new_layer.name}")


def _check_plain_chain(model):
    """ModelError unless the chain of copies of ``model``'s layers computes its inference outputs (randomness off):
    a model that is not a plain chain of layers cannot be rebuilt layer by layer."""
    probe = np.random.default_rng(0).random((2,) + tuple(model.input_shape[1:])).astype(np.float32)
    copy = _sequential(model, lambda layer: [layer])
    with stochastic.randomness(model, stochastic.OFF), stochastic.randomness(copy, stochastic.OFF):
        expected = np.asarray(model(probe, training=False))
        got = np.asarray(copy(probe, training=False))
    if expected.shape != got.shape or not np.allclose(expected, got, rtol=1e-5, atol=1e-5):
        raise ModelError(f"model {model.name!r} is not a plain chain of layers (conv1 .. logits); "
                         "the defense layer cannot be inserted into it")
