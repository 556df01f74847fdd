"""Wide residual networks WRN-depth-width (Zagoruyko & Komodakis 2016), the Random Spiking paper's Fashion-MNIST /
CIFAR-10 model (Table 6: WRN-28-10, k = 10, N = 4; REFERENCE sections 4 and 9), with the paper's RS-1 placement.

Layout (pre-activation basic blocks, as the WRN paper and the published RS code ``RsNet/wide_residual_network.py``):

- stem: Conv16 3x3 ``same`` - BN - ReLU (``stem_conv``, ``stem_bn``, ``stem_relu``); RS-1 (``spiking``) on its output,
  feeding both the main path and the shortcut of the first block;
- three groups of N = (depth - 4) / 6 blocks of width 16k, 32k, 64k, first-block strides 1, 2, 2. Block
  ``group{g}_block{b}``: ``_bn1`` - ``_relu1`` (the pre-activation; the first block of group 1 takes the stem's) -
  ``_conv1`` (3x3, the group's stride) - ``_bn2`` - ``_relu2`` - [``_dropout``] - ``_conv2`` (3x3), plus the shortcut:
  the raw block input, or ``_shortcut`` (1x1 conv with the stride, on the pre-activated input) where the shape
  changes; ``_add`` sums them;
- ``final_bn`` - ``final_relu`` - ``pool`` (global average) - ``logits`` (Dense, linear).

Convs: he_normal, no bias, L2 ``weight_decay`` (Keras L2: ``weight_decay * sum(w^2)`` added to the loss, as the RS
code's ``l2(0.0005)``); the Dense kernel also carries the L2. Dropout (Table 7: 0.1 in the dropout variants) is a
``DefensiveDropout(rate, rate)`` between the two convs, after the second BN-ReLU (as the WRN paper and the RS code's
first block of a group), kept on at test time like ``Dropout(...)(x, training=True)`` in the RS code.

Parameter count: WRN-28-10 on 32x32x3 with 10 classes has 36,479,194 trainable weights, the published 36.5M (WRN
paper Table 1), plus 17,952 BN moving statistics (36,497,146 in ``count_params()``).

Deviations from the RS code, each the WRN paper's evident intent: BN momentum 0.9 and epsilon 1e-5 (the code's Keras
``momentum=0.1`` keeps ~only the last batch in the moving statistics: PyTorch's 0.1 written in Keras's convention),
gamma initialised to 1 (the code's ``gamma_initializer='uniform'`` is Keras's U(-0.05, 0.05), not Torch7's U(0, 1));
the first block of group 1 has an identity shortcut when width k = 1 (the code always uses a 1x1 conv there); dropout
after the ReLU in every block (the code's non-first blocks drop before the BN).
"""

import keras

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from randspike.layers.random_spiking import RandomSpiking

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
STEM_WIDTH = 16
GROUP_WIDTHS = (16, 32, 64)  # times the width k
GROUP_STRIDES = (1, 2, 2)


def blocks_per_group(depth):
    """N = (depth - 4) / 6 for a valid WRN depth; ConfigError otherwise."""
    depth = checks.count(depth, "depth", minimum=1)
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"depth={depth} is not a WRN depth: it must be 6N + 4 with N >= 1 (10, 16, 22, 28, ...)")
    return (depth - 4) // 6


def _check_input_shape(input_shape):
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape={input_shape!r} must be (height, width, channels)") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input_shape={input_shape!r} must be (height, width, channels) of positive sizes")
    return shape


def build_wrn(input_shape, num_classes=10, depth=28, width=10, dropout_rate=0.0, spiking_keep_prob=None,
              spiking_seed=None, weight_decay=5e-4, name=None):
    """A fresh WRN-``depth``-``width`` (functional Keras model, logits output) for images of ``input_shape``.

    ``dropout_rate`` > 0: a ``DefensiveDropout`` between the two convs of every block (on at test time);
    ``spiking_keep_prob``: a ``RandomSpiking(keep_prob, seed=spiking_seed)`` layer named ``spiking`` on the stem
    output (RS-1, paper appendix A.1). Layer names are fixed (module docstring)."""
    input_shape = _check_input_shape(input_shape)
    num_classes = checks.count(num_classes, "num_classes", minimum=2)
    n_blocks = blocks_per_group(depth)
    width = checks.count(width, "width", minimum=1)
    dropout_rate = checks.rate(dropout_rate, "dropout_rate")
    weight_decay = checks.nonnegative(weight_decay, "weight_decay")
    spiking = None if spiking_keep_prob is None else RandomSpiking(spiking_keep_prob, seed=spiking_seed,
                                                                   name="spiking")

    def conv(filters, size, stride, layer_name):
        return keras.layers.Conv2D(filters, size, strides=stride, padding="same", use_bias=False,
                                   kernel_initializer="he_normal",
                                   kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
                                   name=layer_name)

    def bn_relu(x, bn_name, relu_name):
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=bn_name)(x)
        return keras.layers.ReLU(name=relu_name)(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = conv(STEM_WIDTH, 3, 1, "stem_conv")(inputs)
    x = bn_relu(x, "stem_bn", "stem_relu")
    if spiking is not None:
        x = spiking(x)
    channels = STEM_WIDTH
    for g, (base, stride) in enumerate(zip(GROUP_WIDTHS, GROUP_STRIDES), start=1):
        filters = base * width
        for b in range(1, n_blocks + 1):
            p = f"group{g}_block{b}"
            s = stride if b == 1 else 1
            # The first block of group 1 reads the stem's BN-ReLU output, already pre-activated.
            pre = x if (g, b) == (1, 1) else bn_relu(x, f"{p}_bn1", f"{p}_relu1")
            h = conv(filters, 3, s, f"{p}_conv1")(pre)
            h = bn_relu(h, f"{p}_bn2", f"{p}_relu2")
            if dropout_rate > 0:
                h = DefensiveDropout(dropout_rate, dropout_rate, name=f"{p}_dropout")(h)
            h = conv(filters, 3, 1, f"{p}_conv2")(h)
            shortcut = x if (channels == filters and s == 1) else conv(filters, 1, s, f"{p}_shortcut")(pre)
            x = keras.layers.Add(name=f"{p}_add")([h, shortcut])
            channels = filters
    x = bn_relu(x, "final_bn", "final_relu")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits",
                                 kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None)(x)
    return keras.Model(inputs, outputs, name=name or f"wrn_{depth}_{width}")
