"""EAD (Chen et al. 2018): the shrinkage operator, sparse successes on the small trained MNIST model, the two
decision rules, untargeted use and bad settings.

Settings of the model runs: 100 FISTA iterations, 3 search steps from c = 1 (c = 1, then 0.5 or 10, ...): with
the paper's threshold beta = 0.01 and step 0.01, a pixel leaves x only where c * |df/dx| > 1, so the default
c = 1e-3 needs 4 search steps before anything moves.
"""

import numpy as np
import pytest

from hrs_tf import attacks
from hrs_tf.attacks import registry
from hrs_tf.attacks.ead import shrink  # the package attribute `ead` is the attack function
from hrs_tf.errors import ConfigError
from tests.attacks.helpers import margins, predictions, trained_model, wrong_targets

BUDGET = dict(max_iterations=100, binary_search_steps=3, initial_const=1.0)


@pytest.fixture(scope="module")
def model(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def images(real_mnist, model):
    """The first 5 test images (all classified correctly by the small model) and targets label + 1."""
    x, y = real_mnist.x_test[:5], real_mnist.y_test[:5]
    assert np.all(predictions(model, x) == y)
    return x, y, wrong_targets(y)


@pytest.fixture(scope="module")
def en_result(model, images):
    x, _, t = images
    return attacks.ead(model, x, t, targeted=True, **BUDGET)


def distances(adv, x):
    """Per-example L1, squared L2 and number of changed pixels (float64)."""
    d = (np.asarray(adv, np.float64) - x).reshape(len(x), -1)
    return np.abs(d).sum(1), (d ** 2).sum(1), np.count_nonzero(d, axis=1)


def test_shrink_thresholds_toward_x0_then_clips_to_the_box():
    x0 = np.array([[0.5, 0.5, 0.5, 0.5, 0.5, 0.95, 0.05, 0.5]], np.float32)
    z = np.array([[0.55, 0.45, 0.8, 0.2, 0.6, 1.3, -0.4, 0.5625]], np.float32)
    out = shrink(z, x0, 0.1, 0.0, 1.0).numpy()
    # |z - x0| <= beta -> x0 (0.55, 0.45, and 0.6 on the threshold); beyond: moved by beta toward x0, then
    # clipped (1.3 - 0.1 -> 1.0, -0.4 + 0.1 -> 0.0).
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.7, 0.3, 0.5, 1.0, 0.0, 0.5]], atol=1e-7)
    # The box is a setting; beta = 0 is the plain box projection.
    np.testing.assert_allclose(shrink(z, x0, 0.1, 0.25, 0.75).numpy(),
                               [[0.5, 0.5, 0.7, 0.3, 0.5, 0.75, 0.25, 0.5]], atol=1e-7)
    np.testing.assert_allclose(shrink(z, x0, 0.0).numpy(), np.clip(z, 0, 1), atol=1e-7)


def test_ead_succeeds_with_sparser_perturbations_than_cw_l2(model, images, en_result):
    x, _, t = images
    assert np.all(predictions(model, en_result) == t) and np.all(margins(model, en_result, t) >= 0)
    assert en_result.min() >= 0.0 and en_result.max() <= 1.0
    l1, _, changed = distances(en_result, x)
    # C&W-L2 with the same budget; its Adam step 1e-2 succeeds on none of them in 100 iterations (tanh
    # saturation at black pixels), so it gets 0.1 (0.05 left one of the five images of one training of the shared
    # model stuck at margin -16).
    cw = attacks.cw_l2(model, x, t, targeted=True, learning_rate=0.1, **BUDGET)
    assert np.all(predictions(model, cw) == t)
    cw_l1, _, cw_changed = distances(cw, x)
    # Measured: EAD changes 53-224 of 784 pixels (L1 13.8-100.1, median 18.2); C&W changes 619-733
    # (L1 17.5-86.6, median 32.1): shrinkage leaves most pixels exactly at x. With the shared model trained with
    # per-epoch shuffling and C&W at 0.1: EAD 55-208 (L1 median 23.1), C&W 562-697 (median 29.0).
    assert np.all(changed < cw_changed / 2)
    assert np.median(l1) < np.median(cw_l1)
    # The sparsity comes from beta: the same FISTA run without the L1 term (beta = 0) changes 548-698 pixels
    # (524-613 with the other training of the shared model).
    dense = attacks.ead(model, x, t, targeted=True, beta=0.0, **BUDGET)
    assert np.all(predictions(model, dense) == t)
    assert np.all(changed < distances(dense, x)[2] / 2)


def test_l1_rule_keeps_the_smallest_l1_and_en_rule_the_smallest_elastic_net(model, images, en_result):
    x, _, t = images
    assert registry.get("ead_l1").defaults == {"decision_rule": "L1"}
    l1_result = attacks.ead_l1(model, x, t, targeted=True, **BUDGET)
    assert np.all(predictions(model, l1_result) == t)
    # Both rules see the same (deterministic) iterates -- the rule does not steer the search -- so each
    # picks the best success under its own criterion (1e-4: float32 sums in the graph vs float64 here).
    en_l1, en_l2, _ = distances(en_result, x)
    l1_l1, l1_l2, _ = distances(l1_result, x)
    beta = 1e-2
    assert np.all(l1_l1 <= en_l1 + 1e-4)
    assert np.all(beta * en_l1 + en_l2 <= beta * l1_l1 + l1_l2 + 1e-4)
    # Measured: the L1 rule is strictly better in L1 on 4 of 5 (e.g. 11.94 vs 13.98).
    assert np.sum(l1_l1 < en_l1 - 0.1) >= 2


def test_untargeted_and_no_success_returns_the_image(model, images):
    x, y, _ = images
    adv = attacks.ead(model, x, y, **BUDGET)
    assert np.all(predictions(model, adv) != y)  # measured 5 of 5
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.all(distances(adv, x)[2] < 200)  # measured 43-168 changed pixels
    # c = 1e-3, 1e-2, 1e-1: c * |df/dx| stays below 1, every step is shrunk back to x: no success, x returned.
    unchanged = attacks.ead(model, x, y, **{**BUDGET, "initial_const": 1e-3})
    np.testing.assert_array_equal(unchanged, x)


def test_bad_settings_are_one_line_config_errors(model, images):
    x, y, _ = images
    cases = [(dict(beta=-0.1), "beta=-0.1 must be a non-negative number"),
             (dict(max_iterations=0), "max_iterations=0 must be at least 1"),
             (dict(decision_rule="L2"), "decision_rule='L2' is not one of EN, L1"),
             (dict(initial_const=0), "initial_const=0 must be a positive number")]
    for settings, text in cases:
        with pytest.raises(ConfigError) as info:
            attacks.ead(model, x, y, **settings)
        assert text in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not take the setting 'eps'"):
        registry.get("ead").parse_settings({"eps": "0.1"})
