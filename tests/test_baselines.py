"""Baseline defense layers and models: DefensiveDropout, SAP (exact and HRS variant), Gaussian noise.

Statistical checks are seeded (deterministic) and use z-scores against the exact binomial / normal
standard deviations; |z| < 5 per quantity (a false alarm rate below 1e-6 per check for a correct layer).
"""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import hrs_tf  # noqa: F401  (registers the layers)
from hrs_tf import baselines, data, metrics, serialization, stochastic
from hrs_tf.baseline_layers import DefensiveDropout, GaussianNoiseInjection, StochasticActivationPruning
from hrs_tf.errors import ConfigError, ModelError
from tests.test_attack_support import trained_model
from tests.tool_runner import run_script

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


@pytest.fixture(scope="module")
def base(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def test_slice(real_mnist):
    return real_mnist.x_test[:1000], real_mnist.y_test[:1000]


def test_with_defensive_dropout_shares_the_trained_function(base, test_slice, tmp_path):
    x, y = test_slice
    model = baselines.with_defensive_dropout(base, test_rate=0.3)
    layer = model.get_layer("dropout")
    assert isinstance(layer, DefensiveDropout) and layer.rate == pytest.approx(0.3) and layer.test_rate == pytest.approx(0.3)
    assert [w.shape for w in model.weights] == [w.shape for w in base.weights]
    with stochastic.randomness(model, "off"):
        np.testing.assert_array_equal(model(x[:50]).numpy(), base(x[:50], training=False).numpy())
    # Test-time dropout 0.3 on this 2-epoch model: measured 0.894 (3 passes) vs 0.916 without.
    plain = metrics.accuracy(base, x, y)
    acc = metrics.clean_accuracy(model, x, y, repeats=3)
    assert acc["std"] > 0 and 0 < plain - acc["mean"] < 0.04
    # Save / load (safe mode, no custom objects) reproduces the pinned outputs and keeps r'.
    layer.set_test_rate(0.5)
    path = tmp_path / "dd.h5"
    serialization.save_model(model, path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    assert loaded.get_layer("dropout").test_rate == pytest.approx(0.5)
    stochastic.set_randomness(model, "pinned")
    stochastic.set_randomness(loaded, "pinned")
    np.testing.assert_array_equal(loaded(x[:20]).numpy(), model(x[:20]).numpy())
    assert not np.array_equal(model(x[:20]).numpy(), base(x[:20], training=False).numpy())


def test_with_defensive_dropout_errors(base):
    no_dropout = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc1"), keras.layers.Dense(2, name="fc2")],
                                  name="nodrop")
    with pytest.raises(ModelError, match="model 'nodrop' has no Dropout layer after 'fc1'"):
        baselines.with_defensive_dropout(no_dropout, 0.3)
    inserted = baselines.with_defensive_dropout(no_dropout, 0.3, train_rate=0.0)  # a model trained without dropout
    assert [layer.name for layer in inserted.layers] == ["fc1", "dropout", "fc2"]
    no_fc1 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")], name="nofc1")
    with pytest.raises(ModelError, match="model 'nofc1' has no layer 'fc1'"):
        baselines.with_defensive_dropout(no_fc1, 0.3)
    with pytest.raises(ConfigError, match="test_rate=1.5"):
        baselines.with_defensive_dropout(base, 1.5)
    with pytest.raises(ConfigError, match="train_rate=0.5 differs from the rate 0.3"):
        baselines.with_defensive_dropout(base, 0.3, train_rate=0.5)


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
    with pytest.raises(ConfigError, match="SAP variant 'approx' is not one of exact, hrs"):
        StochasticActivationPruning("approx")


def test_with_sap_keeps_accuracy_without_retraining(base, test_slice, tmp_path):
    x, y = test_slice
    plain = metrics.accuracy(base, x, y)
    model = baselines.with_sap(base, "exact")
    assert [layer.name for layer in model.layers][7:10] == ["fc1", "dropout", "sap"]
    accuracy = {}
    for variant in ("exact", "hrs"):
        acc = metrics.clean_accuracy(baselines.with_sap(base, variant), x, y, repeats=3)
        accuracy[variant] = acc["mean"]
        assert abs(acc["mean"] - plain) < 0.01, (variant, acc, plain)  # measured: exact 0.949, hrs 0.949, plain 0.949
    path = tmp_path / "sap.h5"
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)
    assert loaded.get_layer("sap").variant == "exact"
    stochastic.set_randomness(model, "pinned")
    stochastic.set_randomness(loaded, "pinned")
    np.testing.assert_array_equal(loaded(x[:10]).numpy(), model(x[:10]).numpy())
    with pytest.raises(ModelError, match="has no layer 'fc2'"):
        baselines.with_sap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc1")]))


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


