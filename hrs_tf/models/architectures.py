"""Base CNNs of the papers, built so that a model can be cut into switching blocks at named points.

Architectures (REFERENCE section 1, HRS appendix C.4 / Table A1; Keras defaults: 3x3 convs, stride 1,
Glorot-uniform kernels, zero biases, 2x2 max-pool, no batch norm, logits output):

- ``mnist``   (HRS / defensive dropout, 28x28x1, ``valid`` padding): Conv32-Conv32-Pool-Conv64-Conv64-
  Pool-Flatten(1024)-FC200-Dropout(0.3)-FC200-Logits10.  Also used for Fashion-MNIST.
- ``cifar10`` (32x32x3, ``valid``): Conv64-Conv64-Pool-Conv128-Conv128-Pool-Flatten(3200)-FC256-
  Dropout(0.7)-FC256-Logits10.
- ``rs_mnist`` (Random Spiking paper, Table 6, the C&W / MagNet MNIST model): as ``mnist`` but ``same``
  padding (Flatten 3136) and, by default, no dropout.

Plug-ins add theirs with :func:`register_architecture` (e.g. ``hashdef``'s seven-layer model, whose four convs
have the widths 64-128-128-64: ``conv_filters`` holds either the two pair widths or all four).

Every layer has a fixed name (``conv1 .. conv4, pool1, pool2, flatten, fc1, dropout, fc2, logits``), so
blocks are named by the layer they start at. The HRS splits (REFERENCE section 1):

- 1 block: the whole network;
- 2 blocks (default): block 1 = convs + FC1 (+ its dropout), block 2 = FC2 + logits;
- 3 blocks: block 1 = convs up to Flatten, block 2 = FC1 + dropout, block 3 = FC2 + logits.
"""

import dataclasses

import keras
import numpy as np

from hrs_tf.errors import ConfigError, ModelError

