"""RandomSwitch / HRS model behaviour: uniform independent switching, pinning, gradients, save/load."""

import itertools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from hrs_tf import models
from hrs_tf.defenses import hrs
from hrs_tf.layers import stochastic
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import RandomSwitch

ALPHA = 0.001  # significance level of the chi-square tests (seeded, so each test is deterministic)


def constant_channel(value, name):
    """A channel whose output is the constant ``value``, identifying the channel that ran."""
    layer = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(value),
                               name=name)
    return keras.Sequential([keras.Input((3,)), layer], name=f"seq_{name}")


def identity_switch(n, granularity, seed):
    return RandomSwitch([constant_channel(i, f"c{i}") for i in range(n)], granularity=granularity, seed=seed)


@pytest.fixture(scope="module")
def hrs_3x2():
    keras.utils.set_random_seed(1)
    return hrs.build_hrs_model("mnist", (3, 2), seed=7)


@pytest.fixture(scope="module")
def probe():
    return np.random.default_rng(2).random((12, 28, 28, 1), dtype=np.float32)


def test_batch_mode_path_is_uniform_and_redrawn_every_call():
    switch = identity_switch(5, "batch", seed=3)
    x = np.zeros((4, 3), np.float32)
    step = tf.function(lambda: switch(x))
    draws = []
    for _ in range(2000):
        out = step().numpy()
        assert np.all(out == out[0])  # one channel for the whole batch
        draws.append(int(out[0, 0]))
        assert switch.last_channels.tolist() == [draws[-1]]
    counts = np.bincount(draws, minlength=5)
    assert stats.chisquare(counts).pvalue > ALPHA, counts
    assert len(set(draws[:20])) > 1  # not frozen at trace time


def test_sample_mode_paths_are_uniform_per_example():
    switch = identity_switch(4, "sample", seed=5)
    out = switch(np.zeros((8000, 3), np.float32), training=False).numpy()[:, 0].astype(int)
    np.testing.assert_array_equal(out, switch.last_channels)
    assert stats.chisquare(np.bincount(out, minlength=4)).pvalue > ALPHA


def test_random_whatever_the_training_flag():
    switch = identity_switch(5, "batch", seed=9)
    x = np.zeros((1, 3), np.float32)
    for training in (None, False, True):
        assert len({float(switch(x, training=training)[0, 0]) for _ in range(40)}) > 1


def test_blocks_draw_independently():
    inputs = keras.Input((3,))
    first = RandomSwitch([constant_channel(i, f"a{i}") for i in range(3)], seed=11, name="first")
    # Second block: channel j adds 10*j to its input, so the output encodes both draws.
    second_channels = []
    for j in range(4):
        dense = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer=keras.initializers.Constant(10 * j),
                                   name=f"b{j}")
        second_channels.append(keras.Sequential([keras.Input((1,)), dense], name=f"seq_b{j}"))
    model = keras.Model(inputs, RandomSwitch(second_channels, seed=12, name="second")(first(inputs)))
    x = tf.zeros((1, 3), tf.float32)
    forward = tf.function(lambda: model(x))  # traced once: every execution must still draw anew (not frozen)
    table = np.zeros((3, 4), int)
    for _ in range(2400):
        value = int(round(float(forward()[0, 0])))
        table[value % 10, value // 10] += 1
    assert stats.chi2_contingency(table).pvalue > ALPHA, table  # independence of the two blocks
    assert stats.chisquare(table.sum(axis=1)).pvalue > ALPHA and stats.chisquare(table.sum(axis=0)).pvalue > ALPHA


def test_pinned_paths_are_deterministic_and_equal_the_plain_composition(hrs_3x2, probe):
    for granularity_model in (hrs_3x2, hrs.with_granularity(hrs_3x2, "sample", seed=1)):
        for path in itertools.product(range(3), range(2)):
            plain = np.asarray(hrs.path_model(hrs_3x2, path)(probe))
            with stochastic.pinned(granularity_model, path):
                first = np.asarray(granularity_model(probe))
                second = np.asarray(granularity_model.predict(probe, verbose=0, batch_size=5))
                used = hrs.last_path(granularity_model)
                assert all(set(u.tolist()) == {c} for u, c in zip(used, path)), used
            np.testing.assert_array_equal(first, plain)
            np.testing.assert_allclose(second, plain, rtol=1e-6, atol=1e-6)  # other batch split, same math
        assert all(layer.randomness == stochastic.RANDOM for layer in hrs.switches(granularity_model))


def test_off_mode_is_the_channel_zero_path(hrs_3x2, probe):
    with stochastic.randomness(hrs_3x2, stochastic.OFF):
        out = np.asarray(hrs_3x2(probe))
        assert [p.tolist() for p in hrs.last_path(hrs_3x2)] == [[0], [0]]
    np.testing.assert_array_equal(out, np.asarray(hrs.path_model(hrs_3x2, (0, 0))(probe)))


def test_sample_mode_each_example_runs_its_own_path(hrs_3x2, probe):
    model = hrs.with_granularity(hrs_3x2, "sample", seed=4)
    out = np.asarray(model(probe))
    first, second = hrs.last_path(model)
    assert len(first) == len(probe) and len(set(zip(first, second))) > 1
    for i, path in enumerate(zip(first, second)):
        expected = np.asarray(hrs.path_model(hrs_3x2, path)(probe[i:i + 1]))[0]
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)


