"""Randomness control at any depth and the generic protocols (discrete realisations, per-example draws, BPDA)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf import attacks
from hrs_tf.defenses import hrs
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import GaussianNoiseInjection, RandomSwitch, stochastic


def noisy_switch_model(seed=5):
    """A 2-channel switch whose channels each hold a noise layer: stochastic layers nested inside a switch."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    channels = [keras.Sequential([keras.Input((6,)), GaussianNoiseInjection(0.5, name=f"noise{c}"),
                                  keras.layers.Dense(3, name=f"dense{c}")], name=f"channel{c}") for c in range(2)]
    return keras.Model(inputs, RandomSwitch(channels, seed=seed, name="switch")(inputs))


@pytest.fixture
def probe():
    return np.random.default_rng(0).random((16, 6)).astype(np.float32)


def test_layers_inside_switch_channels_are_found_and_controlled(probe):
    model = noisy_switch_model()
    assert [layer.name for layer in stochastic.stochastic_layers(model)] == ["switch", "noise0", "noise1"]
    assert not np.allclose(model(probe).numpy(), model(probe).numpy())  # switch and noise both random
    for mode in ("off", "pinned"):
        with stochastic.randomness(model, mode):
            first, second = model(probe).numpy(), model(probe).numpy()
            np.testing.assert_array_equal(first, second)  # every layer at every depth is fixed
        assert [layer.randomness for layer in stochastic.stochastic_layers(model)] == ["random"] * 3
    with stochastic.randomness(model, "off"):  # off: channel 0 without noise
        channel0 = model.get_layer("switch").channels[0]
        np.testing.assert_allclose(model(probe).numpy(), channel0.get_layer("dense0")(probe).numpy(), rtol=1e-6)


def test_nested_models_are_walked_once_in_order():
    inner = noisy_switch_model()
    outer_in = keras.Input((6,))
    outer = keras.Model(outer_in, keras.layers.Dense(2, name="head")(inner(outer_in)))
    names = [layer.name for layer in stochastic.walk(outer)]
    assert names.index("switch") < names.index("noise0") < names.index("head") and len(names) == len(set(map(id, stochastic.walk(outer))))
    assert stochastic.is_stochastic(outer) and not stochastic.is_stochastic(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_discrete_realisations_are_pinned_through_the_generic_protocol(probe):
    model = hrs.build_hrs_model("mnist", (3, 2), seed=1)
    x = np.random.default_rng(1).random((4, 28, 28, 1)).astype(np.float32)
    assert stochastic.realisation_counts(model) == [3, 2]
    with stochastic.fixed_realisation(model, (2, 1)):
        out = model(x).numpy()
        assert [int(p[0]) for p in hrs.last_path(model)] == [2, 1]
    np.testing.assert_array_equal(out, hrs.path_model(model, (2, 1))(x).numpy())
    assert [layer.randomness for layer in stochastic.pinnable_layers(model)] == ["random", "random"]  # restored
    with pytest.raises(ConfigError, match="path \\[1\\] has 1 entries; model .* has 2 layers with discrete realisations"):
        stochastic.pin(model, (1,))
    with pytest.raises(ModelError, match="no discrete realisations"):
        GaussianNoiseInjection(0.1).pin(0)
    assert stochastic.parse_fixed("3x1") == (3, 1) and stochastic.parse_fixed([0, 2]) == (0, 2)


def test_per_example_draws_in_eager_calls_predict_and_attack_functions():
    model = hrs.build_hrs_model("mnist", (3, 2), seed=2)
    x = np.random.default_rng(1).random((40, 28, 28, 1)).astype(np.float32)
    y = np.zeros(40, np.int64)
    model.predict(x, verbose=0)
    assert [len(p) for p in hrs.last_path(model)] == [1, 1]  # one path per batch (the saved granularity)
    for call in (lambda: model(x), lambda: model.predict(x, verbose=0, batch_size=40),
                 lambda: attacks.gradients.input_gradient(model, x, y)):
        with stochastic.per_example(model):
            call()
            first, second = hrs.last_path(model)
            assert len(first) == 40 and set(first.tolist()) == {0, 1, 2} and set(second.tolist()) == {0, 1}
        call()
        assert [len(p) for p in hrs.last_path(model)] == [1, 1]  # back to one path per batch
    # Per example equals the saved "sample" granularity: each example's output is that of its own path.
    with stochastic.per_example(model):
        out = model(x).numpy()
        paths = list(zip(*[p.tolist() for p in hrs.last_path(model)]))
    for i in (0, 17, 39):
        np.testing.assert_allclose(out[i], hrs.path_model(model, paths[i])(x[i:i + 1]).numpy()[0], rtol=1e-5, atol=1e-5)


def test_bpda_layers_are_declared_by_the_layer_and_patched_by_default(probe):
    @keras.saving.register_keras_serializable(package="tests")
    class Sign(keras.layers.Layer):
        bpda_surrogate = "identity"

        def call(self, inputs):
            return tf.sign(inputs)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(Sign(name="sign")(inputs)))
    assert {layer.name: s for layer, s in stochastic.bpda_layers(model).items()} == {"sign": "identity"}
    y = np.zeros(16, np.int64)
    assert np.abs(attacks.gradients.input_gradient(model, probe, y)).max() == 0  # sign: no gradient
    with attacks.bpda(model):  # the declared layers, straight through
        assert np.abs(attacks.gradients.input_gradient(model, probe, y)).max() > 0
    with pytest.raises(ModelError, match="no layer that declares a BPDA surrogate"):
        with attacks.bpda(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])):
            pass
