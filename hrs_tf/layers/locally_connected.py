"""``LocallyConnected2D``: a 2-D convolution with unshared weights (Keras 2 semantics; Keras 3 removed it).

Every output position ``(i, j)`` has its own ``kh x kw x in_channels -> filters`` weights and its own bias.
Weight layout, as Keras 2's default implementation (``implementation=1``), so Keras-2 weights load as is:

- ``kernel``: ``(out_h * out_w, kh * kw * in_channels, filters)``; positions in row-major order
  (``i * out_w + j``), each patch flattened in ``(kernel row, kernel column, input channel)`` order;
- ``bias``:   ``(out_h, out_w, filters)``.

Parameters: ``out_h * out_w * (kh * kw * in_channels * filters + filters)`` with a bias.

Computation: the patches are extracted once (``tf.image.extract_patches``, whose depth order is exactly
the kernel's row / column / channel order), then one batched contraction over all positions
(``einsum("bpf,pfo->bpo")``), instead of Keras 2's Python loop of one matmul per position.
Only ``channels_last`` inputs are supported.
"""

import numbers

import keras
import tensorflow as tf

from hrs_tf.errors import ConfigError

PADDINGS = ("valid", "same")


def _pair(value, what):
    """``3`` or ``(3, 3)`` -> ``(3, 3)`` of positive ints; ConfigError otherwise."""
    items = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in items):
        raise ConfigError(f"{what}={value!r} must be a positive integer or a pair of positive integers")
    return tuple(int(v) for v in items)


def output_length(length, kernel, stride, padding):
    """Output size along one axis (``None`` stays ``None``): Keras's / TF's ``valid`` and ``same`` rules."""
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    return max((length - kernel) // stride + 1, 0)


@keras.saving.register_keras_serializable(package="hrs_tf")
class LocallyConnected2D(keras.layers.Layer):
    """Locally connected 2-D layer: a convolution whose weights are not shared across positions.

    Args:
        filters: number of output channels.
        kernel_size: int or pair, the window size.
        strides: int or pair.
        padding: ``"valid"`` (Keras 2's only choice in 2.2) or ``"same"`` (TF's SAME rule).
        activation: a Keras activation (name or callable) applied to the output.
        use_bias: adds the per-position bias.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
        kernel_constraint, bias_constraint: as in the other Keras layers.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 data_format=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(filters, numbers.Integral) or isinstance(filters, bool) or filters < 1:
            raise ConfigError(f"filters={filters!r} must be a positive integer")
        filters = int(filters)
        data_format = data_format or keras.config.image_data_format()
        if data_format != "channels_last":
            raise ConfigError(f"data_format={data_format!r}: LocallyConnected2D supports channels_last only")
        padding = str(padding).lower()
        if padding not in PADDINGS:
            raise ConfigError(f"padding={padding!r} is not one of {', '.join(PADDINGS)}")
        self.filters = filters
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _output_hw(self, height, width):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return output_length(height, kh, sh, self.padding), output_length(width, kw, sw, self.padding)

    def compute_output_shape(self, input_shape):
        out_h, out_w = self._output_hw(input_shape[1], input_shape[2])
        return (input_shape[0], out_h, out_w, self.filters)

    def build(self, input_shape):
        height, width, channels = input_shape[1], input_shape[2], input_shape[3]
        if height is None or width is None or channels is None:
            raise ConfigError(f"{self.name}: LocallyConnected2D needs a fully known input shape, got {tuple(input_shape)}")
        out_h, out_w = self._output_hw(height, width)
        if out_h < 1 or out_w < 1:
            raise ConfigError(f"{self.name}: kernel {self.kernel_size} does not fit input {height}x{width} with "
                              f"{self.padding!r} padding")
        kh, kw = self.kernel_size
        self.output_hw = (out_h, out_w)
        self.kernel = self.add_weight(
            name="kernel", shape=(out_h * out_w, kh * kw * channels, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(out_h, out_w, self.filters), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def call(self, inputs):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        out_h, out_w = self.output_hw
        patches = tf.image.extract_patches(inputs, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1],
                                           rates=[1, 1, 1, 1], padding=self.padding.upper())
        patches = tf.reshape(patches, [-1, out_h * out_w, self.kernel.shape[1]])
        outputs = tf.einsum("bpf,pfo->bpo", patches, tf.cast(self.kernel, patches.dtype))
        outputs = tf.reshape(outputs, [-1, out_h, out_w, self.filters])
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": "channels_last",
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
        })
        return config


def keras2_param_count(input_hw, in_channels, filters, kernel_size, strides=1, padding="valid", use_bias=True):
    """Parameter count of a Keras-2 ``LocallyConnected2D`` (its documented formula), for checks and reports."""
    (kh, kw), (sh, sw) = _pair(kernel_size, "kernel_size"), _pair(strides, "strides")
    out_h = output_length(input_hw[0], kh, sh, padding)
    out_w = output_length(input_hw[1], kw, sw, padding)
    return out_h * out_w * (kh * kw * in_channels * filters + (filters if use_bias else 0))
