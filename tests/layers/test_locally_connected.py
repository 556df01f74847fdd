import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf.models import serialization
from hrs_tf.errors import ConfigError
from hrs_tf.layers.locally_connected import LocallyConnected2D, keras2_param_count


def loop_locally_connected(x, kernel, bias, kernel_size, strides, padding):
    """Direct implementation of Keras 2's LocallyConnected2D: one matmul per output position."""
    (kh, kw), (sh, sw) = kernel_size, strides
    b, h, w, _ = x.shape
    if padding == "same":
        out_h, out_w = -(-h // sh), -(-w // sw)
        pad_h, pad_w = max((out_h - 1) * sh + kh - h, 0), max((out_w - 1) * sw + kw - w, 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((b, out_h, out_w, kernel.shape[-1]), np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :].reshape(b, -1)  # (row, column, channel) order
            out[:, i, j, :] = patch @ kernel[i * out_w + j]
            if bias is not None:
                out[:, i, j, :] += bias[i, j]
    return out


CASES = [  # input (h, w, c), filters, kernel, strides, padding, bias
    ((7, 6, 2), 3, (3, 2), (1, 1), "valid", True),
    ((8, 9, 3), 4, (3, 3), (2, 3), "valid", True),
    ((7, 8, 2), 3, (3, 3), (2, 2), "same", True),
    ((5, 5, 1), 2, (2, 2), (1, 1), "same", False),
    ((34, 34, 1), 3, (3, 3), (1, 1), "valid", True),  # the reprogramming transform: 28x28 padded by 3 -> 32x32x3
]


@pytest.mark.parametrize("shape,filters,kernel_size,strides,padding,use_bias", CASES)
def test_matches_the_loop_implementation(shape, filters, kernel_size, strides, padding, use_bias):
    rng = np.random.default_rng(sum(shape) + filters)
    layer = LocallyConnected2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias)
    x = rng.random((4,) + shape).astype(np.float32)
    layer.build((None,) + shape)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in layer.weights]
    layer.set_weights(weights)
    got = np.asarray(layer(x))
    expected = loop_locally_connected(x.astype(np.float64), weights[0], weights[1] if use_bias else None,
                                      kernel_size, strides, padding)
    assert got.shape == expected.shape == layer.compute_output_shape((4,) + shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_activation_and_keras2_weight_layout():
    layer = LocallyConnected2D(2, 3, activation="relu")
    x = np.arange(5 * 6 * 2, dtype=np.float32).reshape(1, 5, 6, 2)
    layer.build(x.shape)
    kernel = np.zeros((3 * 4, 3 * 3 * 2, 2), np.float32)
    # Position (1, 2) -> index 1 * 4 + 2; patch element (row 2, column 1, channel 1) -> index (2 * 3 + 1) * 2 + 1.
    kernel[6, 15, 0] = 1.0
    kernel[6, 15, 1] = -1.0
    layer.set_weights([kernel, np.zeros((3, 4, 2), np.float32)])
    out = np.asarray(layer(x))
    assert out[0, 1, 2, 0] == x[0, 1 + 2, 2 + 1, 1] == (3 * 6 + 3) * 2 + 1
    assert out[0, 1, 2, 1] == 0.0  # relu of -43
    assert np.count_nonzero(out) == 1


def test_gradients():
    rng = np.random.default_rng(3)
    kernel_size, strides = (3, 2), (2, 1)
    layer = LocallyConnected2D(3, kernel_size, strides=strides, dtype="float64")
    x = rng.random((2, 7, 5, 2))
    layer.build(x.shape)
    weights = [rng.normal(size=w.shape) for w in layer.weights]
    layer.set_weights(weights)
    upstream = rng.normal(size=(2, 3, 4, 3))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(layer(xt) * upstream)
    dx, dkernel, dbias = tape.gradient(loss, [xt, layer.kernel, layer.bias])
    # Kernel and bias: the loss is linear in them, so its gradient is the loop output's coefficients.
    expected_kernel = np.zeros_like(weights[0])
    for p in range(expected_kernel.shape[0]):
        i, j = divmod(p, 4)
        patch = x[:, i * 2:i * 2 + 3, j:j + 2, :].reshape(2, -1)
        expected_kernel[p] = patch.T @ upstream[:, i, j, :]
    np.testing.assert_allclose(np.asarray(dkernel), expected_kernel, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(dbias), upstream.sum(axis=0), rtol=1e-10, atol=1e-12)
    # Inputs: against finite differences.
    theoretical, numerical = tf.test.compute_gradient(lambda v: layer(v), [xt])
    assert np.max(np.abs(theoretical[0] - numerical[0])) < 1e-7
    assert np.max(np.abs(theoretical[0])) > 0.1
    assert np.asarray(dx).shape == x.shape


@pytest.mark.parametrize("input_hw,channels,filters,kernel_size,strides,padding,use_bias,expected", [
    ((34, 34), 1, 3, 3, 1, "valid", True, 32 * 32 * (3 * 3 * 1 * 3 + 3)),  # MNIST -> CIFAR transform: 30720
    ((30, 30), 1, 1, 3, 1, "valid", True, 28 * 28 * (3 * 3 + 1)),  # MNIST -> Fashion-MNIST transform: 7840
    ((33, 33), 1, 3, 2, 1, "valid", True, 32 * 32 * (2 * 2 * 3 + 3)),
    ((9, 11), 3, 4, (3, 2), (2, 3), "valid", False, 4 * 4 * 3 * 2 * 3 * 4),
    ((9, 11), 3, 4, 3, 2, "same", True, 5 * 6 * (3 * 3 * 3 * 4 + 4)),
])
def test_parameter_count_matches_keras2(input_hw, channels, filters, kernel_size, strides, padding, use_bias, expected):
    layer = LocallyConnected2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias)
    layer.build((None,) + tuple(input_hw) + (channels,))
    assert layer.count_params() == expected
    assert keras2_param_count(input_hw, channels, filters, kernel_size, strides, padding, use_bias) == expected


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_save_and_load(tmp_path, suffix):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((9, 8, 2)),
        LocallyConnected2D(4, (3, 2), strides=(2, 1), activation="tanh", kernel_regularizer=keras.regularizers.L2(1e-3),
                           bias_initializer="ones", name="lc"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    x = np.random.default_rng(0).random((5, 9, 8, 2)).astype(np.float32)
    path = tmp_path / f"lc{suffix}"
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)  # safe mode, no custom_objects: the layer is registered
    layer = loaded.get_layer("lc")
    assert isinstance(layer, LocallyConnected2D)
    assert layer.get_config() == model.get_layer("lc").get_config()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_config_round_trip():
    layer = LocallyConnected2D(5, (2, 3), strides=(1, 2), padding="same", activation="relu", use_bias=False,
                               kernel_initializer="he_normal", kernel_constraint=keras.constraints.MaxNorm(2.0),
                               activity_regularizer="l1", name="lc")
    config = layer.get_config()
    assert config["kernel_size"] == (2, 3) and config["strides"] == (1, 2) and config["padding"] == "same"
    assert LocallyConnected2D.from_config(config).get_config() == config
    assert layer.compute_output_shape((None, 7, 7, 3)) == (None, 7, 4, 5)


def test_invalid_settings():
    with pytest.raises(ConfigError, match="filters=0"):
        LocallyConnected2D(0, 3)
    with pytest.raises(ConfigError, match="kernel_size"):
        LocallyConnected2D(2, (3,))
    with pytest.raises(ConfigError, match="padding='causal'"):
        LocallyConnected2D(2, 3, padding="causal")
    with pytest.raises(ConfigError, match="channels_last only"):
        LocallyConnected2D(2, 3, data_format="channels_first")
    with pytest.raises(ConfigError, match="does not fit input 2x5"):
        LocallyConnected2D(2, 3).build((None, 2, 5, 1))
