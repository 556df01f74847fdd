"""Compression baselines of the hash paper's Table VII (Han, Mao & Dally 2016): magnitude pruning and k-means weight
sharing of a trained MNIST model's kernels, as the ``prune`` / ``quantize`` transform defenses."""

import keras
import numpy as np
import pytest

from hashdef.defenses.compression import (kernel_variables, kmeans_1d, prune_kernel, prune_weights, quantize_kernel,
                                          quantize_weights)  # also registers prune / quantize
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.models import serialization
from tests.attacks.helpers import trained_model


@pytest.fixture(scope="module")
def base(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def base_weights(base):
    return [w.copy() for w in base.get_weights()]


def kernel_pairs(original, transformed):
    """(name, original kernel, transformed kernel) of every kernel, and the other weights of both models."""
    pairs = list(zip(original.weights, transformed.weights))
    kernels = [(a.path, a.numpy(), b.numpy()) for a, b in pairs if a.name == "kernel"]
    others = [(a.numpy(), b.numpy()) for a, b in pairs if a.name != "kernel"]
    return kernels, others


def assert_unchanged(model, weights):
    for now, before in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(now, before)


# -- pruning ------------------------------------------------------------------------------------------------------
def test_prune_kernel_rounds_half_up_and_breaks_ties_by_position():
    values = np.array([3.0, -1.0, 1.0, 2.0, -1.0], np.float32)
    # 0.5 * 5 = 2.5 -> 3 pruned: the three of magnitude 1 (positions 1, 2, 4).
    np.testing.assert_array_equal(prune_kernel(values, 0.5), [3, 0, 0, 2, 0])
    # 0.3 * 5 = 1.5 -> 2 pruned: of the three equal magnitudes, the first two by position.
    np.testing.assert_array_equal(prune_kernel(values, 0.3), [3, 0, 0, 2, -1])
    np.testing.assert_array_equal(prune_kernel(values, 0.0), values)


def test_prune_weights_zeroes_the_smallest_entries_of_every_kernel(base, base_weights):
    pruned = prune_weights(base, 0.5)
    assert pruned.name == "base_mnist_pruned_50pc"
    kernels, others = kernel_pairs(base, pruned)
    assert len(kernels) == 7  # conv1..conv4, fc1, fc2, logits
    for name, before, after in kernels:
        assert np.count_nonzero(before == 0) == 0, name  # trained kernels hold no exact zero
        zero = after == 0
        assert zero.sum() == int(np.floor(0.5 * before.size + 0.5)), name
        np.testing.assert_array_equal(after[~zero], before[~zero])  # survivors are the original values ...
        assert np.abs(before[~zero]).min() >= np.abs(before[zero]).max(), name  # ... and the largest ones
    for before, after in others:  # biases untouched
        np.testing.assert_array_equal(after, before)
    assert_unchanged(base, base_weights)
    # 90%: the count follows the sparsity; 0%: the very same function.
    _, _, fc1 = next(k for k in kernel_pairs(base, prune_weights(base, 0.9))[0] if "fc1" in k[0])
    assert np.count_nonzero(fc1 == 0) == int(np.floor(0.9 * fc1.size + 0.5))
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(prune_weights(base, 0).predict(x, verbose=0), base.predict(x, verbose=0))


# -- quantisation -----------------------------------------------------------------------------------------------------
def linear_quantized(values, clusters):
    """Each value replaced by its nearest of ``clusters`` levels evenly spaced from min to max."""
    levels = np.linspace(values.min(), values.max(), clusters)
    return levels[np.abs(values.reshape(-1, 1) - levels).argmin(axis=1)].reshape(values.shape)


def test_kmeans_1d_on_hand_values_and_its_linear_start():
    centroids, quantized = kmeans_1d(np.array([0.0, 0.1, 0.9, 1.0]), 2)
    np.testing.assert_allclose(centroids, [0.05, 0.95])
    np.testing.assert_allclose(quantized, [0.05, 0.05, 0.95, 0.95])
    # No Lloyd update: the linear initialisation between min and max, each value to its nearest level.
    values = np.random.default_rng(1).normal(size=(50, 7))
    np.testing.assert_allclose(kmeans_1d(values, 8, iterations=0)[1], linear_quantized(values, 8))
    few = np.array([[0.5, -0.25], [0.5, 2.0]], np.float32)  # 3 distinct values <= 2^2: kept as they are
    np.testing.assert_array_equal(quantize_kernel(few, 2), few)


def test_kmeans_beats_linear_quantisation_on_a_trained_layer(base):
    fc1 = base.get_layer("fc1").kernel.numpy().astype(np.float64)
    for bits, at_most in ((3, 0.5), (8, 1.0)):
        clusters = 2 ** bits
        centroids, quantized = kmeans_1d(fc1, clusters)
        kmeans_error = ((quantized - fc1) ** 2).sum()
        linear_error = ((linear_quantized(fc1, clusters) - fc1) ** 2).sum() if bits == 3 else None
        if linear_error is None:  # 256 levels: nearest level by rounding (an n x 256 matrix would be 50M entries)
            step = (fc1.max() - fc1.min()) / (clusters - 1)
            linear_error = ((fc1.min() + np.round((fc1 - fc1.min()) / step) * step - fc1) ** 2).sum()
        # Lloyd steps never increase the error of their linear start; measured ratios 0.35 (3 bits), 0.96 (8 bits).
        assert kmeans_error <= at_most * linear_error, (bits, kmeans_error, linear_error)
        # Every weight sits at its nearest centroid.
        if bits == 3:
            np.testing.assert_allclose(np.abs(quantized - fc1), np.abs(fc1.reshape(-1, 1) - centroids).min(axis=1)
                                       .reshape(fc1.shape), atol=1e-12)


def test_quantize_weights_shares_values_and_keeps_predictions_at_8_bits(base, base_weights, real_mnist):
    x = real_mnist.x_test[:500]
    before = base.predict(x, verbose=0).argmax(1)
    for bits in (3, 8):
        quantized = quantize_weights(base, bits)
        assert quantized.name == f"base_mnist_quantized_{bits}bits"
        kernels, others = kernel_pairs(base, quantized)
        for name, original, shared in kernels:
            distinct = np.unique(shared).size
            # 3 bits: all 8 clusters stay occupied on these kernels (288 to 204,800 entries); 8 bits: at most 256.
            assert distinct == 8 if bits == 3 else distinct <= 256, (name, distinct)
        for original, after in others:
            np.testing.assert_array_equal(after, original)
        changed = (quantized.predict(x, verbose=0).argmax(1) != before).mean()
        # Measured on the 2-epoch model: 1/500 predictions change at 8 bits, 4.0% at 3 bits (no fine-tuning).
        assert changed <= (0.01 if bits == 8 else 0.10), (bits, changed)
    assert_unchanged(base, base_weights)


# -- the registered transforms ---------------------------------------------------------------------------------------
def test_registered_transforms(base, tmp_path):
    prune, quantize = registry.parse("prune"), registry.parse("quantize:3")
    assert (prune.make, prune.label, prune.text) == (registry.TRANSFORM, "Pruning 50%", "prune")
    assert prune.source().text == quantize.source().text == "none"
    assert (quantize.label, quantize.text, registry.parse("quantize").label) == ("Quantization 3 bits", "quantize:3",
                                                                                "Quantization 8 bits")
    assert registry.parse("prune:0.9").label == "Pruning 90%"
    model = prune.apply(base, seed=3)
    for got, want in zip(model.get_weights(), prune_weights(base, 0.5).get_weights()):
        np.testing.assert_array_equal(got, want)
    shared = quantize.apply(base)
    assert max(np.unique(v.numpy()).size for v in kernel_variables(shared)) == 8
    x = np.random.default_rng(2).random((8, 28, 28, 1)).astype(np.float32)
    path = tmp_path / "quantized.h5"
    serialization.save_model(shared, path)
    np.testing.assert_array_equal(serialization.load_model(path)(x, training=False).numpy(),
                                  shared(x, training=False).numpy())


def test_kernels_inside_a_nested_model_are_found():
    inner = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="inner_fc")], name="inner")
    outer = keras.Sequential([keras.Input((5,)), inner, keras.layers.Dense(2, name="outer_fc")], name="outer")
    pruned = prune_weights(outer, 0.5)
    assert [np.count_nonzero(v.numpy() == 0) for v in kernel_variables(pruned)] == [10, 4]  # of 20 and 8 entries


@pytest.mark.parametrize("make, message", [
    (lambda m: prune_weights(m, 1.0), r"sparsity=1\.0 must be in \[0, 1\)"),
    (lambda m: prune_weights(m, -0.1), r"sparsity=-0\.1 must be in \[0, 1\)"),
    (lambda m: quantize_weights(m, 0), r"bits=0 must be at least 1"),
    (lambda m: quantize_weights(m, 17), r"bits=17 must be an integer in 1\.\.16"),
    (lambda m: quantize_weights(m, "x"), r"bits='x' is not an integer"),
    (lambda m: registry.parse("prune:1.0"), r"defense 'prune:1\.0': sparsity='1\.0' must be in \[0, 1\)"),
    (lambda m: registry.parse("quantize:0"), r"defense 'quantize:0': bits=0 must be at least 1"),
])
def test_bad_settings_give_a_one_line_config_error(base, make, message):
    with pytest.raises(ConfigError, match=message) as error:
        make(base)
    assert "\n" not in str(error.value)
