"""Feature squeezing (Xu, Evans & Qi 2018; hash paper Table IV): the bit-depth and median-smoothing layers, their
BPDA identity backward pass, and the ``bits`` / ``median`` defenses prepended to a trained MNIST model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from hashdef.defenses.feature_squeezing import with_bit_depth, with_median_smoothing  # also registers bits / median
from hashdef.layers.bit_depth import BitDepthReduction
from hashdef.layers.median_smoothing import MedianSmoothing2D
from hrs_tf.attacks.bpda import bpda
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.models import serialization
from tests.attacks.helpers import trained_model


@pytest.fixture(scope="module")
def base(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def images(real_mnist):
    return real_mnist.x_test[:64], real_mnist.y_test[:64]


def scipy_median(x, size):
    """Xu et al.'s median smoothing, as their code calls it."""
    return ndimage.median_filter(x, size=(1, size, size, 1), mode="reflect")


# -- BitDepthReduction ---------------------------------------------------------------------------------------
def test_bit_depth_exact_values_on_a_hand_grid():
    x = np.array([[0.0, 0.2, 0.49, 0.5, 0.51, 0.8, 1.0]], np.float32)
    # 1 bit: round(x) (halves to even, as Xu et al.'s rint: 0.5 -> 0).
    np.testing.assert_array_equal(BitDepthReduction(1)(x).numpy(), [[0, 0, 0, 0, 1, 1, 1]])
    # 3 bits: round(7 x) / 7: 0.2 -> 1.4 -> 1/7, 0.49 -> 3.43 -> 3/7, 0.5 -> 3.5 -> 4/7 (even), 0.51 -> 3.57 -> 4/7,
    # 0.8 -> 5.6 -> 6/7.
    levels = np.array([0, 1, 3, 4, 4, 6, 7], np.float32) / np.float32(7)
    np.testing.assert_array_equal(BitDepthReduction(3)(x).numpy(), [levels])


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_bit_depth_output_has_exactly_two_to_the_bits_levels(bits):
    x = np.random.default_rng(bits).random((10, 28, 28, 1)).astype(np.float32)  # 7840 uniform pixels
    out = BitDepthReduction(bits)(x).numpy()
    levels = np.unique(out)
    # Every level is k / (2^bits - 1); 7840 uniform draws hit all of at most 256 levels (miss prob. < 1e-10).
    np.testing.assert_allclose(levels, np.arange(2 ** bits) / (2 ** bits - 1), atol=1e-7)
    assert np.abs(out - x).max() <= 0.5 / (2 ** bits - 1) + 1e-7


# -- MedianSmoothing2D ------------------------------------------------------------------------------------
def test_median_2x2_window_and_rank_on_a_hand_image():
    # scipy's 2x2 window of pixel (i, j) is rows i-1..i, cols j-1..j (mirrored at the border), and its median of
    # 4 is the 3rd smallest: pixel (1, 1) sees {1, 2, 3, 4} -> 3, pixel (0, 1) sees {1, 2, 1, 2} -> 2.
    x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(MedianSmoothing2D(2)(x).numpy()[0, :, :, 0], [[1, 2], [3, 3]])
    np.testing.assert_array_equal(scipy_median(x, 2)[0, :, :, 0], [[1, 2], [3, 3]])


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_median_equals_scipy_on_random_batches(size, channels):
    rng = np.random.default_rng(10 * size + channels)
    x = rng.random((4, 9, 11, channels)).astype(np.float32)  # non-square: a height / width mix-up would show
    np.testing.assert_array_equal(MedianSmoothing2D(size)(x).numpy(), scipy_median(x, size))
    ties = np.round(x * 2) / 2  # three levels: many equal values in a window
    np.testing.assert_array_equal(MedianSmoothing2D(size)(ties).numpy(), scipy_median(ties, size))


# -- BPDA ---------------------------------------------------------------------------------------------------------
def input_gradient(model, x, y):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=False), from_logits=True)
    return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()


