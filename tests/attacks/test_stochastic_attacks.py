"""EOT averages over distinct random paths, fixed randomness crafts on the pinned model, BPDA replaces the
gradient of a named layer (forward unchanged)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf import evaluation
from hrs_tf.defenses import hrs
from hrs_tf.layers import stochastic
from hrs_tf.attacks import bpda, eot, fixed_randomness, gradients, pgd, settings
from hrs_tf.attacks.bpda import find_layers
from hrs_tf.errors import ConfigError, ModelError
from tests.attacks.helpers import hrs_model

PATHS = [(a, b) for a in range(3) for b in range(3)]


@pytest.fixture(scope="module")
def hrs_setup(real_mnist):
    model = hrs_model(seed=7)
    x, y = real_mnist.x_test[:4], real_mnist.y_test[:4]
    objective = gradients.cross_entropy(targeted=False)
    grad = tf.function(lambda x, y: gradients.value_and_grad(model, objective, x, y)[1])  # traced once
    path_grads = {}
    for path in PATHS:
        with stochastic.pinned(model, path):  # the mode is read at run time: no retracing
            path_grads[path] = grad(tf.constant(x), tf.constant(y, tf.int32)).numpy()
    # The channels differ, so the 9 paths give 9 different gradients.
    flat = np.stack([g.ravel() for g in path_grads.values()])
    assert min(np.abs(a - b).max() for i, a in enumerate(flat) for b in flat[i + 1:]) > 1e-4
    return model, x, y, objective, path_grads


def seed_states(model):
    return [layer.seed_generator.state.numpy() for layer in stochastic.stochastic_layers(model)]


def restore_seed_states(model, states):
    for layer, state in zip(stochastic.stochastic_layers(model), states):
        layer.seed_generator.state.assign(state)


def matching_path(grad, path_grads):
    hits = [path for path, g in path_grads.items() if np.allclose(grad, g, rtol=1e-4, atol=1e-6)]
    return hits[0] if len(hits) == 1 else None


def test_eot_passes_are_separate_random_paths(hrs_setup):
    model, x, y, objective, path_grads = hrs_setup
    samples = gradients.per_sample_gradients(model, objective, x, y, samples=12)
    paths = [matching_path(g, path_grads) for g in samples]
    assert None not in paths  # each pass is exactly one HRS path (the whole batch shares it)
    assert len(set(paths)) >= 3  # distinct paths; P(fewer than 3 of 9 in 12 uniform draws) < 1e-6


def test_eot_gradient_is_the_mean_of_the_separate_passes(hrs_setup):
    model, x, y, objective, path_grads = hrs_setup
    states = seed_states(model)
    samples = gradients.per_sample_gradients(model, objective, x, y, samples=10)
    restore_seed_states(model, states)  # replay the same 10 draws through the EOT estimator
    eot_grad = gradients.input_gradient(model, x, y, objective, samples=10)
    np.testing.assert_allclose(eot_grad, samples.mean(axis=0), rtol=1e-4, atol=1e-7)
    assert matching_path(eot_grad, path_grads) is None  # a mixture, not one path's gradient


def test_eot_converges_to_the_path_average(hrs_setup):
    model, x, y, objective, path_grads = hrs_setup
    mean = np.mean(list(path_grads.values()), axis=0)
    spread = np.mean([np.linalg.norm(g - mean) for g in path_grads.values()])
    estimate = gradients.input_gradient(model, x, y, objective, samples=90)
    # Std of a 90-draw mean of 9 equally likely gradients is spread / sqrt(90) ~ 0.1 spread; 0.45 is > 4 sigma.
    assert np.linalg.norm(estimate - mean) < 0.45 * spread


class Counter(keras.layers.Layer):
    """Identity that counts its forward executions in a variable (also inside traced loops)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.count = tf.Variable(0, trainable=False, dtype=tf.int64)

    def call(self, x):
        self.count.assign_add(1)
        return x


def test_eot_wrapper_runs_n_forward_passes_per_step(hrs_setup):
    model, x, y, _, _ = hrs_setup
    inputs = keras.Input((28, 28, 1))
    counter = Counter()
    counted = keras.Model(inputs, model(counter(inputs)))
    attack = eot(pgd, 5)
    before = int(counter.count.numpy())
    adv = attack(counted, x, y, eps=0.1, nb_iter=3, rand_init=False)
    # One pass to check the model's output + 3 steps x 5 separate passes.
    assert int(counter.count.numpy()) - before == 1 + 3 * 5
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    with pytest.raises(ConfigError, match="eot_samples=0"):
        eot(pgd, 0)


EOT_CASES = {  # small settings: only the number of forward passes is checked
    "fgsm": dict(eps=0.1), "bim": dict(eps=0.1, nb_iter=2), "mim": dict(eps=0.1, nb_iter=2),
    "pgd": dict(eps=0.1, nb_iter=2, seed=0), "pgd_l2": dict(eps=0.5, nb_iter=2, seed=0),
    "cw_l2": dict(binary_search_steps=2, max_iterations=3, abort_early=False), "cw_pgd": dict(eps=0.1, nb_iter=2),
    "jsma_z": dict(gamma=0.25), "jsma_f": dict(gamma=0.25), "hrs_pgd": dict(eps=0.1, nb_iter=2),
    "hrs_cw_pgd": dict(eps=0.1, nb_iter=2), "hrs_cw_l2": dict(),
    "ead": dict(binary_search_steps=2, max_iterations=3, abort_early=False),
    "ead_l1": dict(binary_search_steps=2, max_iterations=3, abort_early=False),
    "deepfool": dict(max_iter=3), "deepfool_linf": dict(max_iter=3),
    "apgd_ce": dict(nb_iter=3, seed=0), "apgd_dlr": dict(nb_iter=3, seed=0),
}


