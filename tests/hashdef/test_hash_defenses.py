"""The defensive hash classifier, gradient inhibition GI1-3, the robustness estimator and the compression-rate
search (hash paper sections III-IV, Algorithm 1) on the session's small trained MNIST model."""

import dataclasses
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import hashdef  # noqa: F401  (registers layers, architectures and defenses)
from hashdef import robustness
from hashdef.defenses import gradient_inhibition as gi
from hashdef.defenses.hash_classifier import paper_rates, rate_text, with_hashed_classifier
from hashdef.experiments import cr_search
from hashdef.layers import HashedDense, InhibitedDense
from hrs_tf import models
from hrs_tf.defenses import making, registry
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.evaluation import metrics
from hrs_tf.layers import stochastic
from hrs_tf.models import serialization
from tests.attacks.helpers import trained_model


@pytest.fixture(scope="module")
def model(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def small(real_mnist):
    """The first 1000 training and 500 test images: cheap fine-tuning."""
    return dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:1000], y_train=real_mnist.y_train[:1000],
                               x_test=real_mnist.x_test[:500], y_test=real_mnist.y_test[:500])


# -- architecture ------------------------------------------------------------------------------------------
def test_seven_layer_architecture_has_the_papers_widths_and_hash_rates():
    model = models.build_base_model("hash_mnist")
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [(int(layer.kernel.shape[0]), layer.units) for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert convs == [64, 128, 128, 64]
    assert dense == [(1024, 256), (256, 256), (256, 10)]
    # the paper's rates (1/4096, 1/128) are its rule (1/16 (N1 M1)^-1/2, 2/N2) on the last two layers
    cr1, cr2 = paper_rates(dense[1:])
    assert (rate_text(cr1), rate_text(cr2)) == ("1/4096", "1/128")


# -- defensive hash classifier -----------------------------------------------------------------------------------
def test_hashed_classifier_replaces_the_last_two_dense_layers_and_keeps_the_rest(model):
    hashed = with_hashed_classifier(model)  # mnist arch: fc2 200x200, logits 200x10
    kinds = {layer.name: type(layer).__name__ for layer in hashed.layers}
    assert kinds["fc1"] == "Dense" and kinds["fc2"] == "HashedDense" and kinds["logits"] == "HashedDense"
    fc2, logits = hashed.get_layer("fc2"), hashed.get_layer("logits")
    assert fc2.num_buckets == math.ceil(200 * 200 / (16 * 200))  # CR1 = 1/3200 -> K = 13
    assert logits.num_buckets == 20  # CR2 = 2/200: 2000 / 100
    for name in ("conv1", "conv4", "fc1"):
        for a, b in zip(hashed.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # fresh weights in U(+-1/sqrt(n_in)), drawn from the seed: the same seed gives the same model
    w = np.asarray(fc2.hashed_kernel)
    assert np.all(np.abs(w) <= 1 / math.sqrt(200)) and np.std(w) > 0
    again = with_hashed_classifier(model)
    np.testing.assert_array_equal(np.asarray(again.get_layer("fc2").hashed_kernel), w)


def test_hash_spec_grammar_and_bad_input(model):
    spec = registry.parse("hash:1/4096,1/128")
    assert spec.text == "hash:1/4096,1/128" and registry.parse(spec.text) == spec
    assert spec.label == "Hash (1/4096, 1/128)" and spec.make == registry.INSTALLED
    for bad in ("hash:0", "hash:1.5", "hash:-1/4", "hash:abc"):
        with pytest.raises(ConfigError) as e:
            registry.parse(bad)
        assert "\n" not in str(e.value)
    one_dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="only")])
    with pytest.raises(ModelError, match="replaces the last two"):
        with_hashed_classifier(one_dense)