def test_mode_change_applies_to_an_already_traced_predict(hrs_3x2, probe):
    hrs_3x2.predict(probe, verbose=0)  # traces the predict function in random mode
    with stochastic.pinned(hrs_3x2, (2, 1)):
        pinned = hrs_3x2.predict(probe, verbose=0, batch_size=len(probe))
    np.testing.assert_allclose(pinned, np.asarray(hrs.path_model(hrs_3x2, (2, 1))(probe)), rtol=1e-6, atol=1e-6)


def test_gradients_reach_only_the_active_channel(hrs_3x2, probe):
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(hrs_3x2(probe, training=False))
        grads = tape.gradient(loss, hrs_3x2.trainable_weights)
        active = [int(p[0]) for p in hrs.last_path(hrs_3x2)]
        for weight, grad in zip(hrs_3x2.trainable_weights, grads):
            block, channel = map(int, re.search(r"block(\d+)_channel(\d+)", weight.path).groups())
            if channel == active[block]:
                assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, weight.path
            else:
                assert grad is None or float(tf.reduce_max(tf.abs(grad))) == 0, weight.path


def test_input_gradient_equals_the_active_path_gradient(hrs_3x2, probe):
    x = tf.constant(probe)
    with stochastic.pinned(hrs_3x2, (1, 0)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(hrs_3x2(x)[:, 3])
        got = tape.gradient(loss, x)
    plain = hrs.path_model(hrs_3x2, (1, 0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(plain(x)[:, 3])
    np.testing.assert_allclose(got.numpy(), tape.gradient(loss, x).numpy(), rtol=1e-6, atol=1e-9)


def test_lower_dropout_follows_the_training_flag(hrs_3x2, probe):
    with stochastic.pinned(hrs_3x2, (0, 0)):
        assert np.array_equal(np.asarray(hrs_3x2(probe, training=False)), np.asarray(hrs_3x2(probe, training=False)))
        assert not np.array_equal(np.asarray(hrs_3x2(probe, training=True)), np.asarray(hrs_3x2(probe, training=True)))


@pytest.mark.parametrize("granularity", ["batch", "sample"])
def test_h5_round_trip_reproduces_pinned_outputs(tmp_path, hrs_3x2, probe, granularity):
    model = hrs.with_granularity(hrs_3x2, granularity, seed=3)
    path = tmp_path / "hrs.h5"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert hrs.channel_counts(loaded) == [3, 2]
    assert [s.granularity for s in hrs.switches(loaded)] == [granularity] * 2
    for p in [(0, 0), (2, 1), (1, 0)]:
        with stochastic.pinned(model, p), stochastic.pinned(loaded, p):
            np.testing.assert_array_equal(np.asarray(loaded(probe)), np.asarray(model(probe)))
    assert all(s.randomness == stochastic.RANDOM for s in hrs.switches(loaded))  # runtime mode is not saved


def test_switching_cost_structure_matches_base(hrs_3x2):
    base = models.count_params(models.build_base_model("mnist"))
    b1, b2 = models.block_ranges("mnist", 2)
    block1 = models.count_params(models.build_block("mnist", b1))
    assert models.count_params(hrs_3x2) == 3 * block1 + 2 * (base - block1)


def test_three_block_and_one_block_models(probe):
    three = hrs.build_hrs_model("mnist", "2x2x2", seed=1)
    assert hrs.channel_counts(three) == [2, 2, 2]
    assert [s.channels[0].layers[0].name for s in hrs.switches(three)] == ["conv1", "fc1", "fc2"]
    one = hrs.build_hrs_model("mnist", [3], seed=1)
    with stochastic.pinned(one, [2]):
        np.testing.assert_array_equal(np.asarray(one(probe)), np.asarray(hrs.path_model(one, [2])(probe)))


def test_bad_settings_are_refused(hrs_3x2):
    with pytest.raises(ConfigError, match="granularity 'pixel'"):
        RandomSwitch([constant_channel(0, "z")], granularity="pixel")
    with pytest.raises(ConfigError, match="at least one channel"):
        RandomSwitch([])
    with pytest.raises(ConfigError, match="channel 3 is out of range"):
        stochastic.pin(hrs_3x2, (3, 0))
    with pytest.raises(ConfigError, match="has 3 entries"):
        stochastic.pin(hrs_3x2, (0, 0, 0))
    with pytest.raises(ConfigError, match="randomness mode 'sometimes'"):
        hrs.switches(hrs_3x2)[0].set_randomness("sometimes")
    with pytest.raises(ConfigError, match="1 to 3 blocks"):
        hrs.parse_channels("2,2,2,2")
    for text in (["a", "b"], "a,b"):  # a list flag's items as well as text (was a ValueError traceback)
        with pytest.raises(ConfigError, match="is not a list of channel counts like 5,5"):
            hrs.parse_channels(text)
    with pytest.raises(ModelError, match="no RandomSwitch"):
        hrs.infer_architecture(models.build_base_model("mnist"))
    assert hrs.parse_channels("test_hrs[10][10]") == (10, 10) and hrs.parse_channels("5x5x5") == (5, 5, 5)


def test_subset_model_uses_the_first_channels(hrs_3x2, probe):
    subset = hrs.subset_model(hrs_3x2, (2, 1))
    assert hrs.channel_counts(subset) == [2, 1]
    for path in [(0, 0), (1, 0)]:
        with stochastic.pinned(subset, path), stochastic.pinned(hrs_3x2, path):
            np.testing.assert_array_equal(np.asarray(subset(probe)), np.asarray(hrs_3x2(probe)))
    with pytest.raises(ConfigError, match=r"do not fit"):
        hrs.subset_model(hrs_3x2, (4, 1))
