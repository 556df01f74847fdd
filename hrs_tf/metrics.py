"""Clean-accuracy metrics, including the spread of a stochastic model over repeated evaluations."""

import contextlib

import numpy as np

from hrs_tf.errors import ConfigError


def predict_logits(model, x, batch_size=500):
    """Logits of ``model`` on ``x``, one forward execution per batch of ``batch_size``."""
    outputs = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def logits_digest(model, x, path=None, batch_size=500):
    """SHA-256 of the float32 logits of ``model`` on ``x`` with its randomness fixed: every stochastic layer
    off and, for an HRS model, the switches pinned to ``path`` (default: channel 0 of every block). Equal
    digests from two processes mean bit-identical outputs (e.g. a saved model and its reload)."""
    import hashlib

    from hrs_tf import hrs, stochastic

    switches = hrs.switches(model)
    if path is not None and not switches:
        raise ConfigError(f"a path was given but model {model.name!r} has no RandomSwitch blocks")
    with contextlib.ExitStack() as stack:
        stack.enter_context(stochastic.randomness(model, stochastic.OFF))
        if switches:
            stack.enter_context(hrs.pinned_path(model, tuple(path) if path is not None else (0,) * len(switches)))
        logits = predict_logits(model, x, batch_size).astype(np.float32)
    return hashlib.sha256(np.ascontiguousarray(logits).tobytes()).hexdigest()


def accuracy(model, x, y, batch_size=500):
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float(np.mean(np.argmax(predict_logits(model, x, batch_size), axis=-1) == np.asarray(y)))


def repeated_accuracy(model, x, y, repeats=5, batch_size=500):
    """Accuracy of a stochastic model over ``repeats`` independent evaluations of the whole set.

    Returns ``{"mean", "std", "min", "max", "runs"}``. For an HRS model in ``sample`` granularity every
    image gets its own random path, as the reference's one-image-at-a-time evaluation.
    """
    runs = [accuracy(model, x, y, batch_size) for _ in range(int(repeats))]
    return {"mean": float(np.mean(runs)), "std": float(np.std(runs)), "min": float(np.min(runs)),
            "max": float(np.max(runs)), "runs": runs}


def clean_accuracy(model, x, y, repeats=5, batch_size=500):
    """Clean test accuracy as the papers measure it, with its spread over ``repeats`` evaluations.

    The references evaluate one image at a time, so every image meets its own randomness. Dropout,
    noise and spiking layers already draw per example; an HRS model is evaluated through a copy in
    ``sample`` granularity (each image its own random path). A deterministic model gives std 0.
    """
    from hrs_tf import hrs, stochastic

    if hrs.switches(model):
        model = hrs.with_granularity(model, "sample")
    if not stochastic.stochastic_layers(model):
        repeats = 1
    return repeated_accuracy(model, x, y, repeats, batch_size)