def test_installed_hash_defense_fine_tunes_resumes_and_saves(model, small, tmp_path):
    base = tmp_path / "base.h5"
    serialization.save_model(model, base)
    out = tmp_path / "hash.h5"
    lines = []
    _, record = making.make("hash:1/64,1/4", small, str(out), base_model=str(base), epochs=1, eval_repeats=1,
                            log=lines.append)
    assert record["retrained"] and record["hashed_layers"]["fc2"]["num_buckets"] == 625  # 40000 / 64
    assert record["clean_accuracy"]["mean"] > 0.5  # chance is 0.1; 8 SGD steps (1000 images) from fresh hashed layers
    loaded = serialization.load_model(out)
    x = small.x_test[:50]
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(registry.parse("hash").load(str(out))(x)))
    # a second run with 2 epochs resumes from the 1-epoch checkpoint instead of starting over
    lines.clear()
    making.make("hash:1/64,1/4", small, str(out), base_model=str(base), epochs=2, eval_repeats=1, log=lines.append)
    assert any("resuming" in line and "after epoch 1" in line for line in lines), lines


# -- gradient inhibition ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [1, 2, 3])
def test_gradient_inhibition_transforms_only_the_last_three_kernels(model, kind):
    eps = {1: 0.1, 2: 3.0, 3: 0.2}[kind]
    out = gi.with_gradient_inhibition(model, kind, eps, seed=5)
    changed = {"fc1", "fc2", "logits"}
    uniform = np.random.default_rng(5)
    for layer in model.layers:
        for w_old, w_new, var in zip(layer.get_weights(), out.get_layer(layer.name).get_weights(), layer.weights):
            if layer.name in changed and var.path.endswith("kernel"):
                expected = {1: w_old + eps * np.sign(w_old), 2: (1 + eps) * w_old,
                            3: w_old + eps * uniform.random(w_old.shape) * np.sign(w_old)}[kind]
                np.testing.assert_allclose(w_new, expected, rtol=1e-6, atol=1e-7)
            else:
                np.testing.assert_array_equal(w_new, w_old)  # biases and earlier layers untouched


def test_gradient_inhibition_saturates_the_softmax_but_keeps_the_argmax_mostly(model, real_mnist):
    x, y = real_mnist.x_test[:2000], real_mnist.y_test[:2000]
    base = metrics.accuracy(model, x, y)
    for kind in (1, 2, 3):
        out = registry.parse(f"gi{kind}").apply(model)  # the paper's MNIST eps (single-channel input)
        # the paper: < 0.1% drop at 99.5%. On our weak 91-93% models (small weights, so eps 0.1 / 0.2 is a large
        # change) measured on these 2000 images: GI2 -0.0 / +0.05, GI1 -2.2 / -2.5, GI3 -5.2 / -6.8 points (two
        # trainings of the shared test model); bounds 1 point (GI2), 5 (GI1), 12 (GI3); chance is 80 points down
        assert metrics.accuracy(out, x, y) >= base - {1: 0.05, 2: 0.01, 3: 0.12}[kind]
        grads = robustness.gradient_magnitudes(out, x[:20], y[:20])
        plain = robustness.gradient_magnitudes(model, x[:20], y[:20])
        # |dL/dx| vanishes (section IV-A): the typical image's largest input gradient shrinks by orders of magnitude
        # (a misclassified image keeps a large one, so the median over images, not the mean, is compared)
        assert np.median(grads["loss"].max(1)) < 1e-3 * np.median(plain["loss"].max(1))
        assert np.mean(grads["logit"]) > np.mean(plain["logit"])  # |dZ/dx| grows (Figure 2)


