"""The multi-surrogate C&W-L2 of the Random Spiking paper (section 5.2; REFERENCE section 4): with a list of models the
objective and its input gradient are the sums of the single-model ones, an iterate succeeds only if it fools EVERY
model with the margin K, ``[m, m]`` is ``m`` with the margin term weighted twice, and EOT averages separate passes of
the whole ensemble. Tiny hand-made models (a few weights), so the whole file runs in seconds."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf import attacks
from hrs_tf.attacks import gradients
from hrs_tf.layers import stochastic
from hrs_tf.layers.gaussian_noise import GaussianNoiseInjection


def mlp(seed, inputs=6, classes=4):
    """A small random ReLU network (fresh Glorot weights, seeded): 6 inputs, 4 logits."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(classes)], name=f"mlp{seed}")


def linear_margin_model(weights, bias, name):
    """Two logits on 2 pixels with Z_0 = 0 and Z_1 = weights . x + bias: the target-1 margin is linear in x."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)], name=name)
    model.set_weights([np.array([[0.0, weights[0]], [0.0, weights[1]]], np.float32),
                       np.array([0.0, bias], np.float32)])
    return model


def target_margins(model, x, target=1):
    """``Z_t - max_{j != t} Z_j`` per example (numpy), recomputed outside the attack."""
    z = np.array(model(tf.constant(x), training=False))
    own = z[:, target].copy()
    z[:, target] = -np.inf
    return own - z.max(axis=1)


@pytest.mark.parametrize("targeted", [True, False])
def test_the_ensemble_objective_and_gradient_are_the_sums_of_the_single_models(targeted):
    models = [mlp(1), mlp(2), mlp(3)]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((12, 6), dtype=np.float32))
    y = tf.constant(rng.integers(0, 4, 12), tf.int32)
    objective = gradients.carlini_wagner(targeted, confidence=0.3)
    values, grads, logits = gradients.value_and_grad(models, objective, x, y)
    singles = [gradients.value_and_grad(m, objective, x, y) for m in models]
    # float32 sums of three terms in another order: agreement to a few ulps.
    np.testing.assert_allclose(values.numpy(), sum(v.numpy() for v, _, _ in singles), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads.numpy(), sum(g.numpy() for _, g, _ in singles), rtol=1e-5, atol=1e-6)
    assert logits.shape == (3, 12, 4)
    np.testing.assert_allclose(logits.numpy(), np.stack([z.numpy() for _, _, z in singles]), rtol=1e-6, atol=1e-6)
    # The models really differ (a first-model-only ensemble would fail above): the other two contribute.
    assert np.abs(sum(v.numpy() for v, _, _ in singles[1:])).max() > 0.1
    assert np.abs(sum(g.numpy() for _, g, _ in singles[1:])).max() > 0.1
    # The clamp max(., -kappa) is per model: some (model, example) pairs are past the margin, and no example on all.
    clamped = np.stack([np.isclose(v.numpy(), 0.3, rtol=0, atol=1e-6) for v, _, _ in singles])  # -f = kappa
    assert clamped.any() and not clamped.all(axis=0).any()


def test_success_on_stacked_logits_requires_every_model_with_the_margin():
    k = 1.0
    # Per example, the logits of models A and B (3 classes, target 2).
    a = [[0.0, 0.0, 1.5], [0.0, 0.0, 1.5], [0.0, 0.0, 1.5], [0.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]]
    b = [[0.0, 0.0, 2.0], [0.0, 0.0, 0.5], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.999]]
    stacked = tf.constant([a, b], tf.float32)
    target = tf.constant([2] * 6, tf.int32)
    ok = gradients.succeeded(stacked, target, targeted=True, confidence=k).numpy()
    # both >= K | B margin 0.5 < K | B predicts 1 | both exactly K | A predicts 1 | B margin 0.999 < K
    np.testing.assert_array_equal(ok, [True, False, False, True, False, False])
    # A alone succeeds on the first four: the ensemble verdict is the AND, not A's nor an OR.
    np.testing.assert_array_equal(gradients.succeeded(stacked[0], target, True, k).numpy(),
                                  [True, True, True, True, False, True])
    # Untargeted (label 2): every model must predict another class with margin >= K.
    a = [[3.0, 0.0, 1.0], [3.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    b = [[0.0, 2.0, 1.0], [0.0, 1.5, 1.0], [0.0, 0.0, 1.0], [3.0, 0.0, 1.0]]
    untargeted = gradients.succeeded(tf.constant([a, b]), target[:4], targeted=False, confidence=k).numpy()
    # both >= K (B exactly K) | B margin 0.5 < K | B predicts the label | A predicts the label
    np.testing.assert_array_equal(untargeted, [True, False, False, False])


SETTINGS = dict(targeted=True, learning_rate=0.05, binary_search_steps=5, max_iterations=150, initial_const=0.1)


def test_cw_l2_returns_the_original_image_when_one_model_cannot_be_fooled_with_the_margin():
    # A wants x0 >= 0.625 for a margin 1 on target 1, B wants x0 <= 0.25: each alone is easy, both at once impossible.
    # A pulls harder (slope 8 against 4), so the iterates reach and hover at A's margin (A fooled, B not): an
    # any-model success test would return them.
    a = linear_margin_model((8.0, 0.0), -4.0, "pushes_up")
    b = linear_margin_model((-4.0, 0.0), 2.0, "pushes_down")
    x = np.array([[0.45, 0.5], [0.55, 0.5]], np.float32)
    t = np.array([1, 1])
    assert np.all(target_margins(b, x) < 1.0) and np.any(target_margins(b, x) > 0)  # B even predicts 1 on one
    for m in (a, b):
        alone = attacks.cw_l2(m, x, t, confidence=1.0, **SETTINGS)
        assert np.all(np.abs(alone - x).max(axis=1) > 0.05) and np.all(target_margins(m, alone) >= 1.0 - 1e-5)
    both = attacks.cw_l2([a, b], x, t, confidence=1.0, **SETTINGS)
    np.testing.assert_array_equal(both, x)  # no iterate fooled both: the original image comes back


def test_cw_l2_fools_every_model_with_the_margin_when_it_can():
    # A needs pixel 0 >= 0.625, B pixel 1 >= 0.625 (margin 0.5 on target 1): only moving both pixels fools both.
    a = linear_margin_model((4.0, 0.0), -2.0, "pixel0")
    b = linear_margin_model((0.0, 4.0), -2.0, "pixel1")
    x = np.array([[0.3, 0.3], [0.2, 0.4]], np.float32)
    t = np.array([1, 1])
    both = attacks.cw_l2([a, b], x, t, confidence=0.5, **SETTINGS)
    for m in (a, b):
        assert np.all(target_margins(m, both) >= 0.5 - 1e-5)
    only_a = attacks.cw_l2(a, x, t, confidence=0.5, **SETTINGS)
    assert np.all(target_margins(a, only_a) >= 0.5 - 1e-5) and np.all(target_margins(b, only_a) < 0)
    # Near the minimal change (0.625 - x per pixel): the search found the boundary of both models, not far beyond.
    minimal = np.sqrt(((0.625 - x) ** 2).sum(axis=1))
    l2 = np.sqrt(((both - x) ** 2).sum(axis=1))
    assert np.all(l2 >= minimal - 1e-4) and np.all(l2 <= minimal * 1.1)


def test_the_same_model_twice_weighs_the_margin_term_twice():
    # One constant c, no search: [m, m] at c minimises ||d||^2 + 2 c f, i.e. m at 2c. With margin 4 x0 - 2, K = 0.2
    # and x0 = 0.3, the minimiser moves x0 by 2c' (c' the effective constant) up to the 0.25 that reaches K:
    # c' = 0.08 stops at a margin -0.16 (failure), c' = 0.16 reaches the margin (success).
    m = linear_margin_model((4.0, 0.0), -2.0, "linear")
    x = np.array([[0.3, 0.5]], np.float32)
    t = np.array([1])
    once = dict(targeted=True, confidence=0.2, learning_rate=0.02, binary_search_steps=1, max_iterations=200,
                abort_early=False)
    single = attacks.cw_l2(m, x, t, initial_const=0.08, **once)
    twice = attacks.cw_l2([m, m], x, t, initial_const=0.08, **once)
    single_doubled = attacks.cw_l2(m, x, t, initial_const=0.16, **once)
    np.testing.assert_array_equal(single, x)  # not summed (first model only, or a mean) would also fail here
    assert target_margins(m, twice)[0] >= 0.2 - 1e-5
    # Same iterates up to float32 rounding (2 * c * g vs (2c) * g): same success set, same image.
    np.testing.assert_allclose(twice, single_doubled, atol=1e-5)


def noisy_mlp(seed):
    """A tiny stochastic surrogate: Gaussian noise (std 0.5) on the hidden layer, random at test time."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              GaussianNoiseInjection(0.5, seed=seed, name="noise"), keras.layers.Dense(4)],
                             name=f"noisy{seed}")
    stochastic.set_randomness(model, stochastic.RANDOM)
    return model


