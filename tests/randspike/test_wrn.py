"""The wide residual network WRN-depth-width of the Random Spiking paper (Table 6; REFERENCE sections 4 and 9):
shapes, parameter count, shortcuts, the RS-1 and dropout positions, weight decay, the .h5 round trip, bad settings."""

import keras
import numpy as np
import pytest

import randspike.wrn as wrn
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from hrs_tf.models import serialization
from randspike.layers.random_spiking import RandomSpiking


def _images(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def _hand_count(depth, width, channels, classes):
    """Weights of WRN-depth-width counted by hand: 3x3 convs without bias, BN (gamma, beta, moving mean, variance),
    1x1 projection shortcuts where the width or stride changes, Dense with bias."""
    n = (depth - 4) // 6
    total = 9 * channels * 16 + 4 * 16  # stem conv + BN
    c_in = 16
    for base, stride in ((16, 1), (32, 2), (64, 2)):
        c = base * width
        for b in range(n):
            first = b == 0
            total += 0 if (first and base == 16) else 4 * c_in  # pre-activation BN (group 1 block 1 uses the stem's)
            total += 9 * c_in * c + 4 * c + 9 * c * c  # conv1, BN, conv2
            total += c_in * c if (c_in != c or (first and stride != 1)) else 0
            c_in = c
    return total + 4 * c_in + c_in * classes + classes  # final BN, logits


def test_wrn_10_1_and_16_1_shapes_and_layers():
    for depth, shape, groups_hw in ((10, (28, 28, 1), (28, 14, 7)), (16, (32, 32, 3), (32, 16, 8))):
        model = wrn.build_wrn(shape, num_classes=10, depth=depth, width=1)
        assert model.name == f"wrn_{depth}_1"
        out = model(_images(shape), training=False).numpy()
        assert out.shape == (4, 10) and np.isfinite(out).all()
        assert model.get_layer("logits").activation is keras.activations.linear  # logits, not softmax
        n = (depth - 4) // 6
        convs3 = [la for la in model.layers if isinstance(la, keras.layers.Conv2D) and la.kernel_size == (3, 3)]
        assert len(convs3) == 1 + 6 * n  # the stem + two per block
        assert all(not la.use_bias for la in model.layers if isinstance(la, keras.layers.Conv2D))
        for g, (hw, c) in enumerate(zip(groups_hw, (16, 32, 64)), start=1):
            assert model.get_layer(f"group{g}_block{n}_add").output.shape == (None, hw, hw, c)


def test_parameter_count_matches_the_hand_count_and_the_published_36_5m():
    for depth, width, shape in ((16, 2, (32, 32, 3)), (10, 1, (28, 28, 1)), (22, 3, (28, 28, 1))):
        model = wrn.build_wrn(shape, depth=depth, width=width)
        assert model.count_params() == _hand_count(depth, width, shape[-1], 10), (depth, width)
    big = wrn.build_wrn((32, 32, 3), depth=28, width=10)  # weights only, never run (~1.5 s)
    trainable = sum(int(np.prod(w.shape)) for w in big.trainable_weights)
    assert trainable == 36_479_194 and round(trainable / 1e6, 1) == 36.5  # WRN paper Table 1: 36.5M
    assert big.count_params() == _hand_count(28, 10, 3, 10)


def test_shortcut_is_a_1x1_conv_only_where_the_shape_changes():
    for width, projected in ((1, {"group2_block1", "group3_block1"}),
                            (2, {"group1_block1", "group2_block1", "group3_block1"})):
        model = wrn.build_wrn((28, 28, 1), depth=16, width=width)
        shortcuts = {la.name[: -len("_shortcut")] for la in model.layers if la.name.endswith("_shortcut")}
        assert shortcuts == projected
        for name in shortcuts:
            layer = model.get_layer(f"{name}_shortcut")
            assert layer.kernel_size == (1, 1) and layer.strides == ((1, 1) if name == "group1_block1" else (2, 2))
            # the projection reads the pre-activated input, like conv1
            assert layer.input is model.get_layer(f"{name}_conv1").input
        for g in (1, 2, 3):
            for b in (1, 2):
                name = f"group{g}_block{b}"
                if name in projected:
                    continue
                block_input = model.get_layer(f"group{g}_block{b - 1}_add" if b > 1 else "stem_relu").output
                assert model.get_layer(f"{name}_add").input[1] is block_input  # identity shortcut, raw input


def test_rs1_sits_on_the_stem_output_feeding_main_path_and_shortcut():
    for width in (1, 2):
        model = wrn.build_wrn((28, 28, 1), depth=10, width=width, spiking_keep_prob=0.8, spiking_seed=7)
        spiking = model.get_layer("spiking")
        assert isinstance(spiking, RandomSpiking) and spiking.keep_prob == 0.8 and spiking.seed == 7
        assert [la for la in model.layers if isinstance(la, RandomSpiking)] == [spiking]
        assert spiking.input is model.get_layer("stem_relu").output
        assert model.get_layer("group1_block1_conv1").input is spiking.output
        if width == 1:  # identity shortcut: the add reads the spiked tensor itself
            assert model.get_layer("group1_block1_add").input[1] is spiking.output
        else:
            assert model.get_layer("group1_block1_shortcut").input is spiking.output
    # on at inference (training=False), deterministic when off
    x = _images((28, 28, 1), n=8)
    a, b = model(x, training=False).numpy(), model(x, training=False).numpy()
    assert np.abs(a - b).max() > 1e-4
    with stochastic.randomness(model, "off"):
        np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert "spiking" not in [la.name for la in wrn.build_wrn((28, 28, 1), depth=10, width=1).layers]


def test_dropout_between_the_two_convs_of_every_block_on_at_test_time():
    model = wrn.build_wrn((28, 28, 1), depth=10, width=1, dropout_rate=0.1)
    drops = [la for la in model.layers if isinstance(la, DefensiveDropout)]
    assert [la.name for la in drops] == [f"group{g}_block1_dropout" for g in (1, 2, 3)]
    for la in drops:
        p = la.name[: -len("_dropout")]
        assert la.rate == 0.1 and la.test_rate == pytest.approx(0.1)
        assert la.input is model.get_layer(f"{p}_relu2").output
        assert model.get_layer(f"{p}_conv2").input is la.output
    x = _images((28, 28, 1), n=8)
    assert np.abs(model(x, training=False).numpy() - model(x, training=False).numpy()).max() > 1e-5


def test_weight_decay_is_l2_on_conv_and_dense_kernels_he_normal_convs():
    model = wrn.build_wrn((28, 28, 1), depth=16, width=2, weight_decay=5e-4)
    kernels = [la.kernel for la in model.layers if isinstance(la, (keras.layers.Conv2D, keras.layers.Dense))]
    expected = 5e-4 * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
    assert len(model.losses) == len(kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    # he_normal: std sqrt(2 / fan_in); 147,456 weights -> the sample std is within ~0.4% (tolerance 3%)
    k = model.get_layer("group3_block2_conv2").kernel.numpy()
    assert k.std() == pytest.approx(np.sqrt(2.0 / (9 * 128)), rel=0.03)
    assert wrn.build_wrn((28, 28, 1), depth=10, width=1, weight_decay=0).losses == []


def test_h5_round_trip_in_safe_mode_reproduces_outputs(tmp_path):
    model = wrn.build_wrn((28, 28, 1), depth=10, width=1, dropout_rate=0.1, spiking_keep_prob=0.8, spiking_seed=3,
                          name="wrn_round_trip")
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-default BN statistics, so that a lost weight would show
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    x = _images((28, 28, 1), n=6)
    with stochastic.randomness(model, "off"):
        before = model.predict(x, verbose=0)
    path = tmp_path / "wrn.h5"
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
    assert loaded.get_layer("spiking").keep_prob == 0.8 and loaded.get_layer("spiking").seed == 3
    assert loaded.get_layer("group2_block1_dropout").test_rate == pytest.approx(0.1)
    with stochastic.randomness(loaded, "off"):
        np.testing.assert_allclose(loaded.predict(x, verbose=0), before, atol=1e-5)


@pytest.mark.parametrize("kwargs, words", [
    (dict(depth=27), "depth=27"), (dict(depth=4), "depth=4"), (dict(depth="x"), "depth='x'"),
    (dict(width=0), "width=0"), (dict(dropout_rate=1.0), "dropout_rate=1.0"),
    (dict(spiking_keep_prob=0.0), "keep_prob=0.0"), (dict(input_shape=(28, 28)), "input_shape"),
])
def test_bad_settings_give_a_one_line_config_error(kwargs, words):
    settings = {"input_shape": (28, 28, 1), "depth": 10, "width": 1, **kwargs}
    with pytest.raises(ConfigError) as info:
        wrn.build_wrn(**settings)
    assert words in str(info.value) and "\n" not in str(info.value)