# Where each block after the first starts, for the paper's 1-, 2- and 3-block splits.
BLOCK_STARTS = {1: (), 2: ("fc2",), 3: ("fc1", "fc2")}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A base CNN: input shape, conv widths, padding, FC width and the train-time dropout rate."""

    name: str
    input_shape: tuple
    conv_filters: tuple  # (first pair, second pair) or the four conv widths (conv1, conv2, conv3, conv4)
    dense_units: int
    dropout_rate: float
    padding: str = "valid"
    num_classes: int = 10

    @property
    def conv_widths(self):
        """The widths of conv1 .. conv4."""
        widths = tuple(self.conv_filters)
        return widths if len(widths) == 4 else (widths[0], widths[0], widths[1], widths[1])

    def layer_names(self, dropout_rate=None):
        rate = self.dropout_rate if dropout_rate is None else dropout_rate
        names = ["conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "flatten", "fc1"]
        if rate > 0:
            names.append("dropout")
        return names + ["fc2", "logits"]


ARCHITECTURES = {
    "mnist": Architecture("mnist", (28, 28, 1), (32, 64), 200, 0.3),
    "cifar10": Architecture("cifar10", (32, 32, 3), (64, 128), 256, 0.7),
    "rs_mnist": Architecture("rs_mnist", (28, 28, 1), (32, 64), 200, 0.0, padding="same"),
}

DEFAULT_ARCHITECTURE = {"mnist": "mnist", "fashion_mnist": "mnist", "cifar10": "cifar10"}


def register_architecture(arch):
    """Adds ``arch`` (an :class:`Architecture`) to :data:`ARCHITECTURES`; the same name twice must be the same one."""
    if not isinstance(arch, Architecture):
        raise ConfigError(f"register_architecture needs an Architecture, not {type(arch).__name__}")
    if len(tuple(arch.conv_filters)) not in (2, 4):
        raise ConfigError(f"architecture {arch.name!r}: conv_filters must hold 2 pair widths or 4 conv widths")
    previous = ARCHITECTURES.get(arch.name)
    if previous is not None and previous != arch:
        raise ConfigError(f"architecture {arch.name!r} is registered twice with different settings")
    ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(arch):
    """Returns the :class:`Architecture` called ``arch`` (or ``arch`` itself if already one)."""
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, str) and arch not in ARCHITECTURES:
        from hrs_tf import plugins

        plugins.load()  # a plug-in may register it
    try:
        return ARCHITECTURES[arch]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def architecture_for(dataset, arch=None):
    """The architecture to train on ``dataset`` (a :class:`hrs_tf.data.Dataset`): ``arch`` if given, else the
    data set's default; ConfigError if its input shape is not the data set's image shape."""
    architecture = get_architecture(arch or DEFAULT_ARCHITECTURE[dataset.name])
    if tuple(architecture.input_shape) != tuple(dataset.input_shape):
        raise ConfigError(f"architecture {architecture.name!r} takes inputs {architecture.input_shape}, "
                          f"data set {dataset.name!r} has {dataset.input_shape}")
    return architecture


def _make_layer(arch, name, dropout_rate):
    widths = dict(zip(("conv1", "conv2", "conv3", "conv4"), arch.conv_widths))
    conv = dict(kernel_size=3, padding=arch.padding, activation="relu", name=name)
    L = keras.layers
    factories = {
        "conv1": lambda: L.Conv2D(widths["conv1"], **conv),
        "conv2": lambda: L.Conv2D(widths["conv2"], **conv),
        "pool1": lambda: L.MaxPooling2D(2, name=name),
        "conv3": lambda: L.Conv2D(widths["conv3"], **conv),
        "conv4": lambda: L.Conv2D(widths["conv4"], **conv),
        "pool2": lambda: L.MaxPooling2D(2, name=name),
        "flatten": lambda: L.Flatten(name=name),
        "fc1": lambda: L.Dense(arch.dense_units, activation="relu", name=name),
        "dropout": lambda: L.Dropout(dropout_rate, name=name),
        "fc2": lambda: L.Dense(arch.dense_units, activation="relu", name=name),
        "logits": lambda: L.Dense(arch.num_classes, name=name),
    }
    return factories[name]()


def block_ranges(arch, num_blocks, dropout_rate=None):
    """Layer-name lists of each block of the paper's ``num_blocks``-block split."""
    arch = get_architecture(arch)
    if num_blocks not in BLOCK_STARTS:
        raise ConfigError(f"num_blocks={num_blocks} is not supported; the splits are 1, 2 or 3 blocks")
    names = arch.layer_names(dropout_rate)
    cuts = [names.index(start) for start in BLOCK_STARTS[num_blocks]]
    bounds = [0] + cuts + [len(names)]
    return [names[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def block_input_shape(arch, block_layers, dropout_rate=None):
    """Input shape (without batch) of the block whose first layer is ``block_layers[0]``."""
    arch = get_architecture(arch)
    rate = arch.dropout_rate if dropout_rate is None else dropout_rate
    shape = (None,) + tuple(arch.input_shape)
    for name in arch.layer_names(rate):
        if name == block_layers[0]:
            return tuple(shape[1:])
        shape = _make_layer(arch, name, rate).compute_output_shape(shape)
    raise ConfigError(f"layer {block_layers[0]!r} is not in architecture {arch.name!r}")


def build_block(arch, block_layers, name=None, dropout_rate=None):
    """A fresh ``keras.Sequential`` of the named consecutive layers of ``arch`` (a block or channel)."""
    arch = get_architecture(arch)
    rate = arch.dropout_rate if dropout_rate is None else dropout_rate
    input_shape = block_input_shape(arch, block_layers, rate)
    layers = [keras.Input(shape=input_shape)] + [_make_layer(arch, n, rate) for n in block_layers]
    return keras.Sequential(layers, name=name)


def build_base_model(arch, dropout_rate=None, name=None):
    """The unprotected base model of ``arch`` as one flat ``Sequential`` with logits output.

    ``dropout_rate`` overrides the architecture's train-time dropout after FC1 (0 removes the layer).
    """
    arch = get_architecture(arch)
    rate = arch.dropout_rate if dropout_rate is None else dropout_rate
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"dropout_rate={rate} must be in [0, 1)")
    return build_block(arch, arch.layer_names(rate), name=name or f"base_{arch.name}", dropout_rate=rate)


def extract_block(model, arch, block_layers, name=None, dropout_rate=None):
    """A fresh block holding copies of the weights of the same-named layers of a trained ``model``.

    Used by bottom-up HRS training: block 1 of a fully trained base model becomes a block-1 channel.
    """
    block = build_block(arch, block_layers, name=name, dropout_rate=dropout_rate)
    for layer in block.layers:
        try:
            source = model.get_layer(layer.name)
        except ValueError:
            raise ModelError(f"model {model.name!r} has no layer {layer.name!r} to copy into block {block.name!r}") from None
        layer.set_weights(source.get_weights())
    return block


def count_params(model):
    """Number of scalar weights (trainable and not) of a built model."""
    return int(sum(np.prod(w.shape) for w in model.weights))