def test_gaussian_noise_model_trains_on_real_mnist(real_mnist, tmp_path):
    small = data.Dataset("mnist", real_mnist.x_train[:4000], real_mnist.y_train[:4000], real_mnist.x_test[:1000],
                         real_mnist.y_test[:1000], source="slice")
    # The noise slows early training: 3 epochs at learning rate 0.03 (0.01 needs ~3x the images; 0.05 diverges).
    model, record = baselines.train_baseline(small, "gaussian", epochs=3, learning_rate=0.03, seed=0, eval_repeats=3,
                                             verbose=0)
    assert [layer.name for layer in model.layers][:4] == ["noise_init", "conv1", "noise_conv2", "conv2"]
    assert model.get_layer("noise_init").stddev == pytest.approx(0.2) and model.get_layer("noise_conv3").stddev == pytest.approx(0.1)
    assert record["defense"] == "gaussian" and record["init_std"] == 0.2 and record["inner_std"] == 0.1
    acc = record["clean_accuracy"]
    assert acc["mean"] > 0.85 and acc["std"] > 0  # noise on at test time: measured 0.912 (1 pass), MEASURE
    sidecar = baselines.write_model(model, record, str(tmp_path / "gauss.h5"))
    assert json.load(open(sidecar))["clean_accuracy"]["mean"] == pytest.approx(acc["mean"])
    loaded = serialization.load_model(tmp_path / "gauss.h5")
    for mode in ("pinned", "off"):
        stochastic.set_randomness(model, mode)
        stochastic.set_randomness(loaded, mode)
        np.testing.assert_array_equal(loaded(small.x_test[:8]).numpy(), model(small.x_test[:8]).numpy())
    with pytest.raises(ConfigError, match="unknown defense 'noise'"):
        baselines.train_baseline(small, "noise")


# -- tools/train_baseline.py ------------------------------------------------------------------------------
def run_tool(*args):
    return run_script("train_baseline.py", *args)


def test_train_baseline_tool_wraps_a_trained_model(tmp_path, base, tiny_mnist_dir):
    source = tmp_path / "base.h5"
    serialization.save_model(base, source)
    out = tmp_path / "sap.h5"
    result = run_tool("--defense=sap", "--sap_variant=hrs", f"--base_model={source}", "--dataset=mnist",
                      f"--data_dir={tiny_mnist_dir}", "--eval_repeats=2", f"--output={out}")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "sap.json").read_text())
    assert record["defense"] == "sap" and record["sap_variant"] == "hrs" and not record["retrained"]
    assert record["clean_accuracy"]["mean"] > 0.9 and len(record["clean_accuracy"]["runs"]) == 2
    assert serialization.load_model(out).get_layer("sap").variant == "hrs"


@pytest.mark.parametrize("args, message", [
    (["--defense=noise"], "unknown defense 'noise'; choose one of dropout, gaussian, sap"),
    (["--defense=sap"], "--defense=sap wraps a trained model: give --base_model"),
])
def test_train_baseline_tool_errors(tmp_path, tiny_mnist_dir, args, message):
    out = tmp_path / "m.h5"
    result = run_tool(*args, "--dataset=mnist", f"--data_dir={tiny_mnist_dir}", f"--output={out}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and len([line for line in lines if line.startswith("error")]) == 1
    assert re.search(message, lines[-1]), lines[-1]
    assert not out.exists()
