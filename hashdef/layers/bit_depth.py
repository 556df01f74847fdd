"""``BitDepthReduction``: feature squeezing by colour bit depth (Xu, Evans & Qi, NDSS 2018, section 4.1;
hash paper Table IV: 1 bit on MNIST, 4 bits on CIFAR-10)."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError

MAX_BITS = 8


def check_bits(value, name="bits"):
    """A bit depth: an integer in 1..8 (text such as ``"4"`` accepted); ConfigError otherwise."""
    bits = checks.count(value, name, minimum=1)
    if bits > MAX_BITS:
        raise ConfigError(f"{name}={value!r} must be an integer in 1..{MAX_BITS}")
    return bits


@keras.saving.register_keras_serializable(package="hashdef")
class BitDepthReduction(keras.layers.Layer):
    """``x -> round(x * (2^bits - 1)) / (2^bits - 1)`` on [0, 1] pixels: Xu et al.'s ``reduce_precision``
    (their code's ``rint``: halves round to even, so 0.5 -> 0 at 1 bit). Inputs are not clipped (as theirs).

    Deterministic; its gradient is zero almost everywhere, so ``bpda_surrogate = "identity"`` tells an adaptive
    attacker to differentiate it as the identity (BPDA, Athalye et al. 2018, section 4.1)."""

    bpda_surrogate = "identity"

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = check_bits(bits)

    @property
    def levels(self):
        """The number of output levels on [0, 1]: ``2^bits``."""
        return 2 ** self.bits

    def call(self, inputs):
        scale = tf.cast(self.levels - 1, inputs.dtype)
        return tf.round(inputs * scale) / scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["bits"] = self.bits
        return config
