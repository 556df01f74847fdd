"""DeepFool: one step lands on the nearest boundary of an affine classifier (L2 and L-inf), it fools a trained
MNIST model with less L2 than the fast gradient method needs, the targeted variant, EOT / BPDA / ensembles,
rho_adv, and one-line errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf import attacks
from hrs_tf.attacks import bpda, registry
from hrs_tf.attacks.deepfool import NUDGE, robustness
from hrs_tf.errors import ConfigError, ModelError
from tests.attacks.helpers import l2, predictions, trained_model

BOX = dict(clip_min=-10.0, clip_max=10.0)  # far from the points below: clipping never interferes
DIMS, CLASSES = 6, 4


@pytest.fixture(scope="module")
def affine():
    """A Keras affine classifier Z = x W + b (hand-set weights) and 12 points in [-1, 1]^6."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(DIMS, CLASSES)).astype(np.float32)
    b = rng.normal(size=CLASSES).astype(np.float32)
    inputs = keras.Input((DIMS,))
    dense = keras.layers.Dense(CLASSES, name="dense")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([w, b])
    x = rng.uniform(-1, 1, size=(12, DIMS)).astype(np.float32)
    return model, w.astype(np.float64), b.astype(np.float64), x


def nearest_boundary(w, b, x, k0, classes, norm):
    """Per example, in float64: the class l whose boundary with k0 is nearest in ``norm`` (dual norm of w_l - w_k0)
    and the analytic minimal perturbation to it plus DeepFool's nudge (|f| + NUDGE in place of |f|)."""
    z = x @ w + b
    nearest, steps = [], []
    for i in range(len(x)):
        best = None
        for k in classes[i]:
            if k == k0[i]:
                continue
            f, wk = z[i, k] - z[i, k0[i]], w[:, k] - w[:, k0[i]]
            dist = abs(f) / (np.linalg.norm(wk) if norm == 2 else np.abs(wk).sum())
            if best is None or dist < best[0]:
                best = (dist, k, f, wk)
        _, k, f, wk = best
        nearest.append(k)
        steps.append((abs(f) + NUDGE) / (wk @ wk) * wk if norm == 2 else (abs(f) + NUDGE) / np.abs(wk).sum() * np.sign(wk))
    return np.array(nearest), np.array(steps)


@pytest.mark.parametrize("name,norm", [("deepfool", 2), ("deepfool_linf", np.inf)])
def test_one_step_on_an_affine_classifier_is_the_minimal_perturbation_to_the_nearest_boundary(affine, name, norm):
    model, w, b, x = affine
    attack = attacks.get_attack(name)
    k0 = predictions(model, x)
    nearest, r = nearest_boundary(w, b, x, k0, [range(CLASSES)] * len(x), norm)
    assert len(set(nearest)) > 1  # the points' nearest boundaries differ
    # overshoot 0, one step: x + r exactly, i.e. the projection on the nearest boundary, NUDGE logits beyond it
    adv = attack(model, x, overshoot=0.0, max_iter=1, **BOX)
    np.testing.assert_allclose(adv - x, r, atol=1e-5)
    z = adv.astype(np.float64) @ w + b
    rows = np.arange(len(x))
    np.testing.assert_allclose(z[rows, nearest] - z[rows, k0], NUDGE, atol=2e-5)  # on the boundary (+ nudge)
    assert np.array_equal(predictions(model, adv), nearest)
    # overshoot 0.02: the prediction changes after exactly one step (50 allowed steps give the same images)
    one = attack(model, x, max_iter=1, **BOX)
    np.testing.assert_allclose(one - x, 1.02 * r, atol=1e-5)
    assert np.all(predictions(model, one) != k0)
    np.testing.assert_array_equal(attack(model, x, **BOX), one)
    # nb_candidate restricts the classes to the largest logits of the original image
    top2 = np.argsort(-(x @ w + b), axis=1)[:, :2]
    _, r2 = nearest_boundary(w, b, x, k0, top2, norm)
    np.testing.assert_allclose(attack(model, x, nb_candidate=2, overshoot=0.0, max_iter=1, **BOX) - x, r2, atol=1e-5)


def test_targeted_deepfool_reaches_the_target_and_y_is_the_class_to_leave(affine):
    model, w, b, x = affine
    k0 = predictions(model, x)
    for shift in (1, 2, 3):  # every other class as a target, the farthest included
        t = (k0 + shift) % CLASSES
        adv = attacks.deepfool(model, x, t, targeted=True, **BOX)
        assert np.array_equal(predictions(model, adv), t), shift
        # first step: toward the boundary between t and k0; where it alone reaches t, it is the whole perturbation
        _, r = nearest_boundary(w, b, x, k0, t[:, None], 2)
        one = np.argmax((x + r) @ w + b, axis=1) == t
        np.testing.assert_allclose((adv - x)[one], 1.02 * r[one], atol=1e-5)
    assert np.array_equal(attacks.deepfool(model, x, k0, targeted=True, **BOX), x)  # already the target: unchanged
    # untargeted with y given: y is the class to leave (the prediction: as y=None; another class: already fooled)
    np.testing.assert_array_equal(attacks.deepfool(model, x, k0, **BOX), attacks.deepfool(model, x, **BOX))
    assert np.array_equal(attacks.deepfool(model, x, (k0 + 1) % CLASSES, **BOX), x)


