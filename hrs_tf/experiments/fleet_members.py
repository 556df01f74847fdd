"""What member k of a surrogate fleet is (:mod:`hrs_tf.experiments.fleet`): its training seed and its seeded share of
the training images, recorded by their hash; the checks of a fleet's fraction and epochs."""

import dataclasses
import hashlib

import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError


def member_seed(seed, k):
    """The training seed of member ``k`` of a fleet with seed ``seed``: a 31-bit draw of
    ``SeedSequence([seed, k])`` (distinct across (seed, k) up to 2^-31 collisions, and safe as a TF int32 seed)."""
    seed, k = checks.count(seed, "seed"), checks.count(k, "model")
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint32)[0] >> 1)


def check_fraction(value, name="train_fraction"):
    """A fraction of the training set in (0, 1]."""
    v = checks.number(value, name)
    if not 0.0 < v <= 1.0:
        raise ConfigError(f"{name}={value!r} must be in (0, 1] (the share of the training set each model trains on)")
    return v


def training_indices(num_train, fraction, seed, k):
    """The sorted int64 indices of member ``k``'s training images: ``round(fraction * num_train)`` distinct ones drawn
    without replacement by ``default_rng([seed, k, 1])`` (a stream of its own); fraction 1 gives every index."""
    num_train = checks.count(num_train, "num_train", minimum=1)
    fraction = check_fraction(fraction)
    count = int(round(fraction * num_train))
    if count < 1:
        raise ConfigError(f"train_fraction={fraction!r} of {num_train} training images leaves none to train on")
    if count == num_train:
        return np.arange(num_train, dtype=np.int64)
    rng = np.random.default_rng([checks.count(seed, "seed"), checks.count(k, "model"), 1])
    return np.sort(rng.choice(num_train, size=count, replace=False)).astype(np.int64)


def indices_hash(indices):
    """sha256 (hex) of the int64 bytes of ``indices`` (what the manifest records of a member's training set)."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()


def member_dataset(dataset, indices, k):
    """``dataset`` with only the training images at ``indices`` (the test split untouched)."""
    indices = np.asarray(indices, dtype=np.int64)
    return dataclasses.replace(
        dataset, x_train=dataset.x_train[indices], y_train=dataset.y_train[indices],
        source=f"{dataset.source}; fleet member {k}: {len(indices)} of its {len(dataset.x_train)} training images "
               f"(indices sha256 {indices_hash(indices)[:16]})")


def check_epochs(epochs, name="epochs"):
    """None, a whole number >= 1 or a list of them (one per HRS block)."""
    if epochs is None:
        return None
    if isinstance(epochs, (list, tuple)):
        return [checks.count(e, name, minimum=1) for e in epochs]
    return checks.count(epochs, name, minimum=1)


def total_epochs(epochs):
    """Passes over the training images of a model trained for ``epochs`` (a list: one per block, summed)."""
    if epochs is None:
        return 0
    return sum(epochs) if isinstance(epochs, list) else int(epochs)
