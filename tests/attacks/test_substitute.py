"""The Papernot substitute black-box attack (hrs_tf.attacks.substitute): Jacobian augmentation (eq. 4) on a
hand-checkable substitute, the lambda schedule, label-only oracle queries and their count, caching of the
substitute, transfer to the small trained MNIST model, and bad settings."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import record

from hrs_tf.attacks import registry
from hrs_tf.attacks import substitute as sub
from hrs_tf.errors import ConfigError
from tests.attacks import helpers

W = np.array([0.5, -1.0, 2.0, -0.25, 1.0, -3.0], np.float32)


def two_class_substitute():
    """logits (0, w.x): d log F_1/dx = (1 - F_1) w and d log F_0/dx = -F_1 w, so the signs are +-sign(w)."""
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].set_weights([np.stack([np.zeros(6, np.float32), W], axis=1)])
    return model


def test_jacobian_augmentation_doubles_the_set_with_signed_steps_and_lambda_schedule():
    model = two_class_substitute()
    x = np.array([[0.5, 0.5, 0.95, 0.02, 0.5, 0.5], [0.3, 0.7, 0.5, 0.5, 0.05, 0.01]], np.float32)
    labels = np.array([1, 0])
    out = sub.jacobian_augmentation(model, x, labels, 0.1)
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out[:2], x)  # the old set first, unchanged
    direction = np.stack([np.sign(W), -np.sign(W)])  # label 1 climbs along w, label 0 against it
    np.testing.assert_array_equal(out[2:], np.clip(x + np.float32(0.1) * direction, 0, 1))
    assert out[2, 2] == 1.0 and out[2, 3] == 0.0 and out[3, 4] == 0.0  # clipped to the box (0.95 + 0.1 etc.)
    flipped = sub.jacobian_augmentation(model, x, labels, -0.1)  # a negative lambda steps the other way
    np.testing.assert_array_equal(flipped[2:], np.clip(x - np.float32(0.1) * direction, 0, 1))
    again = sub.jacobian_augmentation(model, out, np.concatenate([labels, labels]), 0.1)
    assert again.shape == (8, 6)
    np.testing.assert_array_equal(again[:4], out)

    signs = lambda tau: [np.sign(sub.lambda_schedule(k, 0.1, tau)) for k in range(7)]  # noqa: E731
    assert signs(3) == [1, 1, 1, -1, -1, -1, 1]
    assert signs(2) == [1, 1, -1, -1, 1, 1, -1]
    assert signs(1) == [1, -1, 1, -1, 1, -1, 1]
    assert abs(sub.lambda_schedule(4, 0.1, 3)) == 0.1


class LabelOracle:
    """A linear black box (8 inputs, 3 classes) that counts the images it is sent and refuses anything but a
    plain forward call: eager, ``training=False``, no gradient tape recording, numpy in -> constant out."""

    def __init__(self):
        self.weights = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
        self.images, self.batches = 0, []

    def __call__(self, x, training=None):
        assert training is False and tf.executing_eagerly() and not record.could_possibly_record()
        x = np.asarray(x)
        self.images += len(x)
        self.batches.append(len(x))
        return tf.constant(x @ self.weights - 1.5 * self.weights.sum(0) / 8)


def seed_pool():
    return np.random.default_rng(1).random((30, 8)).astype(np.float32)


SMALL = dict(num_seed=20, rounds=3, substitute_epochs=2, eps=0.2)


def test_oracle_gives_labels_only_and_the_query_count_is_num_seed_times_2_to_rounds_minus_1():
    oracle = LabelOracle()
    x = np.random.default_rng(2).random((5, 8)).astype(np.float32)
    stats = {}
    adv = sub.substitute_fgsm(oracle, x, seed_images=seed_pool(), stats=stats, **SMALL)
    # Seeds labelled once (20), then each of the 2 augmentations labels only its new half (20, 40).
    assert oracle.batches == [20, 20, 40]
    assert oracle.images == 20 * 2 ** (3 - 1) == 80
    assert stats["queries"].dtype == np.int64 and stats["queries"].tolist() == [80] * 5  # shared substitute
    # The images come from the substitute's gradient (the oracle gives none): FGSM moved every pixel.
    assert np.all(np.isclose(np.abs(adv - x), 0.2, atol=1e-6) | (adv == 0) | (adv == 1))


def test_substitute_is_trained_once_per_oracle_seed_images_and_settings():
    oracle = LabelOracle()
    rng = np.random.default_rng(3)
    first = sub.substitute_fgsm(oracle, rng.random((4, 8)).astype(np.float32), seed_images=seed_pool(), **SMALL)
    assert oracle.images == 80
    stats = {}
    sub.substitute_fgsm(oracle, rng.random((6, 8)).astype(np.float32), seed_images=seed_pool(), stats=stats, **SMALL)
    assert oracle.images == 80  # second batch: the cached substitute, no new queries
    assert stats["queries"].tolist() == [80] * 6  # still the cost of the shared substitute
    sub.substitute_fgsm(oracle, rng.random((4, 8)).astype(np.float32), seed_images=seed_pool(), **{**SMALL, "lmbda": 0.2})
    assert oracle.images == 160  # another setting: another substitute
    assert first.shape == (4, 8)


def test_substitute_transfers_to_the_trained_mnist_model(real_mnist):
    oracle = helpers.trained_model(real_mnist)
    x_test, y_test = real_mnist.x_test, real_mnist.y_test
    seeds, x, y = x_test[9850:], x_test[:200], y_test[:200]
    settings = dict(rounds=3, substitute_epochs=5, seed_images=seeds)
    stats = {}
    adv = sub.substitute_fgsm(oracle, x, y, eps=0.3, stats=stats, **settings)
    assert stats["queries"][0] == 150 * 4
    assert np.abs(adv - x).max() <= 0.3 + 1e-6
    substitute, _ = sub.cached_substitute(oracle, seeds, rounds=3, substitute_epochs=5)
    # Agreement with the oracle on 1000 held-out test images: measured 0.59-0.60 (substitute seeds 0-3);
    # chance is ~0.1.
    agreement = np.mean(helpers.predictions(substitute, x_test[:1000]) == helpers.predictions(oracle, x_test[:1000]))
    assert agreement > 0.45, agreement
    # Transfer (oracle misclassifies): measured 0.62-0.70 over substitute seeds 0-3; random +-0.3 sign noise
    # fools it on 0.065-0.10 of the same images (noise seeds 0-2).
    transfer = np.mean(helpers.predictions(oracle, adv) != y)
    noise = np.sign(np.random.default_rng(0).normal(size=x.shape)).astype(np.float32)
    noise_rate = np.mean(helpers.predictions(oracle, np.clip(x + 0.3 * noise, 0, 1)) != y)
    assert transfer > 0.5 and transfer > noise_rate + 0.35, (transfer, noise_rate)
    # Sub-C&W with its defaults reaches the target on the substitute (measured 30/30); none of it is judged here.
    targets = helpers.wrong_targets(y[:10])
    adv_cw = sub.substitute_cw_l2(oracle, x[:10], targets, targeted=True, **settings)
    assert np.mean(helpers.predictions(substitute, adv_cw) == targets) >= 0.8


@pytest.mark.parametrize("settings, message", [
    (dict(rounds=0), "rounds=0 must be at least 1"),
    (dict(lmbda=0.0), "lmbda=0.0 must be a positive number"),
    (dict(lmbda=-0.1), "lmbda=-0.1 must be a positive number"),
    (dict(num_seed=31), "num_seed=31 exceeds the 30 seed images given"),
    (dict(tau=0), "tau=0 must be at least 1"),
    (dict(substitute_epochs=0), "substitute_epochs=0 must be at least 1"),
    (dict(eps=1.5), "eps=1.5 is outside [0, 1]"),
    (dict(targeted=True), "substitute_fgsm: a targeted attack needs the targets y"),
])
def test_bad_settings_raise_one_line_config_errors(settings, message):
    oracle = LabelOracle()
    with pytest.raises(ConfigError) as error:
        sub.substitute_fgsm(oracle, seed_pool()[:3], seed_images=seed_pool(), **{"num_seed": 20, **settings})
    assert message in str(error.value) and "\n" not in str(error.value)
    assert oracle.images == 0  # refused before any query
    with pytest.raises(ConfigError, match="num_seed=150 exceeds the 3 images attacked"):
        sub.substitute_cw_l2(oracle, seed_pool()[:3])
    with pytest.raises(ConfigError, match="does not take the setting 'nb_iter'"):
        registry.get("substitute_cw_l2").parse_settings({"nb_iter": "3"})