def test_gi3_draw_is_fixed_by_the_seed_and_gi_specs_compose_with_hash(model):
    a = registry.parse("gi3:0.2").apply(model, seed=1)
    b = registry.parse("gi3:0.2").apply(model, seed=1)
    c = registry.parse("gi3:0.2").apply(model, seed=2)
    k = lambda m: m.get_layer("fc2").get_weights()[0]  # noqa: E731
    np.testing.assert_array_equal(k(a), k(b))
    assert not np.array_equal(k(a), k(c))
    spec = registry.parse("gi3:0.2,on=hash:1/4096;1/128")
    assert spec.source() == registry.parse("hash:1/4096,1/128") and spec.label == "Hash (1/4096, 1/128) + GI3(0.2)"
    assert registry.parse(spec.text) == spec
    # on a hashed model GI transforms the K real weights of its hashed layers
    hashed = with_hashed_classifier(model)
    out = gi.with_gradient_inhibition(hashed, 2, 3.0)
    np.testing.assert_allclose(np.asarray(out.get_layer("fc2").hashed_kernel), 4.0 * np.asarray(hashed.get_layer("fc2").hashed_kernel))
    with pytest.raises(ConfigError):
        registry.parse("gi1:-0.1")
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    with pytest.raises(ModelError, match="last 3"):
        gi.with_gradient_inhibition(tiny, 1, 0.1)