@pytest.mark.parametrize("wrap, squeeze", [(lambda m: with_bit_depth(m, 1), lambda x: np.round(x)),
                                           (lambda m: with_median_smoothing(m, 2), lambda x: scipy_median(x, 2))],
                         ids=["bits", "median"])
def test_bpda_backward_pass_is_the_identity(base, images, wrap, squeeze):
    x, y = images[0][:16], images[1][:16]
    wrapped = wrap(base)
    expected = input_gradient(base, squeeze(x).astype(np.float32), y)
    assert np.abs(expected).max() > 0
    with bpda(wrapped):
        through = input_gradient(wrapped, x, y)
    np.testing.assert_allclose(through, expected, rtol=1e-5, atol=1e-7)
    plain = input_gradient(wrapped, x, y)  # BPDA undone on exit
    if isinstance(wrapped.layers[0], BitDepthReduction):
        np.testing.assert_array_equal(plain, 0)  # rounding has no gradient: the obfuscation BPDA removes
    else:
        assert not np.allclose(plain, expected, atol=1e-6)  # the median routes gradients to the selected pixels only


# -- the registered defenses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, layer_name, label, squeeze", [
    ("bits", "squeeze_bits", "Bit depth", lambda x: np.round(x)),  # default for 1 channel: 1 bit
    ("median:3", "median_smoothing", "Median 3x3", lambda x: scipy_median(x, 3)),
])
def test_registered_squeezer_wraps_the_trained_model(base, images, tmp_path, text, layer_name, label, squeeze):
    x = images[0]
    spec = registry.parse(text)
    assert (spec.make, spec.label, spec.text, spec.source().text) == (registry.WRAPPED, label, text, "none")
    model = spec.apply(base)
    assert model.layers[0].name == layer_name and [w.shape for w in model.weights] == [w.shape for w in base.weights]
    got = model(x, training=False).numpy()
    want = base(squeeze(x).astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    assert not np.allclose(got, base(x, training=False).numpy(), atol=1e-3)  # the squeezer does change the input
    view = registry.attacker_view(model)
    assert view["bpda_layers"] == {layer_name: "identity"} and view["stochastic"] is False
    path = tmp_path / "squeezed.h5"
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), got)
    assert loaded.layers[0].get_config() == model.layers[0].get_config()


def test_default_bit_depth_follows_the_channels():
    def tiny(channels):
        return keras.Sequential([keras.Input((6, 6, channels)), keras.layers.Conv2D(2, 3, name="conv1"),
                                 keras.layers.Flatten(name="flatten"), keras.layers.Dense(3, name="logits")],
                                name=f"tiny{channels}")

    assert with_bit_depth(tiny(1)).get_layer("squeeze_bits").bits == 1  # hash paper Table IV: MNIST 1 bit
    colour = registry.parse("bits").apply(tiny(3))
    assert colour.get_layer("squeeze_bits").bits == 4 and colour.name == "tiny3_bits4"  # CIFAR-10 4 bits
    assert registry.parse("bits:2").apply(tiny(3)).get_layer("squeeze_bits").bits == 2
    with pytest.raises(ModelError, match=r"not 1 or 3 channels; give the bit depth explicitly"):
        with_bit_depth(tiny(2))


@pytest.mark.parametrize("make, message", [
    (lambda: BitDepthReduction(0), r"bits=0 must be at least 1"),
    (lambda: BitDepthReduction(9), r"bits=9 must be an integer in 1\.\.8"),
    (lambda: BitDepthReduction("x"), r"bits='x' is not an integer"),
    (lambda: MedianSmoothing2D(0), r"size=0 must be at least 1"),
    (lambda: registry.parse("bits:9"), r"defense 'bits:9': bits='9' must be an integer in 1\.\.8"),
    (lambda: registry.parse("median:0"), r"defense 'median:0': size=0 must be at least 1"),
])
def test_bad_settings_give_a_one_line_config_error(make, message):
    with pytest.raises(ConfigError, match=message) as error:
        make()
    assert "\n" not in str(error.value)
