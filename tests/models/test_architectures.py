import keras
import numpy as np
import pytest

from hrs_tf import models
from hrs_tf.errors import ConfigError, ModelError


@pytest.mark.parametrize(
    "arch, params, flatten",
    [
        # Hand-computed from Table A1 with valid padding: 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4; 4*4*64 = 1024.
        ("mnist", 320 + 9248 + 18496 + 36928 + 205000 + 40200 + 2010, 1024),
        # 32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5; 5*5*128 = 3200.
        ("cifar10", 1792 + 36928 + 73856 + 147584 + 819456 + 65792 + 2570, 3200),
        # same padding: 28 -> 14 -> 7; 7*7*64 = 3136.
        ("rs_mnist", 320 + 9248 + 18496 + 36928 + 627400 + 40200 + 2010, 3136),
    ],
)
def test_parameter_counts_and_shapes(arch, params, flatten):
    model = models.build_base_model(arch)
    assert models.count_params(model) == params
    assert model.get_layer("flatten").output.shape[-1] == flatten
    assert model.output_shape == (None, 10)
    assert model.get_layer("logits").activation is keras.activations.linear  # logits, no softmax
    for name in ("conv1", "conv2", "conv3", "conv4"):
        assert model.get_layer(name).padding == models.get_architecture(arch).padding


def test_dropout_rates_follow_table_a1():
    assert models.build_base_model("mnist").get_layer("dropout").rate == pytest.approx(0.3)
    assert models.build_base_model("cifar10").get_layer("dropout").rate == pytest.approx(0.7)
    assert "dropout" not in [layer.name for layer in models.build_base_model("rs_mnist").layers]
    assert models.build_base_model("rs_mnist", dropout_rate=0.5).get_layer("dropout").rate == pytest.approx(0.5)
    assert "dropout" not in [layer.name for layer in models.build_base_model("mnist", dropout_rate=0).layers]


def test_block_splits_match_reference():
    one, = models.block_ranges("mnist", 1)
    assert one[0] == "conv1" and one[-1] == "logits"
    b1, b2 = models.block_ranges("mnist", 2)
    assert b1[-2:] == ["fc1", "dropout"] and b2 == ["fc2", "logits"]
    c1, c2, c3 = models.block_ranges("cifar10", 3)
    assert c1[-1] == "flatten" and c2 == ["fc1", "dropout"] and c3 == ["fc2", "logits"]
    assert [models.block_input_shape("cifar10", b) for b in (c1, c2, c3)] == [(32, 32, 3), (3200,), (256,)]


@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_blocks_compose_to_the_base_model(num_blocks):
    keras.utils.set_random_seed(3)
    base = models.build_base_model("mnist")
    blocks = [models.extract_block(base, "mnist", names) for names in models.block_ranges("mnist", num_blocks)]
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    h = x
    for block in blocks:
        h = block(h, training=False)
    np.testing.assert_array_equal(np.asarray(h), np.asarray(base(x, training=False)))
    assert sum(models.count_params(b) for b in blocks) == models.count_params(base)


def test_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown architecture 'vgg'"):
        models.build_base_model("vgg")
    with pytest.raises(ConfigError, match="num_blocks=4"):
        models.block_ranges("mnist", 4)
    with pytest.raises(ConfigError, match="dropout_rate"):
        models.build_base_model("mnist", dropout_rate=1.0)
    no_fc2 = keras.Sequential([keras.Input((200,)), keras.layers.Dense(10, name="logits")], name="tiny")
    with pytest.raises(ModelError, match="no layer 'fc2'"):
        models.extract_block(no_fc2, "mnist", ["fc2", "logits"])
