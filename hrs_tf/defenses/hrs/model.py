"""HRS-protected models: a base architecture cut into blocks, each block a :class:`RandomSwitch`.

The active path at any time has the structure of the base model (HRS paper section 5.1, Figure 3).
"""

import os
import re

import keras

from hrs_tf import models
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers.random_switch import RandomSwitch, channel_counts, last_path, switches  # noqa: F401  (HRS helpers)
from hrs_tf.models import serialization


def parse_channels(text):
    """``"5,5"`` / ``"10x10"`` / ``[5, 5]`` / ``"test_hrs[10][10]"`` -> ``(5, 5)`` (1 to 3 blocks)."""
    if isinstance(text, (list, tuple)):
        found = [str(c).strip() for c in text]
    else:
        s = str(text)
        found = re.findall(r"\[(\d+)\]", s) if "[" in s else re.split(r"[,x*\s]+", s.strip())
    try:
        counts = tuple(int(c) for c in found if c != "")
    except ValueError:
        raise ConfigError(f"channels {text!r} is not a list of channel counts like 5,5") from None
    if not 1 <= len(counts) <= 3 or min(counts) < 1:
        raise ConfigError(f"channels {text!r}: need 1 to 3 blocks, each with at least one channel")
    return counts


def channel_name(block, channel):
    """Name of channel ``channel`` of block ``block`` (both 0-based, as the published files)."""
    return f"block{block}_channel{channel}"


def build_hrs_model(arch, channels, granularity="batch", seed=None, dropout_rate=None, name=None):
    """An HRS model: ``len(channels)`` switching blocks of ``arch`` with the given channel counts.

    Blocks follow the paper's 1-, 2- or 3-block split (:data:`hrs_tf.models.BLOCK_STARTS`); weights are
    freshly initialised (load trained channels with :func:`set_channel_weights` / the trainers).
    """
    arch = models.get_architecture(arch)
    channels = parse_channels(channels)
    ranges = models.block_ranges(arch, len(channels), dropout_rate)
    inputs = keras.Input(shape=arch.input_shape)
    h = inputs
    for b, (layer_names, count) in enumerate(zip(ranges, channels)):
        block_channels = [models.build_block(arch, layer_names, channel_name(b, c), dropout_rate) for c in range(count)]
        block_seed = None if seed is None else int(seed) * 1000 + b
        h = RandomSwitch(block_channels, granularity=granularity, seed=block_seed, name=f"switch{b}")(h)
    shape = "x".join(map(str, channels))
    return keras.Model(inputs, h, name=name or f"hrs_{arch.name}_{shape}")


def path_model(model, path, name=None):
    """The deterministic plain model of one path: the chosen channels composed (weights shared)."""
    blocks = switches(model)
    if len(path) != len(blocks):
        raise ConfigError(f"path {list(path)} has {len(path)} entries; model {model.name!r} has {len(blocks)} switching blocks")
    inputs = keras.Input(shape=model.input_shape[1:])
    h = inputs
    for layer, channel in zip(blocks, path):
        if not 0 <= channel < layer.num_channels:
            raise ConfigError(f"channel {channel} is out of range for {layer.name!r} with {layer.num_channels} channels")
        h = layer.channels[channel](h)
    return keras.Model(inputs, h, name=name or f"{model.name}_path_" + "_".join(map(str, path)))


def with_granularity(model, granularity, seed=None):
    """A copy of HRS ``model`` (same weights) whose switching blocks draw per ``granularity`` (saved with it;
    to draw per example only for an evaluation, :func:`hrs_tf.layers.stochastic.per_example` needs no copy)."""
    arch = infer_architecture(model)
    copy = build_hrs_model(arch, channel_counts(model), granularity=granularity, seed=seed,
                           dropout_rate=_dropout_rate(model))
    copy.set_weights(model.get_weights())
    return copy


def subset_model(model, counts, granularity=None, seed=None):
    """An HRS model made of the first ``counts[b]`` channels of each block of ``model`` (weights copied).

    Cheap strength sweeps (e.g. 2x2 .. 10x10 out of one 10x10 model) for the DES study. Unlike a k x k
    model trained on its own, its upper channels were trained on top of all of the original's lower
    channels; reports that use it say so.
    """
    blocks = switches(model)
    counts = parse_channels(counts)
    if len(counts) != len(blocks) or any(not 1 <= k <= layer.num_channels for k, layer in zip(counts, blocks)):
        raise ConfigError(f"channels {list(counts)} do not fit within model {model.name!r} with {channel_counts(model)}")
    granularity = granularity or blocks[0].granularity
    subset = build_hrs_model(infer_architecture(model), counts, granularity=granularity, seed=seed,
                             dropout_rate=_dropout_rate(model))
    for b, k in enumerate(counts):
        for c in range(k):
            set_channel_weights(subset, b, c, blocks[b].channels[c])
    return subset


def _dropout_rate(model):
    for layer in switches(model)[0].channels[0].layers:
        if isinstance(layer, keras.layers.Dropout):
            return layer.rate
    return 0.0


def infer_architecture(model):
    """The base architecture an HRS model was built from (by its input shape and conv padding)."""
    first = switches(model)
    if not first:
        raise ModelError(f"model {model.name!r} has no RandomSwitch layer; it is not an HRS model")
    conv = first[0].channels[0].get_layer("conv1")
    for arch in models.ARCHITECTURES.values():
        if tuple(arch.input_shape) == tuple(model.input_shape[1:]) and arch.padding == conv.padding and \
                arch.conv_widths[0] == conv.filters:
            return arch
    raise ModelError(f"model {model.name!r} does not match any known architecture")


def set_channel_weights(model, block, channel, source):
    """Copies weights into channel ``channel`` of block ``block`` from a model or a legacy weights file."""
    blocks = switches(model)
    target = blocks[block].channels[channel]
    if isinstance(source, (str, os.PathLike)):
        serialization.load_legacy_weights(target, source)
    else:
        target.set_weights(source.get_weights())


def published_channel_file(folder, block, channel):
    """Path of a per-channel weights file of the published layout (``<block>_<channel>``, 0-based)."""
    for candidate in (f"{block}_{channel}", f"{block}_{channel}.h5"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise ModelError(f"channel file {block}_{channel} (block {block}, channel {channel}) is missing in {folder!r}")


def load_published_hrs(folder, arch, channels=None, granularity="batch", seed=None):
    """Builds an HRS model from per-channel Keras-2 weight files ``<block>_<channel>`` in ``folder``.

    This is how the published repo stores a trained model (e.g. ``Model/MNIST_models/test_hrs[10][10]``);
    ``channels`` defaults to the counts written in the folder name.
    """
    if not os.path.isdir(folder):
        raise ModelError(f"HRS weights folder {folder!r} does not exist")
    if channels is None:
        name = os.path.basename(os.path.normpath(folder))
        if "[" not in name:
            raise ConfigError(f"cannot read channel counts from folder name {name!r}; pass channels= (e.g. 10,10)")
        channels = parse_channels(name)
    model = build_hrs_model(arch, channels, granularity=granularity, seed=seed)
    for b, count in enumerate(parse_channels(channels)):
        for c in range(count):
            set_channel_weights(model, b, c, published_channel_file(folder, b, c))
    return model