def test_gi3_redrawn_per_call_is_stochastic_with_off_and_pinned_modes(model, real_mnist, tmp_path):
    out = registry.parse("gi3:0.2,redraw=true").apply(model, seed=3)
    assert isinstance(out.get_layer("fc2"), InhibitedDense) and stochastic.is_stochastic(out)
    x = real_mnist.x_test[:8]
    assert not np.allclose(np.asarray(out(x)), np.asarray(out(x)))  # a fresh draw per call
    with stochastic.randomness(out, stochastic.OFF):
        np.testing.assert_allclose(np.asarray(out(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    with stochastic.randomness(out, stochastic.PINNED):
        np.testing.assert_array_equal(np.asarray(out(x)), np.asarray(out(x)))
    path = tmp_path / "gi3r.h5"
    serialization.save_model(out, path)
    back = serialization.load_model(path)
    with stochastic.randomness(back, stochastic.OFF), stochastic.randomness(out, stochastic.OFF):
        np.testing.assert_allclose(np.asarray(back(x)), np.asarray(out(x)), rtol=1e-6)
    with pytest.raises(ModelError, match="HashedDense"):
        registry.parse("gi3:0.2,redraw=true").apply(with_hashed_classifier(model))


# -- robustness estimator and CR search ------------------------------------------------------------------------
def test_estimator_terms_equal_their_closed_form_on_a_linear_model():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    linear.set_weights([w, b])
    x = rng.random((7, 6)).astype(np.float32)
    terms = robustness.logit_statistics(linear, x, batch_size=3)
    assert terms["g"] == pytest.approx(np.abs(w).mean(), rel=1e-5)  # dZ_j/dx_i = W_ij for every image
    assert terms["phi"] == pytest.approx(np.var(x @ w + b, axis=1).mean(), rel=1e-5)
    scores = robustness.robustness_scores([2.0, 4.0, 3.0], [10.0, 0.0, 5.0], [0.99, 0.99, 0.97], 0.995)
    np.testing.assert_allclose(scores, [0.5 * 0 + 0.5 * 1, 0.5 * 1 + 0.5 * 0, 1.0])  # third: drop 2.5% >= T = 1%
    # a diverged configuration (NaN terms, chance accuracy) is rejected and does not poison the normalisation
    scores = robustness.robustness_scores([2.0, 4.0, np.nan], [10.0, 0.0, np.nan], [0.99, 0.99, 0.1], 0.995)
    np.testing.assert_allclose(scores, [0.5, 0.5, 1.0])


def test_rate_grid_follows_algorithm_1():
    cr1, cr2 = cr_search.rate_grid([(256, 256), (256, 10)])
    assert [rate_text(r) for r in cr1] == [f"1/{2 ** k}" for k in range(8, 16)]  # 1/256 .. 1/32768 (> 1/65536)
    assert [rate_text(r) for r in cr2] == [f"1/{2 ** k}" for k in range(1, 12)]  # 1/2 .. 1/2048 (> 1/2560)
    assert cr_search.rate_grid([(256, 256), (256, 10)], factor=4, max_cr1=2, max_cr2=3) == (
        [1 / 256, 1 / 1024], [1 / 2, 1 / 8, 1 / 32])


def test_cr_search_measures_resumes_and_chooses_the_smallest_r(model, small, tmp_path):
    out = tmp_path / "search.json"
    result = cr_search.search(model, small, str(out), epochs=1, factor=8, max_cr1=2, max_cr2=1, estimator_images=50,
                              train_images=500, log=lambda line: None, verbose=0)
    rows = result["rows"]
    assert [(r["cr1_text"], r["cr2_text"]) for r in rows] == [("1/200", "1/2"), ("1/1600", "1/2")]
    best = min(rows, key=lambda r: r["R"])
    assert result["chosen"]["spec"] == f"hash:{best['cr1_text']},{best['cr2_text']}"
    for r in rows:  # R is 1 exactly when the accuracy drop reaches T, else in [0, 1]
        assert (r["R"] == 1.0) if r["accuracy_drop"] >= 0.01 else (0.0 <= r["R"] <= 1.0)
    logged = []
    again = cr_search.search(model, small, str(out), epochs=1, factor=8, max_cr1=2, max_cr2=1, estimator_images=50,
                             train_images=500, log=logged.append, verbose=0)
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in rows]
    assert not any(line.startswith("[") for line in logged)  # nothing retrained on resume
    # the output of an earlier version stopped after one pair (rows saved in it, no pair cells): the other pair alone
    # is retrained, and equals the one measured after the first pair (each pair starts from its own seeds)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"kind": result["kind"], "settings": result["settings"], "finished": False,
                               "rows": [{k: v for k, v in rows[0].items() if k not in ("R", "accuracy_drop")}]}))
    logged.clear()
    resumed = cr_search.search(model, small, str(old), epochs=1, factor=8, max_cr1=2, max_cr2=1, estimator_images=50,
                               train_images=500, log=logged.append, verbose=0)
    second = cr_search.pair_name(rows[1]["cr1"], rows[1]["cr2"])
    assert [line for line in logged if line.startswith("[")] == [f"[pair] {second}"]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed["rows"]] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in rows]
    # alpha and T only score the rows: another T rescores them without retraining
    logged.clear()
    lenient = cr_search.search(model, small, str(out), epochs=1, factor=8, max_cr1=2, max_cr2=1, estimator_images=50,
                               train_images=500, threshold=1.0, log=logged.append, verbose=0)
    expected = robustness.robustness_scores([r["g"] for r in rows], [r["phi"] for r in rows],
                                            [r["accuracy"] for r in rows], lenient["reference"]["accuracy"], 0.5, 1.0)
    np.testing.assert_allclose([r["R"] for r in lenient["rows"]], expected)  # no row degraded at T = 100%
    assert lenient["scoring"]["threshold"] == 1.0 and not any(line.startswith("[") for line in logged)
    with pytest.raises(ConfigError, match="settings|differ"):
        cr_search.search(model, small, str(out), epochs=2, factor=8, max_cr1=2, max_cr2=1, estimator_images=50,
                         train_images=500, log=lambda line: None, verbose=0)
    text = cr_search.report(again, str(tmp_path / "search.md"), str(tmp_path / "search.png"))
    assert "Chosen" in text and (tmp_path / "search.png").stat().st_size > 1000


def test_hashed_dense_gradient_reaches_the_input_like_a_dense_layer():
    layer = HashedDense(3, 0.5, hash_seed=1691)
    x = tf.constant(np.random.default_rng(1).random((2, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x))
    np.testing.assert_allclose(tape.gradient(y, x), np.tile(np.asarray(layer.virtual_kernel).sum(1), (2, 1)), rtol=1e-6)
