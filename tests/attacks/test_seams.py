"""The attack API seams: ``loss_fn`` (CleverHans convention), ``clip_min`` / ``clip_max``, several models summed in
one gradient path, and attacks declared once (function, norm, settings, command-line flags)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf import attacks, cli, models, training
from hrs_tf.attacks import gradients, losses, registry
from hrs_tf.errors import ConfigError, ModelError
from tests.attacks.helpers import predictions, trained_model


@pytest.fixture(scope="module")
def model(real_mnist):
    return trained_model(real_mnist)


@pytest.fixture(scope="module")
def images(real_mnist):
    return real_mnist.x_test[:20], real_mnist.y_test[:20].astype(np.int64)


def saturated(model, scale=1e4):
    """``model`` with its logits multiplied by ``scale``: its softmax is one-hot in float32, the cross-entropy
    gradient of a confidently classified image is exactly 0 (the gradient masking of a saturated softmax)."""
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, keras.layers.Rescaling(scale)(model(inputs)))


def test_the_default_loss_is_the_cross_entropy_and_loss_fn_replaces_it(model, images):
    x, y = images
    plain = attacks.pgd(model, x, y, eps=0.1, nb_iter=5, seed=0)
    explicit = attacks.pgd(model, x, y, eps=0.1, nb_iter=5, seed=0, loss_fn=losses.cross_entropy)
    np.testing.assert_array_equal(plain, explicit)
    seen = []

    def counting_margin(labels, logits):
        seen.append(tuple(logits.shape))
        return losses.margin(labels, logits)

    attacks.fgsm(model, x, y, eps=0.1, loss_fn=counting_margin)
    assert seen and seen[0][-1] == 10  # called on the logits (while tracing)


def test_loss_fn_defeats_a_saturated_softmax_that_stops_the_cross_entropy(model, images):
    x, y = images
    masked = saturated(model)
    correct = predictions(model, x) == y
    ce = attacks.pgd(masked, x, y, eps=0.3, seed=0)
    assert np.all(predictions(masked, ce)[correct] == y[correct])  # zero gradient: no image moves off its label
    for loss in (losses.margin, losses.dlr):
        adv = attacks.pgd(masked, x, y, eps=0.3, seed=0, loss_fn=loss)
        assert np.mean(predictions(masked, adv)[correct] != y[correct]) >= 0.9  # measured 1.0 for both
    # The hash paper's BPDA: sigmoids in place of the softmax give gradients again (through the wrong classes'
    # positive logits, which the sigmoid cross-entropy raises linearly); weaker than the margin here.
    adv = attacks.pgd(masked, x, y, eps=0.3, seed=0, loss_fn=losses.bpda_sigmoid)
    assert np.mean(predictions(masked, adv)[correct] != y[correct]) >= 0.25  # measured 0.44 (CE: 0.0)


def test_targeted_loss_fn_is_decreased_toward_the_target(model, images):
    x, y = images
    t = (y + 3) % 10
    adv = attacks.pgd(model, x, t, eps=0.3, nb_iter=40, targeted=True, seed=0, loss_fn=losses.margin)
    assert np.mean(predictions(model, adv) == t) >= 0.9  # measured 1.0
    adv = attacks.hrs_cw_pgd(model, x, t, eps=0.3, loss_fn=losses.cross_entropy)
    assert np.mean(predictions(model, adv) == t) >= 0.9


def test_the_pixel_box_is_a_setting(model, images):
    x, y = images
    centred = x * 2.0 - 1.0  # a model taking pixels in [-1, 1]
    inputs = keras.Input(model.input_shape[1:])
    shifted = keras.Model(inputs, model(keras.layers.Rescaling(0.5, offset=0.5)(inputs)))
    with pytest.raises(ConfigError, match=r"attacks expect pixels in \[0, 1\]"):
        attacks.pgd(shifted, centred, y, eps=0.1)
    for name, settings in (("pgd", dict(eps=0.2, seed=0)), ("fgsm", dict(eps=0.2)), ("bim", dict(eps=0.2)),
                           ("mim", dict(eps=0.2)), ("hrs_pgd", dict(eps=0.2)), ("cw_l2", dict(max_iterations=20)),
                           ("jsma_z", dict(gamma=0.05))):
        adv = attacks.get_attack(name)(shifted, centred, y if name in ("pgd", "fgsm", "bim", "mim") else (y + 1) % 10,
                                       targeted=name not in ("pgd", "fgsm", "bim", "mim"), clip_min=-1.0, clip_max=1.0,
                                       **settings)
        assert adv.min() >= -1.0 and adv.max() <= 1.0 and adv.min() < 0, name
    with pytest.raises(ConfigError, match="clip_min=1 must be below clip_max=0"):
        attacks.fgsm(model, x, y, clip_min=1, clip_max=0)


def test_several_models_share_one_gradient_path_with_summed_objectives(model, images, real_mnist):
    x, y = images[0][:4], images[1][:4].astype(np.int32)
    keras.utils.set_random_seed(1)  # a second, differently trained (and weaker: ~51% accurate) model
    other = models.build_base_model("mnist")
    training.fit(other, real_mnist.x_train[8000:12000], real_mnist.y_train[8000:12000], epochs=1, seed=1, verbose=0,
                 learning_rate=0.05)
    objective = gradients.cross_entropy(targeted=False)
    xt, yt = tf.constant(x), tf.constant(y)
    values, grads, logits = gradients.value_and_grad([model, other], objective, xt, yt)
    (v1, g1, z1), (v2, g2, z2) = (gradients.value_and_grad(m, objective, xt, yt) for m in (model, other))
    np.testing.assert_allclose(values.numpy(), (v1 + v2).numpy(), rtol=1e-5)
    np.testing.assert_allclose(grads.numpy(), (g1 + g2).numpy(), rtol=1e-4, atol=1e-7)
    assert logits.shape == (2, 4, 10)
    np.testing.assert_allclose(logits.numpy(), np.stack([z1.numpy(), z2.numpy()]), rtol=1e-6)
    # C&W on both models at once: a success fools each of them, with the margin on each. The weak model's logits span
    # only ~5 (an AVX2 CPU trains it to 59%): a margin of 1 on both was reached on 1 of 4 images there (4 of 4 on an
    # AVX-512 CPU), a margin of 0.2 on 3 of 4.
    t, margin = (y + 1) % 10, 0.2
    adv = attacks.cw_l2([model, other], x, t, targeted=True, confidence=margin, binary_search_steps=6,
                        max_iterations=100, learning_rate=0.1)
    moved = np.abs(adv - x).reshape(4, -1).max(axis=1) > 0
    assert moved.sum() >= 3
    for m in (model, other):
        z = np.array(m(adv[moved]))
        own = z[np.arange(moved.sum()), t[moved]]
        z[np.arange(moved.sum()), t[moved]] = -np.inf
        assert np.all(own - z.max(axis=1) >= margin - 1e-4)
    with pytest.raises(ModelError, match="output different numbers of classes \\[3, 10\\]"):
        inputs = keras.Input(model.input_shape[1:])
        attacks.fgsm([model, keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))], x, y)


def test_every_attack_is_declared_once_with_its_settings_as_flags():
    from absl import flags

    values = flags.FlagValues()
    cli.define_attack_flags(values)
    assert set(registry.all_parameters()) | {"loss", "backend"} == set(values)
    values(["prog", "--eps=8/255", "--nb_iter=7", "--rand_init=false"])
    assert cli.attack_settings("pgd", values) == {"eps": pytest.approx(8 / 255), "nb_iter": 7, "rand_init": False}
    with pytest.raises(ConfigError, match="attack 'fgsm' does not take the setting 'nb_iter'; it takes eps"):
        cli.attack_settings("fgsm", values)
    values.unparse_flags()
    values(["prog", "--nb_iter=0"])  # a count that would make the attack do nothing is refused, not run
    with pytest.raises(ConfigError, match="nb_iter=0 must be at least 1"):
        cli.attack_settings("pgd", values)
    values.unparse_flags()
    values(["prog", "--confidence=2", "--max_iterations=50"])
    assert cli.attack_settings("cw_l2", values) == {"confidence": 2.0, "max_iterations": 50}
    values.unparse_flags()
    values(["prog", "--loss=bpda_sigmoid", "--backend=cleverhans"])
    assert cli.attack_settings("pgd", values) == {"loss_fn": losses.bpda_sigmoid, "backend": "cleverhans"}
    with pytest.raises(ConfigError, match="attack 'cw_l2' takes no --backend"):
        cli.attack_settings("cw_l2", values)
    values.unparse_flags()
    values(["prog", "--loss=margin"])
    with pytest.raises(ConfigError, match="attack 'jsma_z' takes no --loss"):
        cli.attack_settings("jsma_z", values)
    assert registry.get("hrs_cw_l2").defaults == {"learning_rate": 0.1, "binary_search_steps": 10, "max_iterations": 100}
    assert attacks.get_attack("hrs_cw_l2").__name__ == "hrs_cw_l2"


def test_declarations_are_checked():
    def attack(model, x, y, targeted=False, eps=0.3, eot_samples=1):
        return x

    with pytest.raises(ConfigError, match="declares setting 'steps' that attack does not take"):
        registry.declare("test_attack", attack, norm="linf", summary="", reference="",
                         parameters={"steps": registry.Parameter("int", "")})
    with pytest.raises(ConfigError, match="setting 'eps' of attack 'test_attack' is a int, elsewhere a fraction"):
        registry.declare("test_attack", attack, norm="linf", summary="", reference="",
                         parameters={"eps": registry.Parameter("int", "")})
    with pytest.raises(ConfigError, match="norm of attack 'test_attack'='l3' is not one of"):
        registry.declare("test_attack", attack, norm="l3", summary="", reference="", parameters={})
    assert "test_attack" not in registry.ATTACKS