def test_eot_ensembles_and_bpda_use_the_shared_gradient_path(affine):
    model, _, _, x = affine
    base = attacks.deepfool(model, x, **BOX)
    # EOT averages f and w over 3 passes: equal on a deterministic model (a sum would divide the step by 3)
    np.testing.assert_allclose(attacks.deepfool(model, x, eot_samples=3, **BOX), base, atol=1e-6)
    # two copies of the model = the classifier 2Z: same step up to the nudge (NUDGE / 2 on 2|f|)
    np.testing.assert_allclose(attacks.deepfool([model, model], x, **BOX), base, atol=1e-4)

    class Quantize(keras.layers.Layer):
        def call(self, t):
            return tf.round(t * 4.0) / 4.0

    inputs = keras.Input((DIMS,))
    dense = keras.layers.Dense(CLASSES)
    quantized = keras.Model(inputs, dense(Quantize(name="quantize")(inputs)))
    dense.set_weights(model.get_layer("dense").get_weights())
    assert np.array_equal(attacks.deepfool(quantized, x, **BOX), x)  # zero gradient: no step
    with bpda(quantized, {"quantize": "identity"}):
        adv = attacks.deepfool(quantized, x, **BOX)
    assert np.all(predictions(quantized, adv) != predictions(quantized, x))


def test_fools_a_trained_mnist_model_with_less_l2_than_the_fast_gradient_method(real_mnist):
    model = trained_model(real_mnist)
    x = real_mnist.x_test[:10]
    pred = predictions(model, x)
    adv = attacks.deepfool(model, x)  # defaults: 10 candidates, overshoot 0.02, 50 steps, box [0, 1]
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.all(predictions(model, adv) != pred)  # measured: 100%, all within 9 steps
    ours = l2(adv, x)
    # FGM-L2 (Goodfellow et al.): the smallest step eps along grad CE / ||grad CE|| that fools each image (grid 0.1)
    direction = attacks.fgsm(model, x, pred, eps=1.0, norm=2, clip_min=-100.0, clip_max=100.0) - x
    grid = np.arange(0.1, 12.0, 0.1, dtype=np.float32)
    tries = np.clip(x[None] + grid[:, None, None, None, None] * direction[None], 0.0, 1.0)
    fooled = (predictions(model, tries.reshape((-1,) + x.shape[1:])).reshape(len(grid), len(x)) != pred).T
    assert fooled.any(axis=1).all()
    first = fooled.argmax(axis=1)
    fgm = l2(tries[first, np.arange(len(x))], x)
    # measured: DeepFool mean L2 1.84 vs FGM 2.49 (ratio 0.74); DeepFool below FGM on 10 of the 10 images
    assert ours.mean() < 0.85 * fgm.mean() and np.mean(ours < fgm) >= 0.8
    assert robustness(x, adv) == pytest.approx(np.mean(ours / l2(np.zeros_like(x), x)), rel=1e-6)


def test_robustness_is_the_mean_relative_perturbation():
    x = np.array([[3.0, 4.0], [1.0, 0.0]], np.float32)[..., None]  # norms 5 and 1 (shape (2, 2, 1))
    x_adv = x + np.array([[0.3, 0.4], [0.0, 2.0]], np.float32)[..., None]  # perturbation norms 0.5 and 2
    assert robustness(x, x_adv) == pytest.approx((0.5 / 5 + 2.0 / 1) / 2, rel=1e-6)
    assert robustness(x, x_adv, norm=np.inf) == pytest.approx((0.4 / 4 + 2.0 / 1) / 2, rel=1e-6)
    assert robustness(x, x) == 0.0
    for args, text in (((x, x_adv[:1]), "same shape"), ((np.zeros_like(x), x), "all-zero image")):
        with pytest.raises(ConfigError, match=text) as info:
            robustness(*args)
        assert "\n" not in str(info.value)


def test_declarations_and_one_line_errors(affine):
    model, _, _, x = affine
    assert registry.get("deepfool").norm == "l2" and registry.get("deepfool_linf").norm == "linf"
    assert registry.get("deepfool_linf").defaults == {"norm": np.inf} and registry.get("deepfool").gradient_based
    assert registry.get("deepfool").parse_settings({"nb_candidate": "3", "overshoot": "0.1", "max_iter": "7"}) == {
        "nb_candidate": 3, "overshoot": 0.1, "max_iter": 7}
    cases = [
        (dict(overshoot=-0.1), ConfigError, "overshoot=-0.1 must be a non-negative number"),
        (dict(max_iter=0), ConfigError, "max_iter=0 must be at least 1"),
        (dict(nb_candidate=1), ConfigError, "nb_candidate=1 must be at least 2"),
        (dict(norm=1), ConfigError, "norm=1 is not supported"),
        (dict(loss_fn=lambda labels, logits: logits), TypeError, "loss_fn"),  # DeepFool takes no loss_fn
    ]
    for kwargs, error, text in cases:
        with pytest.raises(error) as info:
            attacks.deepfool(model, x, **kwargs, **BOX)
        assert text in str(info.value) and "\n" not in str(info.value)
    inputs = keras.Input((DIMS,))
    with pytest.raises(ModelError, match="at least 2 classes"):
        attacks.deepfool(keras.Model(inputs, keras.layers.Dense(1)(inputs)), x, **BOX)
