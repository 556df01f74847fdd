"""Region-based classification (Cao & Gong 2017; Random Spiking paper appendix A.1): the uniform input-noise layer,
the batched majority vote over noisy copies (checked against a plain loop), ties, settings, the attack gradient and
the ``region`` defense's model file and decider.

Statistical checks are seeded (deterministic) and use z-scores against exact standard deviations; |z| < 5 per
quantity (a false alarm rate below 1e-6 per check for a correct layer). Models are tiny (8x8 inputs, untrained)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import stochastic
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from hrs_tf.models import serialization
from randspike import decision, region
from randspike.defenses.region import RegionDefense
from randspike.layers.uniform_noise import UniformInputNoise

Z_MAX = 5.0
SHAPE = (8, 8, 1)


def one_line(error):
    assert "\n" not in str(error.value), str(error.value)


def tiny_classifier(dropout=None, seed=0, classes=4):
    """An untrained conv net with ReLUs (so that its prediction and its gradient depend on the noise)."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(SHAPE), keras.layers.Conv2D(4, 3, activation="relu", name="conv1"), keras.layers.Flatten(),
              keras.layers.Dense(16, activation="relu", name="fc1")]
    if dropout is not None:
        layers.append(DefensiveDropout(dropout, seed=seed + 1, name="dropout"))
    layers.append(keras.layers.Dense(classes, name="logits"))
    return keras.Sequential(layers, name=f"tiny{seed}")


def images(n, seed=0):
    return np.random.default_rng(seed).random((n,) + SHAPE, dtype=np.float32)


def pinned_draw(radius, seed, shape):
    """The pinned noise of a layer with this seed for inputs of this shape, exactly (zeros in, no clipping)."""
    probe = UniformInputNoise(radius, clip_min=-1.0, clip_max=1.0, seed=seed)
    probe.set_randomness("pinned")
    return probe(np.zeros(shape, np.float32)).numpy()