@pytest.mark.parametrize("name", sorted(EOT_CASES))
def test_every_attack_runs_eot_as_separate_passes(name):
    from hrs_tf.attacks import get_attack

    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 1))
    counter = Counter()
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(counter(inputs))))
    x = np.random.default_rng(0).random((3, 4, 4, 1)).astype(np.float32)
    targets = np.array([1, 2, 3])

    def passes(samples):
        before = int(counter.count.numpy())
        eot(get_attack(name), samples)(model, x, targets, targeted=True, **EOT_CASES[name])
        return int(counter.count.numpy()) - before - 1  # minus the output-shape check

    single = passes(1)
    assert single > 0 and passes(3) == 3 * single


def test_fixed_randomness_crafts_on_the_pinned_path(hrs_setup):
    model, x, y, _, _ = hrs_setup
    crafted = fixed_randomness(pgd, "off")(model, x, y, eps=0.1, nb_iter=5, seed=1)  # "off" = path (0, 0)
    reference = pgd(hrs.path_model(model, (0, 0)), x, y, eps=0.1, nb_iter=5, seed=1)
    np.testing.assert_array_equal(crafted, reference)
    assert [layer.randomness for layer in hrs.switches(model)] == ["random", "random"]  # restored
    white = pgd(model, x, y, eps=0.1, nb_iter=5, seed=1)
    assert not np.array_equal(white, reference)  # white-box crafting draws random paths instead


def test_harness_fixed_setting_crafts_pinned_and_scores_random(hrs_setup):
    model, x, y, _, _ = hrs_setup
    crafted = evaluation.run_attack(model, "pgd", x, y, False, setting="fixed", fixed=(1, 2), seed=5, progress=False,
                                    eps=0.1, nb_iter=3)
    np.testing.assert_array_equal(crafted, pgd(hrs.path_model(model, (1, 2)), x, y, eps=0.1, nb_iter=3, seed=5))
    seen = set()
    for _ in range(30):  # scoring runs the model in random mode: the paths vary
        evaluation.predict(model, crafted, passes=1)
        seen.add(tuple(int(p[0]) for p in hrs.last_path(model)))
    assert len(seen) > 1
    with pytest.raises(ConfigError, match="attack setting='blackbox' is not one of whitebox, eot, fixed"):
        settings.apply(pgd, "blackbox")


class Quantize(keras.layers.Layer):
    """Rounds to multiples of 1/4: zero gradient almost everywhere (an obfuscated gradient)."""

    def call(self, x):
        return tf.round(x * 4.0) / 4.0


@pytest.fixture(scope="module")
def quantized():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4, 4, 1))
    h = Quantize(name="quantize")(inputs)
    h = keras.layers.Flatten(name="flatten")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(h))
    x = np.random.default_rng(0).random((5, 4, 4, 1)).astype(np.float32)
    return model, x, np.array([0, 1, 2, 0, 1])


def own_logit(logits, y):
    return tf.reduce_sum(tf.one_hot(y, 3) * logits, axis=-1)


def test_bpda_identity_and_surrogate_replace_the_gradient(quantized):
    model, x, y = quantized
    w = model.get_layer("dense").kernel.numpy()  # d logit_y / d quantize(x) = w[:, y]
    logits = model(x).numpy()
    assert np.abs(gradients.input_gradient(model, x, y, own_logit)).max() == 0.0  # masked
    with bpda(model, {"quantize": "identity"}):
        np.testing.assert_allclose(gradients.input_gradient(model, x, y, own_logit).reshape(5, -1), w[:, y].T, rtol=1e-6)
        np.testing.assert_array_equal(model(x).numpy(), logits)  # forward unchanged
    with bpda(model, {"quantize": lambda t: tf.sin(t)}):  # surrogate: d sin(x) = cos(x)
        grad = gradients.input_gradient(model, x, y, own_logit).reshape(5, -1)
        np.testing.assert_allclose(grad, np.cos(x.reshape(5, -1)) * w[:, y].T, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(model(x).numpy(), logits)
    assert np.abs(gradients.input_gradient(model, x, y, own_logit)).max() == 0.0  # restored
    assert "call" not in model.get_layer("quantize").__dict__


def test_bpda_lets_a_gradient_attack_move(quantized):
    model, x, y = quantized
    assert np.array_equal(pgd(model, x, y, eps=0.1, nb_iter=3, rand_init=False), x)  # zero gradient: stuck
    with bpda(model, {"quantize": "identity"}):
        moved = pgd(model, x, y, eps=0.1, eps_iter=0.05, nb_iter=3, rand_init=False)
    assert np.abs(moved - x).max() == pytest.approx(0.1, abs=1e-6)


def test_bpda_errors_and_nested_layers(quantized, hrs_setup):
    model, x, y = quantized
    with pytest.raises(ModelError, match="no layer named 'nope'"):
        with bpda(model, {"nope": "identity"}):
            pass
    with pytest.raises(ModelError, match="output shape"):
        with bpda(model, {"flatten": "identity"}):
            pass
    with pytest.raises(ConfigError, match="'identity' or a callable"):
        with bpda(model, {"quantize": 3}):
            pass
    hrs_net = hrs_setup[0]
    assert len(find_layers(hrs_net, "fc2")) == 3  # one per block-2 channel, inside the switch
