"""Adversarial examples of the translucent-box protocol: the multi-surrogate C&W-L2 of the Random Spiking paper
(section 5.4; REFERENCE section 4) and how they are stored.

``generate`` runs :func:`hrs_tf.attacks.cw_l2` on the list of surrogate models at once (its loss sums
``max(0, max_{j != t} Z_j - Z_t + K)`` over them in one traced computation; an iterate succeeds only if **every**
surrogate predicts the target with margin K), targeted at a random label other than the true one, with EOT over the
randomness of stochastic surrogates (``eot`` passes per step). The returned images are rounded to 8 bits (the
published code saves them as images) before anything is measured: their L2 distance and every later judgement use
the rounded image. An example is *found* if C&W found a success on every surrogate; the others are never scored.

A surrogate is what an attacker differentiates for a made scheme (:func:`attack_view`): a Keras model as it is;
MagNet through its attack model (composite + rejection logit, so success means the target past every detector);
a decider (region-based classification) through its ``model`` (uniform input noise + classifier, stochastic: EOT).
"""

import os

import numpy as np

from hrs_tf import checks, fileio
from hrs_tf.attacks.cw_l2 import cw_l2
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import scoring
from hrs_tf.layers import stochastic
from randspike import decision

FORMAT = "randspike.translucent.examples/1"


def attack_view(classifier):
    """The Keras model an attacker runs C&W on for a made scheme (module docstring)."""
    if isinstance(classifier, decision.Decider):
        attack_model = getattr(classifier, "attack_model", None)
        return attack_model() if attack_model is not None else classifier.model
    return classifier


def random_targets(labels, num_classes, seed):
    """A random target per image, uniform over the labels other than its true one (seeded)."""
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng([int(seed), 7])
    shift = rng.integers(1, num_classes, size=len(labels))
    return (labels + shift) % num_classes


def generate(surrogates, x, targets, confidence, *, eot=1, learning_rate=1e-2, binary_search_steps=9,
             max_iterations=1000, initial_const=1e-3, abort_early=True):
    """Targeted multi-surrogate C&W-L2 on ``surrogates`` (Keras models; one model = Single) at confidence K.

    Returns ``{"adv": uint8 images, "found": bool, "l2": float64}``: the 8-bit adversarial images (the original
    image where nothing was found), whether C&W succeeded on every surrogate, and the L2 of the rounded image.
    ``eot`` forward + backward passes per step when a surrogate is stochastic (1 otherwise).
    """
    surrogates = list(surrogates)
    if not surrogates:
        raise ConfigError("the multi-surrogate attack needs at least one surrogate model")
    eot = checks.count(eot, "eot", minimum=1)
    samples = eot if any(stochastic.is_stochastic(m) for m in surrogates) else 1
    x = np.asarray(x, np.float32)
    adv = cw_l2(surrogates if len(surrogates) > 1 else surrogates[0], x, np.asarray(targets), targeted=True,
                      confidence=confidence, learning_rate=learning_rate, binary_search_steps=binary_search_steps,
                      max_iterations=max_iterations, initial_const=initial_const, abort_early=abort_early,
                      eot_samples=samples)
    found = np.any(adv != x, axis=tuple(range(1, x.ndim)))  # cw_l2 returns the original image where it failed
    rounded = scoring.round_to_8bit(adv)
    return {"adv": np.round(rounded * 255.0).astype(np.uint8), "found": found,
            "l2": scoring.distortions(x, rounded)["l2"]}


def save(path, examples):
    """Writes the examples (``adv`` uint8, ``found``, ``l2``, ``targets``, ``images``: test indices) atomically."""
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, format=np.array(FORMAT), **examples)


def load(path):
    if not os.path.exists(path):
        raise ConfigError(f"adversarial examples {path!r} do not exist")
    with np.load(path) as f:
        if str(f["format"]) != FORMAT:
            raise ConfigError(f"{path!r} is not a file of translucent-box examples ({FORMAT})")
        return {k: f[k] for k in f.files if k != "format"}


def as_float(adv):
    """The stored uint8 images as float32 in [0, 1]."""
    return np.asarray(adv, np.float32) / 255.0
