"""``MedianSmoothing2D``: feature squeezing by local median smoothing (Xu, Evans & Qi, NDSS 2018, section 4.2;
2x2 on MNIST and CIFAR-10, hash paper Table IV)."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ModelError


def check_size(value, name="size"):
    """A window width (= height): an integer >= 1; ConfigError otherwise."""
    return checks.count(value, name, minimum=1)


@keras.saving.register_keras_serializable(package="hashdef")
class MedianSmoothing2D(keras.layers.Layer):
    """Per-channel median over a ``size`` x ``size`` window, same output shape: exactly
    ``scipy.ndimage.median_filter(x, size=(1, size, size, 1), mode="reflect")``, the call in Xu et al.'s code.

    As scipy: the window of pixel ``(i, j)`` spans rows ``i - size // 2 .. i - size // 2 + size - 1`` (so a 2x2
    window is the pixel and its upper-left neighbours), the border is extended by mirroring with the edge pixel
    repeated (scipy "reflect" = TF "SYMMETRIC" padding), and the median is the value of rank ``size^2 // 2``
    (0-based, ascending), i.e. the upper of the two middle values for an even window (the 3rd smallest of 4).
    Batched: the ``size^2`` shifted views of the padded images are stacked and ranked with ``top_k``.

    Its gradient only reaches the selected pixels, so ``bpda_surrogate = "identity"`` tells an adaptive attacker
    to differentiate it as the identity (BPDA, Athalye et al. 2018, section 4.1)."""

    bpda_surrogate = "identity"

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = check_size(size)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ModelError(f"MedianSmoothing2D {self.name!r} needs (batch, height, width, channels) inputs, "
                             f"not shape {tuple(input_shape)}")
        for extent in input_shape[1:3]:
            if extent is not None and self.size // 2 > extent:
                raise ModelError(f"MedianSmoothing2D {self.name!r}: a {self.size}x{self.size} window is too large "
                                 f"for images of {input_shape[1]}x{input_shape[2]} pixels")

    def call(self, inputs):
        n = self.size
        if n == 1:
            return tf.identity(inputs)
        before, after = n // 2, n - 1 - n // 2
        padded = tf.pad(inputs, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
        height = inputs.shape[1] if inputs.shape[1] is not None else tf.shape(inputs)[1]
        width = inputs.shape[2] if inputs.shape[2] is not None else tf.shape(inputs)[2]
        windows = tf.stack([padded[:, i:i + height, j:j + width, :] for i in range(n) for j in range(n)], axis=-1)
        larger = n * n - (n * n) // 2  # the median is the k-th largest value, k = size^2 - rank
        return tf.math.top_k(windows, k=larger, sorted=True).values[..., larger - 1]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size
        return config
