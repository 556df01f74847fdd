"""The baselines' stochastic layers: DefensiveDropout, SAP (exact and HRS variant), Gaussian noise.

Statistical checks are seeded (deterministic) and use z-scores against the exact binomial / normal
standard deviations; |z| < 5 per quantity (a false alarm rate below 1e-6 per check for a correct layer).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf.errors import ConfigError
from hrs_tf.layers import DefensiveDropout, GaussianNoiseInjection, StochasticActivationPruning

Z_MAX = 5.0


def z_scores(observed, expected, std):
    return np.abs(np.asarray(observed) - np.asarray(expected)) / np.asarray(std)


# -- DefensiveDropout -------------------------------------------------------------------------------------
def keep_fraction(out):
    return float(np.mean(np.asarray(out) != 0))


def test_defensive_dropout_is_random_at_test_time_whatever_the_flag():
    layer = DefensiveDropout(0.3, 0.5, seed=1)
    x = np.ones((4, 50), np.float32)
    for training in (None, False, True):
        a, b = layer(x, training=training).numpy(), layer(x, training=training).numpy()
        assert not np.array_equal(a, b), training


def test_defensive_dropout_keep_fraction_and_exact_inverted_scaling():
    test_rate, n = 0.4, 400_000
    layer = DefensiveDropout(0.1, test_rate, seed=2)
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(1000, n // 1000)).astype(np.float32)
    out = layer(x, training=False).numpy()
    kept = out != 0
    std = np.sqrt(test_rate * (1 - test_rate) / n)  # binomial std of the kept fraction: 7.7e-4
    assert z_scores(kept.mean(), 1 - test_rate, std) < Z_MAX
    # Kept values are exactly x / (1 - r') (float32), dropped ones exactly 0.
    np.testing.assert_array_equal(out[kept], (x / np.float32(1 - test_rate))[kept])
    # Unbiased: E[out] = x; std of the mean of out - x per element is x * sqrt(r'/(1-r')) / sqrt(n).
    diff = (out - x).mean()
    assert z_scores(diff, 0.0, np.sqrt(np.mean(x ** 2) * test_rate / (1 - test_rate) / n)) < Z_MAX


def test_defensive_dropout_uses_the_train_rate_in_training():
    layer = DefensiveDropout(0.7, 0.2, seed=3)
    x = np.ones((500, 400), np.float32)
    n = x.size
    train = layer(x, training=True).numpy()
    assert z_scores(keep_fraction(train), 0.3, np.sqrt(0.21 / n)) < Z_MAX
    assert set(np.unique(train)) == {0.0, np.float32(1 / np.float32(0.3))}
    assert z_scores(keep_fraction(layer(x, training=False)), 0.8, np.sqrt(0.16 / n)) < Z_MAX
    assert z_scores(keep_fraction(layer(x, training=tf.constant(True))), 0.3, np.sqrt(0.21 / n)) < Z_MAX


def test_defensive_dropout_modes():
    layer = DefensiveDropout(0.5, 0.5, seed=4)
    x = np.random.default_rng(1).random((8, 30)).astype(np.float32)
    layer.set_randomness("off")
    for training in (None, True):
        np.testing.assert_array_equal(layer(x, training=training).numpy(), x)
    layer.set_randomness("pinned")
    first = layer(x).numpy()
    np.testing.assert_array_equal(layer(x).numpy(), first)
    assert 0 < keep_fraction(first) < 1
    layer.set_randomness("random")
    assert not np.array_equal(layer(x).numpy(), first)


def test_set_test_rate_applies_to_an_already_traced_function():
    layer = DefensiveDropout(0.3, 0.0, seed=5)
    model = keras.Sequential([keras.Input((200,)), layer])
    x = np.ones((500, 200), np.float32)
    assert keep_fraction(model.predict(x, verbose=0)) == 1.0  # r' = 0: identity
    traced = tf.function(lambda x: model(x, training=False))
    assert keep_fraction(traced(x)) == 1.0
    layer.set_test_rate(0.6)
    n = x.size
    assert z_scores(keep_fraction(model.predict(x, verbose=0)), 0.4, np.sqrt(0.24 / n)) < Z_MAX
    assert z_scores(keep_fraction(traced(x)), 0.4, np.sqrt(0.24 / n)) < Z_MAX
    assert traced.experimental_get_tracing_count() == 1
    with pytest.raises(ConfigError, match=r"test_rate=1.0 must be in \[0, 1\)"):
        layer.set_test_rate(1.0)
    with pytest.raises(ConfigError, match="rate=-0.1"):
        DefensiveDropout(-0.1)


# -- SAP --------------------------------------------------------------------------------------------------
PROBE = np.array([0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0], np.float32)


def sap_draws(variant, rows=20_000, seed=6):
    layer = StochasticActivationPruning(variant, seed=seed)
    h = np.tile(PROBE, (rows, 1))
    return layer, h, layer(h).numpy()


@pytest.mark.parametrize("variant", ["exact", "hrs"])
def test_sap_keep_probabilities_and_unbiasedness(variant):
    layer, h, out = sap_draws(variant)
    units, rows = PROBE.size, h.shape[0]
    p = PROBE / PROBE.sum()
    q = 1 - (1 - p) ** units if variant == "exact" else 1 - np.exp(-2 * units * p)
    np.testing.assert_allclose(layer.keep_probabilities(tf.constant(PROBE[None])).numpy()[0], q, rtol=1e-5, atol=1e-7)
    kept = out != 0
    freq = kept.mean(axis=0)
    std = np.sqrt(np.maximum(q * (1 - q), 1e-12) / rows)
    assert np.all(z_scores(freq, q, std) < Z_MAX), (freq, q)
    assert freq[0] == 0  # a zero unit is never kept
    # Kept units are scaled by 1 / q (float32 q: within 1e-4 of the float64 value); E[out] = h.
    scale = np.divide(1.0, q, out=np.zeros_like(q), where=q > 0)
    np.testing.assert_allclose(out[kept], (h * scale)[kept], rtol=1e-4)
    positive = PROBE > 0
    mean_std = PROBE[positive] * np.sqrt((1 - q[positive]) / q[positive] / rows) + 1e-12
    assert np.all(z_scores(out.mean(axis=0)[positive], PROBE[positive], mean_std) < Z_MAX)


def test_sap_gradient_is_upstream_times_the_mask_of_the_same_realisation():
    layer = StochasticActivationPruning("exact", seed=7)
    layer.set_randomness("pinned")
    h = tf.constant(np.abs(np.random.default_rng(2).normal(size=(6, 40))).astype(np.float32) * (np.arange(40) % 3 > 0))
    upstream = tf.constant(np.random.default_rng(3).normal(size=(6, 40)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(h)
        out = layer(h)
        loss = tf.reduce_sum(upstream * out)
    grad = tape.gradient(loss, h).numpy()
    mask = layer.mask(h, layer.next_seed()).numpy()  # pinned: the same draw
    assert 0 < np.mean(mask != 0) < 1
    np.testing.assert_allclose(out.numpy(), h.numpy() * mask, rtol=1e-6)
    np.testing.assert_allclose(grad, upstream.numpy() * mask, rtol=1e-6)


def test_sap_zero_and_single_unit_activations():
    for variant in ("exact", "hrs"):
        layer = StochasticActivationPruning(variant, seed=8)
        h = np.zeros((3, 5), np.float32)
        h[1, 2] = 0.7  # one active unit: p = 1, kept with probability 1 (hrs: 1 - e^-10), scale 1
        x = tf.constant(h)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
        grad = tape.gradient(out, x).numpy()
        assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(grad))
        np.testing.assert_array_equal(out.numpy()[[0, 2]], 0)
        np.testing.assert_allclose(out.numpy()[1], h[1], rtol=1e-4)


def test_sap_modes_rank_and_errors():
    layer = StochasticActivationPruning("exact", seed=9)
    x = np.random.default_rng(4).random((4, 3, 3, 2)).astype(np.float32)  # any rank: per example over all elements
    out = layer(x).numpy()
    assert out.shape == x.shape and np.any(out == 0)
    layer.set_randomness("off")
    np.testing.assert_array_equal(layer(x).numpy(), x)
    layer.set_randomness("pinned")
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    with pytest.raises(ConfigError, match="SAP variant='approx' is not one of exact, hrs"):
        StochasticActivationPruning("approx")


# -- Gaussian noise ---------------------------------------------------------------------------------------
def test_gaussian_noise_statistics_and_modes():
    stddev, n = 0.2, 200_000
    layer = GaussianNoiseInjection(stddev, seed=10)
    x = np.full((n // 100, 100), 0.5, np.float32)
    noise = (layer(x, training=False).numpy() - x).ravel()
    assert z_scores(noise.mean(), 0.0, stddev / np.sqrt(n)) < Z_MAX
    assert z_scores(noise.std(), stddev, stddev / np.sqrt(2 * n)) < Z_MAX  # std of the sample std: 3.2e-4
    assert not np.array_equal(layer(x[:2]).numpy(), layer(x[:2]).numpy())  # fresh noise at test time
    layer.set_randomness("off")
    np.testing.assert_array_equal(layer(x[:2], training=True).numpy(), x[:2])
    layer.set_randomness("pinned")
    np.testing.assert_array_equal(layer(x[:2]).numpy(), layer(x[:2]).numpy())
    with pytest.raises(ConfigError, match="stddev=-1"):
        GaussianNoiseInjection(-1)