def generator_states(models):
    return [layer.seed_generator.state.numpy() for m in models for layer in stochastic.stochastic_layers(m)]


def restore_generator_states(models, states):
    for layer, state in zip([layer for m in models for layer in stochastic.stochastic_layers(m)], states):
        layer.seed_generator.state.assign(state)


def test_eot_on_an_ensemble_is_the_mean_of_separate_passes_of_every_model():
    models = [noisy_mlp(4), noisy_mlp(5)]
    rng = np.random.default_rng(1)
    x = tf.constant(rng.random((5, 6), dtype=np.float32))
    t = tf.constant(rng.integers(0, 4, 5), tf.int32)
    objective = gradients.carlini_wagner(True, confidence=0.0)
    k = 6
    states = generator_states(models)
    values, grads, logits = gradients.value_and_grad(models, objective, x, t, samples=k)
    # Replay the same draws one pass at a time, model by model (each noise layer has its own seed generator).
    passes = {}
    for i, m in enumerate(models):
        restore_generator_states(models, states)
        passes[i] = [gradients.value_and_grad(m, objective, x, t) for _ in range(k)]
    mean = lambda i, j: np.mean([p[j].numpy() for p in passes[i]], axis=0)  # noqa: E731
    # Sums of k float32 terms in another order: agreement to a few ulps.
    np.testing.assert_allclose(values.numpy(), mean(0, 0) + mean(1, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads.numpy(), mean(0, 1) + mean(1, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), np.stack([mean(0, 2), mean(1, 2)]), rtol=1e-5, atol=1e-5)
    # The passes really differ (noise on), so the mean is not any single pass.
    single = np.stack([p[1].numpy() for p in passes[0]])
    assert single.std(axis=0).max() > 0.05
    assert all(np.abs(grads.numpy() - (passes[0][j][1].numpy() + passes[1][j][1].numpy())).max() > 1e-3
               for j in range(k))
