"""Clean-accuracy metrics, including the spread of a stochastic model over repeated evaluations."""

import hashlib

import numpy as np

from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic


def predict_logits(model, x, batch_size=500):
    """Logits of ``model`` on ``x``, one forward execution per batch of ``batch_size``."""
    outputs = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def logits_digest(model, x, path=None, batch_size=500):
    """SHA-256 of the float32 logits of ``model`` on ``x`` with its randomness fixed: every stochastic layer
    off and the layers with discrete realisations (HRS switches) pinned to ``path`` (default: realisation 0 of
    every such layer). Equal digests from two processes mean bit-identical outputs (e.g. a saved model and
    its reload)."""
    counts = stochastic.realisation_counts(model)
    if path is not None and not counts:
        raise ConfigError(f"a path was given but model {model.name!r} has no layers with discrete realisations")
    fixed = tuple(path) if path is not None else (0,) * len(counts) if counts else stochastic.OFF
    with stochastic.fixed_realisation(model, fixed):
        logits = predict_logits(model, x, batch_size).astype(np.float32)
    return hashlib.sha256(np.ascontiguousarray(logits).tobytes()).hexdigest()


def accuracy(model, x, y, batch_size=500):
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float(np.mean(np.argmax(predict_logits(model, x, batch_size), axis=-1) == np.asarray(y)))


def repeated_accuracy(model, x, y, repeats=5, batch_size=500):
    """Accuracy of a stochastic model over ``repeats`` independent evaluations of the whole set.

    Returns ``{"mean", "std", "min", "max", "runs"}``.
    """
    runs = [accuracy(model, x, y, batch_size) for _ in range(int(repeats))]
    return {"mean": float(np.mean(runs)), "std": float(np.std(runs)), "min": float(np.min(runs)),
            "max": float(np.max(runs)), "runs": runs}


def clean_accuracy(model, x, y, repeats=5, batch_size=500):
    """Clean test accuracy as the papers measure it, with its spread over ``repeats`` evaluations.

    The HRS references evaluate one image at a time, so every image meets its own randomness: layers whose draw
    is shared by a batch (an HRS switch) draw per example here (:func:`stochastic.per_example`), the others
    already draw per element; a layer whose paper evaluates in batches (Random Spiking's batch-wide range) keeps
    its batch semantics (batches of ``batch_size``). A deterministic model gives std 0 (evaluated once).
    """
    if not stochastic.is_stochastic(model):
        repeats = 1
    with stochastic.per_example(model, reference_only=True):
        return repeated_accuracy(model, x, y, repeats, batch_size)
