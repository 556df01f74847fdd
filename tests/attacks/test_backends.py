"""``backend="cleverhans"``: CleverHans 4.0.0's FGSM / BIM / MIM / PGD run as they are and give our images on a
deterministic model; what CleverHans cannot do (EOT, fixed randomness, BPDA, a loss_fn it lacks, ensembles) is
refused with a one-line error."""

import keras
import numpy as np
import pytest

from hrs_tf import attacks
from hrs_tf.attacks import backends, losses, settings
from hrs_tf.errors import ConfigError
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from tests.attacks.helpers import trained_model
from tests.attacks.test_cleverhans import check_same


@pytest.fixture(scope="module")
def setup(real_mnist):
    return trained_model(real_mnist), real_mnist.x_test[:20], real_mnist.y_test[:20].astype(np.int64)


@pytest.mark.parametrize("name, kwargs, norm", [
    ("fgsm", dict(eps=0.1), np.inf),
    ("fgsm", dict(eps=1.5, norm=2, loss_fn=losses.margin), 2),
    ("bim", dict(eps=0.3, eps_iter=0.05, nb_iter=10), np.inf),
    ("mim", dict(eps=0.3, eps_iter=0.06, nb_iter=10), np.inf),
    ("pgd", dict(eps=0.3, eps_iter=0.01, nb_iter=20, rand_init=False), np.inf),
    ("pgd", dict(eps=2.0, eps_iter=0.1, nb_iter=20, norm=2, rand_init=False), 2),
])
@pytest.mark.parametrize("targeted", [False, True])
def test_cleverhans_backend_gives_our_images(setup, name, kwargs, norm, targeted):
    model, x, y = setup
    y = (y + 1) % 10 if targeted else y
    fn = attacks.get_attack(name)
    ours = fn(model, x, y, targeted=targeted, **kwargs)
    theirs = fn(model, x, y, targeted=targeted, backend="cleverhans", **kwargs)
    check_same(ours, theirs, norm)
    assert np.abs(ours - x).max() > 0.01  # the attack moved the images (the comparison is not vacuous)


def test_cleverhans_random_start_is_seeded(setup):
    model, x, y = setup
    runs = [attacks.pgd(model, x, y, eps=0.3, nb_iter=3, seed=s, backend="cleverhans") for s in (4, 4, 5)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).max() > 0


def dropout_model(model):
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(DefensiveDropout(0.1, name="dd")(inputs)))


@pytest.mark.parametrize("run, message", [
    (lambda m, x, y: attacks.pgd(m, x, y, eot_samples=2, backend="cleverhans"), "cannot run EOT"),
    (lambda m, x, y: settings.eot(attacks.fgsm, 3)(m, x, y, backend="cleverhans"), "cannot run EOT"),
    (lambda m, x, y: settings.fixed_randomness(attacks.bim)(dropout_model(m), x, y, backend="cleverhans"),
     "cannot run fixed randomness"),
    (lambda m, x, y: attacks.mim(m, x, y, loss_fn=losses.margin, backend="cleverhans"), "a loss_fn for mim"),
    (lambda m, x, y: attacks.fgsm([m, m], x, y, backend="cleverhans"), "an ensemble of models"),
    (lambda m, x, y: attacks.fgsm(m, x, y, backend="foolbox"), "backend='foolbox' is not one of ours, cleverhans"),
])
def test_what_cleverhans_cannot_do_is_refused(setup, run, message):
    model, x, y = setup
    with pytest.raises(ConfigError) as info:
        run(model, x[:2], y[:2])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cleverhans_is_refused_under_bpda_and_allowed_again_after(setup):
    model, x, y = setup
    wrapped = dropout_model(model)
    wrapped.get_layer("dd").bpda_surrogate = "identity"
    with attacks.bpda(wrapped, {"dd": "identity"}):
        with pytest.raises(ConfigError, match="backend=cleverhans cannot run under BPDA"):
            attacks.fgsm(wrapped, x[:2], y[:2], backend="cleverhans")
        attacks.fgsm(wrapped, x[:2], y[:2])  # ours runs under BPDA
    assert not backends._refusals
    attacks.fgsm(model, x[:2], y[:2], backend="cleverhans")
