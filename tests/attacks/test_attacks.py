"""Each attack really fools a small trained MNIST model, within its constraints."""

import inspect
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf import attacks
from hrs_tf.attacks import gradients
from hrs_tf.errors import ConfigError, ModelError
from tests.attacks.helpers import l2, margins, predictions, trained_model, wrong_targets


@pytest.fixture(scope="module")
def model(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def images(real_mnist, model):
    """The first 100 test images, and the small model's clean accuracy on them (measured 0.95)."""
    x, y = real_mnist.x_test[:100], real_mnist.y_test[:100]
    assert np.mean(predictions(model, x) == y) > 0.9
    return x, y


def test_pgd_linf_eps03_untargeted_fools_nearly_all_and_respects_the_ball(model, images):
    x, y = images
    adv = attacks.pgd(model, x, y, eps=0.3, nb_iter=40, seed=0)
    assert np.mean(predictions(model, adv) != y) > 0.95  # measured 1.00
    assert np.abs(adv - x).max() <= 0.3 + 1e-6  # the eps-ball, up to float32 rounding of x + eta
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_pgd_random_start_is_seeded_and_differs_from_no_start(model, images):
    x, y = images[0][:20], images[1][:20]
    a = attacks.pgd(model, x, y, eps=0.1, nb_iter=2, seed=3)
    b = attacks.pgd(model, x, y, eps=0.1, nb_iter=2, seed=3)
    c = attacks.pgd(model, x, y, eps=0.1, nb_iter=2, seed=4)
    d = attacks.pgd(model, x, y, eps=0.1, nb_iter=2, rand_init=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_pgd_l2_stays_in_the_l2_ball_and_fools(model, images):
    x, y = images[0][:50], images[1][:50]
    adv = attacks.pgd_l2(model, x, y, eps=3.0, nb_iter=40, seed=0)
    assert l2(adv, x).max() <= 3.0 * (1 + 1e-5)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.mean(predictions(model, adv) != y) > 0.9  # measured 1.00


def test_targeted_pgd_and_cw_pgd_reach_the_target(model, images):
    x, y = images[0][:50], images[1][:50]
    t = wrong_targets(y)
    adv = attacks.pgd(model, x, t, eps=0.3, nb_iter=100, targeted=True, seed=0)
    assert np.mean(predictions(model, adv) == t) > 0.75  # measured 0.86 (the same with steps 0.01 to 0.03)
    adv = attacks.cw_pgd(model, x, t, eps=0.3, nb_iter=100, targeted=True, confidence=2.0, seed=0)
    reached = predictions(model, adv) == t
    assert reached.mean() > 0.75 and np.abs(adv - x).max() <= 0.3 + 1e-6  # measured 0.82
    # The clamp at -kappa stops the ascent once the margin reaches kappa: margins end near 2, not far beyond.
    assert np.median(margins(model, adv, t)[reached]) < 3.0  # measured 2.05


def test_fgsm_bim_mim_untargeted(model, images):
    x, y = images
    fgsm_asr = np.mean(predictions(model, attacks.fgsm(model, x, y, eps=0.3)) != y)
    bim_asr = np.mean(predictions(model, attacks.bim(model, x, y, eps=0.3)) != y)
    adv = attacks.mim(model, x, y, eps=0.3)
    mim_asr = np.mean(predictions(model, adv) != y)
    assert fgsm_asr > 0.5 and bim_asr > 0.95 and mim_asr > 0.95  # measured 0.83 / 1.00 / 1.00
    assert np.abs(adv - x).max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # FGSM is one step: every changed pixel moved by exactly eps unless clipped at 0 or 1.
    adv = attacks.fgsm(model, x, y, eps=0.1)
    moved = np.abs(adv - x)[np.abs(adv - x) > 1e-6]
    inside = (adv > 1e-6) & (adv < 1 - 1e-6) & (np.abs(adv - x) > 1e-6)
    assert np.allclose(np.abs(adv - x)[inside], 0.1, atol=1e-6) and moved.max() <= 0.1 + 1e-6


def test_cw_l2_targeted_succeeds_on_every_pair_with_a_sane_l2(model, images):
    x, y = images[0][:10], images[1][:10]
    t = np.concatenate([wrong_targets(y, 1), wrong_targets(y, 5)])
    x = np.concatenate([x, x])
    # Fewer iterations than Carlini's defaults (test time); learning rate and c start raised to match.
    adv = attacks.cw_l2(model, x, t, targeted=True, binary_search_steps=6, max_iterations=200, learning_rate=0.05,
                        initial_const=0.1)
    assert np.all(predictions(model, adv) == t)
    dist = l2(adv, x)
    assert 0.5 < dist.mean() < 4.0  # measured 2.7 on this 2-epoch model (literature, trained models: 1.4-2.1)
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_cw_l2_uses_kappa_in_the_success_test(model, images):
    x, y = images[0][:10], images[1][:10]
    t = wrong_targets(y, 3)
    settings = dict(targeted=True, binary_search_steps=7, max_iterations=200, learning_rate=0.05, initial_const=0.1)
    low = attacks.cw_l2(model, x, t, confidence=0.0, **settings)
    high = attacks.cw_l2(model, x, t, confidence=4.0, **settings)
    found = np.any(np.abs(high - x) > 1e-4, axis=(1, 2, 3))
    assert found.mean() >= 0.8
    # Only examples with margin >= kappa are returned; the rest stay the original image.
    assert np.all(margins(model, high[found], t[found]) >= 4.0 - 1e-3)
    np.testing.assert_array_equal(high[~found], x[~found])
    assert np.all(margins(model, low, t) >= 0) and np.median(margins(model, low, t)) < 1.0
    assert l2(high, x)[found].mean() > l2(low, x)[found].mean()


def test_cw_l2_untargeted(model, images):
    x, y = images[0][:10], images[1][:10]
    adv = attacks.cw_l2(model, x, y, binary_search_steps=5, max_iterations=100, learning_rate=0.05, initial_const=0.1)
    assert np.all(predictions(model, adv) != y) and l2(adv, x).mean() < 3.0  # measured 1.5


def test_cw_l2_leaves_box_edge_pixels_when_lr_times_iterations_is_small_and_warns(model, images, caplog):
    # A pixel at 0 starts at w = -7.25 and Adam moves w by about lr per iteration (docs/attacks.md).
    x, y = images[0][:8], images[1][:8]
    t = wrong_targets(y, 1)
    zero = x == 0
    settings = dict(targeted=True, binary_search_steps=1, max_iterations=200, initial_const=100.0)
    with caplog.at_level("WARNING", logger="hrs_tf.attacks.cw_l2"):
        frozen = attacks.cw_l2(model, x, t, learning_rate=0.01, **settings)  # lr x iterations = 2
    assert "may not move" in caplog.text
    reached = predictions(model, frozen) == t
    assert reached.sum() >= 3  # measured 5 of 8, by reshaping the strokes ...
    assert np.abs(frozen - x)[zero].max() < 0.002  # ... while no pixel at 0 left it (measured 0.0009)
    caplog.clear()
    with caplog.at_level("WARNING", logger="hrs_tf.attacks.cw_l2"):
        free = attacks.cw_l2(model, x, t, learning_rate=0.05, **settings)  # 10
    assert "may not move" not in caplog.text
    assert np.abs(free - x)[zero].max() > 0.1  # measured 0.58, 8 of 8 reached
    assert (predictions(model, free) == t).sum() >= reached.sum()


def test_success_test_with_confidence():
    logits = tf.constant([[0.0, 3.0, 1.0], [2.0, 2.5, 0.0], [5.0, 0.0, 1.0]])
    t = tf.constant([1, 1, 1])
    np.testing.assert_array_equal(gradients.succeeded(logits, t, True, 0.0), [True, True, False])
    np.testing.assert_array_equal(gradients.succeeded(logits, t, True, 1.0), [True, False, False])
    y = tf.constant([0, 0, 0])  # untargeted: away from class 0 by at least kappa
    np.testing.assert_array_equal(gradients.succeeded(logits, y, False, 0.5), [True, True, False])
    np.testing.assert_array_equal(gradients.succeeded(logits, y, False, 0.6), [True, False, False])
    np.testing.assert_array_equal(gradients.margin(logits, t), [2.0, 0.5, -5.0])


@pytest.mark.parametrize("name", ["jsma_z", "jsma_f"])
def test_jsma_changes_a_few_percent_of_pixels(model, images, name):
    x, y = images[0][:10], images[1][:10]
    t = wrong_targets(y, 1)
    adv = attacks.get_attack(name)(model, x, t)
    ok = predictions(model, adv) == t
    changed = np.abs(adv - x) > 1e-6
    assert ok.mean() >= 0.8  # measured 0.9 for both; one pair is not reached within gamma = 1
    # Measured 8.6% (Z) / 6.0% (F) of the 784 pixels; C&W 2017 (Table IV) report 45-56 pixels (6-7%).
    assert changed.reshape(10, -1)[ok].mean() < 0.12
    assert np.all(adv[changed] == 1.0)  # theta = 1: each chosen pixel is set to the maximum
    assert changed.reshape(10, -1).sum(axis=1).max() <= 784  # gamma = 1 bound


def test_jsma_untargeted_and_gamma_bound(model, images):
    x, y = images[0][:10], images[1][:10]
    adv = attacks.jsma_z(model, x, y, targeted=False)
    assert np.mean(predictions(model, adv) != y) >= 0.9
    capped = attacks.jsma_z(model, x, wrong_targets(y, 2), gamma=0.01)  # at most floor(7.84 / 2) = 3 pairs
    assert (np.abs(capped - x) > 1e-6).reshape(10, -1).sum(axis=1).max() <= 6


def test_hrs_pgd_semantics(model, images):
    x, y = images[0][:20], images[1][:20]
    t = wrong_targets(y)
    eps = 0.2
    start = attacks.hrs_pgd(model, x, t, eps=eps, nb_iter=0)
    np.testing.assert_allclose(start, np.maximum(x - eps, 0.0))  # the lower corner of the ball
    # One Adam step (lr 0.1) on the sign of the CE gradient toward t: m_hat = s, v_hat = s^2 -> 0.1 * s.
    grad = gradients.input_gradient(model, start, t, gradients.cross_entropy(targeted=False))  # d CE(t) / dx
    expected = np.clip(np.clip(start - 0.1 * np.sign(grad) / (1 + 1e-8), 0, 1), x - eps, x + eps)
    np.testing.assert_allclose(attacks.hrs_pgd(model, x, t, eps=eps, nb_iter=1), expected, atol=1e-6)
    adv = attacks.hrs_pgd(model, x, t, eps=0.3)
    assert np.abs(adv - x).max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert np.mean(predictions(model, adv) == t) > 0.75  # measured 0.85, as sign-step PGD (0.86)


def test_hrs_cw_pgd_feeds_adam_the_raw_margin_gradient(model, images):
    x, y = images[0][:20], images[1][:20]
    t = wrong_targets(y)
    eps = 0.2
    start = np.maximum(x - eps, 0.0)

    def loss(logits, t):  # what the HRS repo minimises: max_{j != t} Z_j - Z_t
        return -gradients.margin(logits, t)

    g = gradients.input_gradient(model, start, t, loss)
    m, v = 0.1 * g, 0.001 * g * g  # one Adam step: m_hat = g, v_hat = g^2
    step = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-8)
    expected = np.clip(np.clip(start - step, 0, 1), x - eps, x + eps)
    np.testing.assert_allclose(attacks.hrs_cw_pgd(model, x, t, eps=eps, nb_iter=1), expected, atol=1e-5)
    adv = attacks.hrs_cw_pgd(model, x, t, eps=0.3)
    assert np.mean(predictions(model, adv) == t) > 0.75  # measured 0.85


def test_hrs_attacks_trace_once_for_a_whole_eps_sweep(model, images):
    x, t = images[0][:4], wrong_targets(images[1][:4])
    for eps in (0.05, 0.1, 0.2):  # an eps sweep, as the reproduction's ASR-vs-eps cells
        adv = attacks.hrs_cw_pgd(model, x, t, eps=eps, nb_iter=3)
        assert np.abs(adv - x).max() <= eps + 1e-6  # each call still honours its own budget
    cache = getattr(model, gradients._CACHE_ATTRIBUTE)
    fns = [fn for key, fn in cache.items() if key[0] == "hrs_adam" and key[2] == 3]
    assert len(fns) == 1 and fns[0].experimental_get_tracing_count() == 1


def test_user_errors_are_one_line(model, images):
    x, y = images[0][:2], images[1][:2]
    cases = [
        (lambda: attacks.pgd(model, x, y, eps=8), ConfigError, "outside [0, 1]"),
        (lambda: attacks.fgsm(model, x, y, eps=-0.1), ConfigError, "outside [0, 1]"),
        (lambda: attacks.pgd(model, x, y, norm=1), ConfigError, "norm=1"),
        (lambda: attacks.pgd(model, x, None, targeted=True), ConfigError, "needs the targets"),
        (lambda: attacks.pgd(model, x, [1, 2, 3]), ConfigError, "2 integer class labels"),
        (lambda: attacks.pgd(model, x, [1, 12]), ConfigError, "outside 0..9"),
        (lambda: attacks.pgd(model, x * 255, y), ConfigError, "pixels in [0, 1]"),
        (lambda: attacks.pgd(model, np.zeros((2, 32, 32, 3), np.float32), y), ModelError, "takes inputs of shape"),
        (lambda: attacks.cw_l2(model, x, y, binary_search_steps=0), ConfigError, "at least 1"),
        (lambda: attacks.jsma_z(model, x, y, theta=0), ConfigError, "theta"),
        (lambda: attacks.get_attack("nosuch"), ConfigError, "unknown attack 'nosuch'"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=None) as info:
            call()
        assert text in str(info.value) and "\n" not in str(info.value)


GRADIENT_FREE = {"square", "square_l2", "zoo", "substitute_fgsm", "substitute_cw_l2"}  # they count queries instead
NO_LOSS_FN = {"jsma_z", "jsma_f", "deepfool", "deepfool_linf", "zoo", "substitute_fgsm", "substitute_cw_l2"}


def test_registry_is_complete():
    assert set(attacks.ATTACKS) == {"fgsm", "bim", "mim", "pgd", "pgd_l2", "cw_l2", "cw_pgd", "jsma_z", "jsma_f",
                                    "hrs_pgd", "hrs_cw_pgd", "hrs_cw_l2", "ead", "ead_l1", "deepfool", "deepfool_linf",
                                    "apgd_ce", "apgd_dlr", "apgd_ce_l2", "apgd_dlr_l2"} | GRADIENT_FREE
    for name, declared in attacks.ATTACKS.items():
        fn = attacks.get_attack(name)
        assert attacks.settings.accepts(fn, "targeted") and attacks.settings.accepts(fn, "clip_min"), name
        assert declared.norm in ("linf", "l2", "l1", "l0"), name
        # every gradient attack works under EOT; the gradient-free ones report the queries they spend
        assert declared.gradient_based == (name not in GRADIENT_FREE), name
        assert attacks.settings.accepts(fn, "stats") == (name in GRADIENT_FREE) or name.startswith("apgd"), name
        # every setting a user may give is a keyword of the function (the CLI flags come from these)
        assert set(declared.parameters) <= set(inspect.signature(declared.function).parameters), name
        # a loss_fn everywhere but where the method needs per-class outputs (JSMA's saliency, DeepFool's
        # linearisation), log-probabilities (ZOO's loss), or only labels (the substitute attacks)
        assert attacks.settings.accepts(fn, "loss_fn") == (name not in NO_LOSS_FN), name


@pytest.mark.parametrize("shape", [(12,), (3, 4)])
def test_attacks_accept_any_input_rank(shape):
    import keras

    keras.utils.set_random_seed(4)
    inputs = keras.Input(shape)
    h = keras.layers.Flatten()(inputs) if len(shape) > 1 else inputs
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(16, activation="tanh")(h)))
    x = np.random.default_rng(1).random((6,) + shape).astype(np.float32)
    t = (predictions(model, x) + 1) % 3
    adv = attacks.cw_l2(model, x, t, targeted=True, binary_search_steps=6, max_iterations=100, learning_rate=0.1)
    assert adv.shape == x.shape and np.all(predictions(model, adv) == t)
    for name, kwargs in (("pgd", dict(eps=1.0, nb_iter=20, seed=0)), ("mim", dict(eps=1.0)), ("jsma_z", {})):
        adv = attacks.get_attack(name)(model, x, t, targeted=True, **kwargs)
        assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
