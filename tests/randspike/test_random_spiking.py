"""The Random Spiking layer's semantics (paper section 4; REFERENCE section 4), the RS-1 placement and the decision
rules of Table 2 (single / MC average / voting, rejection)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import randspike  # noqa: F401  (registers layers and defenses)
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic
from hrs_tf.models import serialization
from randspike import decision
from randspike.architectures import build_rs_mnist
from randspike.layers import RandomSpiking


def _inputs(seed=0, shape=(4, 50, 50, 2)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# -- the layer -------------------------------------------------------------------------------------------
def test_keeps_elements_at_the_requested_rate_without_rescaling():
    x = _inputs()  # 20,000 continuous values: a spiked value equals its input with probability 0
    layer = RandomSpiking(0.8, seed=3)
    out = layer(x).numpy()
    kept = out == x
    # binomial std of the kept fraction: sqrt(0.8 * 0.2 / 20000) = 0.0028; tolerance 0.012 (>4 std)
    assert abs(kept.mean() - 0.8) < 0.012
    np.testing.assert_array_equal(out[kept], x[kept])  # kept elements are not rescaled


def test_spiked_values_lie_in_the_range_of_the_whole_batch():
    x = _inputs()
    x[1] += 10.0  # example 1 lives in [~5, ~15], the others around 0
    out = RandomSpiking(0.5, seed=1)(x).numpy()
    spiked = out != x
    assert spiked.any()
    assert out[spiked].min() >= x.min() and out[spiked].max() < x.max()
    # batch range: spiked elements of example 0 are drawn over the whole batch range, so many exceed its own max
    assert (out[0][spiked[0]] > x[0].max()).mean() > 0.2


def test_per_sample_range_keeps_spikes_inside_each_example():
    x = _inputs()
    x[1] += 10.0
    for layer in (RandomSpiking(0.5, range_over="sample", seed=1), RandomSpiking(0.5, seed=1)):
        if layer.range_over == "batch":
            with stochastic.per_example(keras.Sequential([keras.Input(x.shape[1:]), layer])):
                out = layer(x).numpy()
        else:
            out = layer(x).numpy()
        for i in range(len(x)):
            spiked = out[i] != x[i]
            assert spiked.any()
            assert out[i][spiked].min() >= x[i].min() and out[i][spiked].max() < x[i].max()


def test_gradient_is_zero_on_spiked_and_unchanged_on_kept_elements():
    x = tf.constant(_inputs(shape=(3, 8, 8, 2)))
    weights = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
    layer = RandomSpiking(0.6, seed=2)
    layer.set_randomness(stochastic.PINNED)  # one realisation for the forward pass and the check
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x)
        loss = tf.reduce_sum(out * weights)
    grad = tape.gradient(loss, x).numpy()
    kept = layer(x).numpy() == x.numpy()
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(grad[kept], weights.numpy()[kept])  # exactly: nothing flows through min / max
    np.testing.assert_array_equal(grad[~kept], 0.0)


def test_bpda_passes_the_gradient_of_every_element_as_if_it_were_kept():
    from hrs_tf.attacks.bpda import bpda

    x = tf.constant(_inputs(shape=(3, 8, 8, 2)))
    weights = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, RandomSpiking(0.6, seed=2, name="spike")(inputs))
    assert {layer.name: s for layer, s in stochastic.bpda_layers(model).items()} == {"spike": "identity"}

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(model(x) * weights)
        return tape.gradient(loss, x).numpy()

    assert (gradient() == 0).mean() > 0.2  # about 1 - p of the elements are spiked and pass nothing
    with bpda(model):
        np.testing.assert_array_equal(gradient(), weights.numpy())  # every element: the upstream gradient


def test_random_in_every_mode_of_keras_and_inside_a_traced_function():
    x = _inputs(shape=(2, 10, 10, 1))
    layer = RandomSpiking(0.8, seed=5)
    a, b = layer(x, training=False).numpy(), layer(x, training=True).numpy()
    assert not np.array_equal(a, b)
    traced = tf.function(lambda t: layer(t, training=False))
    assert not np.array_equal(traced(x).numpy(), traced(x).numpy())  # not frozen at trace time


def test_pinned_is_deterministic_and_off_is_the_identity():
    x = _inputs(shape=(2, 10, 10, 1))
    layer = RandomSpiking(0.8, seed=5)
    layer.set_randomness(stochastic.PINNED)
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    assert not np.array_equal(layer(x).numpy(), x)
    layer.set_randomness(stochastic.OFF)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    np.testing.assert_array_equal(RandomSpiking(1.0, seed=0)(x).numpy(), x)  # p = 1 keeps everything


@pytest.mark.parametrize("bad", [0, 0.0, -0.2, 1.5, "x"])
def test_keep_probability_outside_zero_one_is_refused(bad):
    with pytest.raises(ConfigError, match="keep_prob"):
        RandomSpiking(bad)
    with pytest.raises(ConfigError, match="range_over"):
        RandomSpiking(0.8, range_over="image")


# -- the RS-1 model ----------------------------------------------------------------------------------------
def test_rs1_sits_after_the_first_conv_and_dropout_after_fc1_and_the_model_round_trips(tmp_path):
    model = build_rs_mnist(dropout=True, keep_prob=0.7, seed=4)
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["conv1", "spiking", "conv2"] and names[names.index("fc1") + 1] == "dropout"
    assert model.get_layer("conv1").padding == "same" and model.get_layer("dropout").test_rate == 0.5
    assert set(stochastic.stochastic_layers(model)) == {model.get_layer("spiking"), model.get_layer("dropout")}
    path = tmp_path / "rs1.h5"
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)
    assert loaded.get_layer("spiking").keep_prob == 0.7 and loaded.get_layer("spiking").range_over == "batch"
    x = _inputs(shape=(5, 28, 28, 1))
    with stochastic.randomness(model, stochastic.OFF), stochastic.randomness(loaded, stochastic.OFF):
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=0, atol=1e-6)
    assert len(build_rs_mnist().layers) == len(names) - 2  # Standard: neither layer


# -- decision rules ----------------------------------------------------------------------------------------
def test_voting_breaks_ties_towards_the_smaller_label_and_mc_averages_probabilities():
    # 4 passes, 2 images, 3 classes. Image 0: votes 2, 2, 1, 1 -> tie -> label 1. Image 1: voting says 0 (3 of 4)
    # but one pass is very confident in class 2, so the mean probability picks 2.
    logits = np.zeros((4, 2, 3), np.float32)
    for k, label in enumerate((2, 2, 1, 1)):
        logits[k, 0, label] = 1.0
    for k in range(3):
        logits[k, 1] = [0.2, 0.0, 0.1]
    logits[3, 1] = [0.0, 0.0, 20.0]
    assert decision.labels_from_passes(logits, decision.VOTING).tolist() == [1, 0]
    assert decision.labels_from_passes(logits, decision.MC_AVERAGE).tolist()[1] == 2


def test_rules_on_a_stochastic_model_and_refusal_on_a_deterministic_one():
    model = build_rs_mnist(dropout=True, keep_prob=0.8, seed=0)
    x = _inputs(shape=(20, 28, 28, 1)) * 0.1 + 0.5
    single = decision.labels(model, x, decision.SINGLE)
    with stochastic.randomness(model, stochastic.OFF):
        np.testing.assert_array_equal(single, np.argmax(model(x).numpy(), -1))
    a = decision.labels(model, x, decision.MC_AVERAGE, seed=7)
    b = decision.labels(model, x, decision.MC_AVERAGE, seed=7)
    np.testing.assert_array_equal(a, b)  # a seed makes the 10 stochastic passes repeatable
    with pytest.raises(ConfigError, match="no stochastic layer.*MC Avg"):
        decision.labels(build_rs_mnist(), x, decision.MC_AVERAGE)
    with pytest.raises(ConfigError, match="decision rule"):
        decision.labels(model, x, "majority")


@pytest.mark.parametrize("per_image", [False, True])
def test_rules_read_together_equal_each_rule_alone_with_half_the_stochastic_passes(per_image, monkeypatch):
    keras.utils.set_random_seed(0)  # weights for which the checks below are not trivial (measured: see the asserts)
    model = build_rs_mnist(dropout=True, keep_prob=0.8, seed=0)
    x = np.random.default_rng(2).uniform(size=(40, 28, 28, 1)).astype(np.float32)
    alone = {rule: decision.labels(model, x, rule, passes=6, batch_size=16, per_image=per_image, seed=3)
             for rule in decision.RULES}
    # the passes matter here: another seed changes 21 of the 40 MC labels, and voting differs from MC on 8
    other_seed = decision.labels(model, x, "mc", passes=6, batch_size=16, per_image=per_image, seed=4)
    assert np.sum(alone["mc"] != other_seed) >= 10 and np.sum(alone["mc"] != alone["vote"]) >= 4
    calls = []
    original = decision.pass_logits
    monkeypatch.setattr(decision, "pass_logits", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    model(x)  # moves the generators on: the shared passes must restart from the seed themselves
    together = decision.labels_by_rule(model, x, ("vote", "mc"), passes=6, batch_size=16, per_image=per_image, seed=3)
    assert list(together) == ["vote", "mc"] and calls == [6]
    for rule in ("mc", "vote"):
        np.testing.assert_array_equal(together[rule], alone[rule])
    all_three = decision.labels_by_rule(model, x, decision.RULES, passes=6, batch_size=16, per_image=per_image, seed=3)
    assert calls == [6, 1, 6]  # single's one pass with randomness off, then one set of stochastic passes
    for rule in decision.RULES:
        np.testing.assert_array_equal(all_three[rule], alone[rule])
    with pytest.raises(ConfigError, match="no stochastic layer.*MC Avg"):
        decision.labels_by_rule(build_rs_mnist(), x, ("mc", "vote"))


def test_rejection_is_an_error_on_clean_images_and_never_an_attack_success():
    class Rejector(decision.Decider):
        def labels(self, x, rule, passes, batch_size, per_image):
            return np.array([decision.REJECTED, 1, 2])

    assert decision.error_rate(Rejector(), np.zeros((3, 1)), np.array([0, 1, 2])) == pytest.approx(1 / 3)
    np.testing.assert_array_equal(decision.attack_succeeded([decision.REJECTED, 3, 2], [5, 3, 2], targeted=True),
                                  [False, True, True])
    np.testing.assert_array_equal(decision.attack_succeeded([decision.REJECTED, 3, 2], [5, 3, 2], targeted=False),
                                  [False, False, False])


def test_paper_evaluations_keep_the_batch_range_and_the_per_image_option_switches_it():
    model = build_rs_mnist(keep_prob=0.8, seed=0)
    layer = model.get_layer("spiking")
    with stochastic.per_example(model, reference_only=True):  # what clean_accuracy uses: the paper's batches
        assert layer._per_example is False
    with stochastic.per_example(model):  # the per-image option
        assert layer._per_example is True
    assert layer._per_example is False