# -- UniformInputNoise ---------------------------------------------------------------------------------------
def test_uniform_noise_range_moments_and_fresh_draws_whatever_the_flag():
    radius, n = 0.3, 200_000
    layer = UniformInputNoise(radius, seed=1)
    x = np.full((n // 100, 100), 0.5, np.float32)  # 0.5 +- 0.3 never reaches the clip bounds
    noise = (layer(x).numpy() - x).ravel()
    assert noise.min() >= -radius - 1e-6 and noise.max() <= radius + 1e-6
    assert noise.min() < -radius + 1e-3 and noise.max() > radius - 1e-3  # the whole interval is used
    std = radius / np.sqrt(3)  # U(-r, r)
    assert abs(noise.mean()) / (std / np.sqrt(n)) < Z_MAX
    # The sample variance of U(-r, r) has std sqrt((m4 - s^4) / n) with m4 = r^4 / 5.
    assert abs(noise.var() - std**2) / np.sqrt((radius**4 / 5 - std**4) / n) < Z_MAX
    for training in (None, False, True):
        assert not np.array_equal(layer(x[:2], training=training).numpy(), layer(x[:2], training=training).numpy())


def test_uniform_noise_is_clipped_exactly_and_pinned_off_modes_are_deterministic():
    layer = UniformInputNoise(0.4, seed=2)
    x = images(6)
    x[:, 0, :4, 0] = [0.0, 1.0, 0.05, 0.95]
    layer.set_randomness("pinned")
    pinned = layer(x).numpy()
    np.testing.assert_array_equal(pinned, layer(x).numpy())
    draw = pinned_draw(0.4, 2, x.shape)
    np.testing.assert_array_equal(pinned, np.clip(x + draw, 0.0, 1.0))
    assert pinned.min() == 0.0 and pinned.max() == 1.0  # 6 x 64 pixels: some are clipped at each bound
    layer.set_randomness("random")
    assert not np.array_equal(layer(x).numpy(), pinned)
    layer.set_randomness("off")
    outside = x.copy()
    outside[0, 0, 0, 0] = 1.5  # off is the identity, not even a clip
    np.testing.assert_array_equal(layer(outside, training=True).numpy(), outside)


def test_uniform_noise_settings_are_checked_in_one_line():
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(ConfigError, match="radius") as error:
            UniformInputNoise(bad)
        one_line(error)
    with pytest.raises(ConfigError, match="clip_min") as error:
        UniformInputNoise(0.1, clip_min=1.0, clip_max=0.0)
    one_line(error)
    unset = UniformInputNoise(None)
    with pytest.raises(ModelError, match="no noise radius yet") as error:
        unset(images(1))
    one_line(error)


def test_uniform_noise_h5_round_trip_in_safe_mode(tmp_path):
    model = region.with_input_noise(tiny_classifier(), 0.25, seed=7)
    x = images(4)
    path = str(tmp_path / "noisy.h5")
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)
    layer = region.noise_layer(loaded)
    assert (layer.radius, layer.clip_min, layer.clip_max, layer.seed) == (0.25, 0.0, 1.0, 7)
    for mode in ("pinned", "off"):
        for m in (model, loaded):
            region.noise_layer(m).set_randomness(mode)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    # A layer whose radius is not chosen yet is saved that way.
    unset = region.with_input_noise(tiny_classifier(), None)
    serialization.save_model(unset, path)
    assert region.noise_layer(serialization.load_model(path)).radius is None


# -- the vote ------------------------------------------------------------------------------------------------
def test_votes_equal_a_plain_loop_over_copies():
    """Pinned noise: every forward call of ``chunk`` copies meets the same fixed draw P, pair p = (image, copy) at
    position p mod chunk; the loop rebuilds each noisy copy from P (exactly) and classifies it alone."""
    n, copies, chunk = 3, 7, 5  # chunks cut across images; the last chunk is padded
    classifier = tiny_classifier(seed=3)
    rc = region.RegionClassifier(classifier, 0.4, copies, chunk=chunk, seed=4)
    rc.noise.set_randomness("pinned")
    x = images(n, seed=1)
    counts = rc.counts(x)
    draw = pinned_draw(0.4, 4, (chunk,) + SHAPE)
    expected = np.zeros((n, 4), np.int64)
    for i in range(n):
        for k in range(copies):
            copy = np.clip(x[i] + draw[(i * copies + k) % chunk], 0.0, 1.0)
            expected[i, int(np.argmax(classifier(copy[None]).numpy()[0]))] += 1
    np.testing.assert_array_equal(counts, expected)
    assert (counts > 0).sum(axis=1).max() >= 2  # the noise does change predictions: the check is not vacuous
    winners = [max(range(4), key=lambda c: (row[c], -c)) for row in expected]
    np.testing.assert_array_equal(rc.labels(x), winners)


def one_pixel_classifier(threshold, winner_above):
    """Logit ``winner_above`` = x - threshold, the other logit 0: a copy above ``threshold`` votes ``winner_above``."""
    model = keras.Sequential([keras.Input((1, 1, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    kernel, bias = np.zeros((1, 2), np.float32), np.zeros(2, np.float32)
    kernel[0, winner_above], bias[winner_above] = 1.0, -threshold
    model.layers[-1].set_weights([kernel, bias])
    return model


def test_ties_go_to_the_smaller_label():
    np.testing.assert_array_equal(region.majority([[3, 3, 1], [1, 4, 4], [0, 0, 2]]), [0, 1, 2])
    x = np.full((1, 1, 1, 1), 0.5, np.float32)
    probe = UniformInputNoise(0.3, seed=5, name=region.NOISE_LAYER)
    probe.set_randomness("pinned")
    low, high = sorted(probe(np.full((2, 1, 1, 1), 0.5, np.float32)).numpy().ravel())  # the pinned pair of copies
    assert high - low > 1e-4
    for winner_above in (0, 1):
        # Threshold between the two copies: one vote each, a tie -> label 0; below both: both vote winner_above.
        for threshold, expected in (((low + high) / 2, 0), (low - 0.01, winner_above)):
            rc = region.RegionClassifier(one_pixel_classifier(threshold, winner_above), 0.3, 2, chunk=2, seed=5)
            rc.noise.set_randomness("pinned")
            assert rc.labels(x)[0] == expected, (winner_above, threshold)


def test_rule_single_turns_the_classifiers_dropout_off_and_seeds_repeat():
    classifier = tiny_classifier(dropout=0.5, seed=6)
    rc = region.RegionClassifier(classifier, 0.0, 40, chunk=16, seed=8)  # radius 0: only dropout varies
    x = images(3, seed=2)
    single = rc.counts(x, rule=decision.SINGLE)
    with stochastic.randomness(classifier, stochastic.OFF):
        plain = np.argmax(classifier(x).numpy(), axis=-1)
    np.testing.assert_array_equal(single, 40 * np.eye(4, dtype=np.int64)[plain])
    voted = rc.counts(x, rule=decision.VOTING)
    assert voted.sum() == 3 * 40 and (voted > 0).sum() > 3  # dropout on: some copies vote differently
    first = decision.labels(rc, images(6, seed=3), rule="vote", seed=11)
    np.testing.assert_array_equal(first, decision.labels(rc, images(6, seed=3), rule="vote", seed=11))


def test_settings_are_checked_in_one_line():
    classifier = tiny_classifier()
    for copies in (0, -3, "many", 2.5):
        with pytest.raises(ConfigError, match="copies") as error:
            region.RegionClassifier(classifier, 0.1, copies)
        one_line(error)
    for radius in (None, -0.1, 1.5):
        with pytest.raises(ConfigError, match="radius") as error:
            region.RegionClassifier(classifier, radius, 10)
        one_line(error)
    with pytest.raises(ConfigError, match="svhn") as error:
        region.dataset_defaults("svhn")
    one_line(error)
    assert region.dataset_defaults("mnist") == {"radius": 0.4, "copies": 10_000}  # RS paper appendix A.1
    assert region.dataset_defaults("fashion_mnist") == region.dataset_defaults("cifar10") == {"radius": 0.02,
                                                                                              "copies": 1_000}


def test_attack_gradient_is_nonzero_and_changes_with_the_noise():
    """The classifier has no randomness: the gradient of ``.model`` varies only through the input noise (EOT)."""
    rc = region.RegionClassifier(tiny_classifier(seed=9), 0.3, 10)
    x = tf.constant(np.full((2,) + SHAPE, 0.5, np.float32))  # 0.5 +- 0.3: no pixel is clipped

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(rc.model(x)[:, 0])
        return tape.gradient(loss, x).numpy()

    a, b = gradient(), gradient()
    assert np.abs(a).max() > 0 and np.abs(b).max() > 0
    assert not np.allclose(a, b)


# -- the region defense ----------------------------------------------------------------------------------------
def test_region_defense_model_file_and_decider(tmp_path):
    defense = RegionDefense()
    assert defense.grammar() == "region[:RADIUS,COPIES]"
    assert defense.label({"radius": None, "copies": None}) == "RC"
    classifier = tiny_classifier(dropout=0.5, seed=10)
    unset = defense.apply({"radius": None, "copies": None}, classifier)
    with pytest.raises(ModelError, match="no noise radius yet") as error:
        unset(images(1))  # no silent default: the data set decides
    one_line(error)
    path = str(tmp_path / "region.h5")
    serialization.save_model(unset, path)
    args = {"radius": None, "copies": None}
    with pytest.raises(ConfigError, match="no data set known") as error:
        defense.decider(args, path)
    one_line(error)
    with open(tmp_path / "region.json", "w") as f:
        json.dump({"dataset": "fashion_mnist"}, f)
    rc = defense.decider(args, path)
    assert (rc.radius, rc.copies) == (0.02, 1_000)
    for got, want in zip(rc.classifier.get_weights(), classifier.get_weights()):
        np.testing.assert_array_equal(got, want)
    # The maker's hook sets the radius before saving: the file carries it, and the spec's copies are used.
    os.remove(tmp_path / "region.json")
    made = defense.for_dataset(args, defense.apply(args, classifier), "mnist")
    serialization.save_model(made, path)
    rc = defense.decider({"radius": None, "copies": 3}, path)
    assert (rc.radius, rc.copies) == (0.4, 3)
    assert rc.labels(images(2)).shape == (2,)
    with pytest.raises(ModelError, match="radius 0.4") as error:
        defense.decider({"radius": 0.1, "copies": 3}, path)
    one_line(error)
