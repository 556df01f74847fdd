"""Predictions under the papers' decision rules, attack success and distortion (all JSON-ready).

A stochastic model gives a different prediction on every pass. :func:`predict_probabilities` keeps the
softmax of ``passes`` fresh passes, and :func:`decide` turns them into labels under a decision rule:

- ``single``: each pass on its own (the HRS / defensive-dropout papers: one stochastic pass decides; an ASR
  is then the mean over passes, i.e. the expected single-pass ASR);
- ``vote``: the majority (plurality) of the passes' argmaxes, ties to the smaller label (Random Spiking
  paper, section 5.1, "Voting");
- ``mc``: the argmax of the mean softmax of the passes (Random Spiking paper, "MC Avg").

Adversarial images may be rounded to 8-bit pixels before they are judged (``round_8bit``; the Random
Spiking paper's attack code does so): an attack must survive being saved as an image.
"""

import numpy as np

from hrs_tf import checks
from hrs_tf.layers import stochastic

RULES = ("single", "vote", "mc")
L0_TOLERANCE = 1e-5


def predict_probabilities(model, x, passes=1, batch_size=100):
    """Softmax outputs over ``passes`` fresh forward passes: float array (passes, N, classes).

    Eager model calls (one forward execution per batch, nothing to trace), so repeated scoring is cheap.
    """
    passes = checks.count(passes, "passes", minimum=1)
    batch_size = checks.count(batch_size, "eval_batch_size", minimum=1)
    x = np.asarray(x, np.float32)
    out = None
    for p in range(passes):
        for i in range(0, len(x), batch_size):
            logits = np.asarray(model(x[i:i + batch_size], training=False), np.float64)
            if out is None:
                out = np.empty((passes, len(x), logits.shape[-1]), np.float64)
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            out[p, i:i + batch_size] = shifted / shifted.sum(axis=-1, keepdims=True)
    return out


def vote(predictions, num_classes=None):
    """Majority (plurality) vote over passes, ties to the smaller label: (passes, N) -> (N,)."""
    predictions = np.asarray(predictions)
    num_classes = int(predictions.max()) + 1 if num_classes is None else int(num_classes)
    counts = (predictions[..., None] == np.arange(num_classes)).sum(axis=0)
    return np.argmax(counts, axis=-1)


def decide(probabilities, rule="single"):
    """Labels under decision ``rule``: ``single`` (passes, N); ``vote`` and ``mc`` (N,)."""
    checks.choice(rule, "decision rule", RULES)
    probabilities = np.asarray(probabilities)
    if rule == "mc":
        return np.argmax(probabilities.mean(axis=0), axis=-1)
    labels = np.argmax(probabilities, axis=-1)
    return labels if rule == "single" else vote(labels, probabilities.shape[-1])


def predict(model, x, passes=1, batch_size=100):
    """Predicted labels of ``passes`` fresh passes: int array (passes, N)."""
    return decide(predict_probabilities(model, x, passes, batch_size), "single")


def round_to_8bit(x):
    """Pixels in [0, 1] rounded to the nearest of the 256 grey levels."""
    return np.round(np.asarray(x, np.float32) * 255.0) / 255.0


def success(predictions, y, targeted):
    """Attack success per prediction: == target (targeted) or != label (untargeted)."""
    predictions, y = np.asarray(predictions), np.asarray(y)
    return predictions == y if targeted else predictions != y


def distortions(x, x_adv, l0_tolerance=L0_TOLERANCE):
    """Per-example L0 (count and fraction of components changed), L1, L2, L-inf of ``x_adv - x``, and the relative
    L2 ``||x_adv - x||_2 / ||x||_2`` (whose mean is the robustness rho of DeepFool, Moosavi-Dezfooli et al. 2016
    eq. 15, the hash paper's Table II "robustness" column; 0 for an all-zero image)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    delta = np.asarray(x_adv, np.float64).reshape(len(x), -1) - x
    l0 = (np.abs(delta) > l0_tolerance).sum(axis=1)
    l2 = np.sqrt((delta ** 2).sum(axis=1))
    norms = np.sqrt((x ** 2).sum(axis=1))
    return {"l0": l0.astype(np.float64), "l0_fraction": l0 / delta.shape[1], "l1": np.abs(delta).sum(axis=1), "l2": l2,
            "linf": np.abs(delta).max(axis=1) if delta.shape[1] else np.zeros(len(x)),
            "l2_relative": np.divide(l2, norms, out=np.zeros_like(l2), where=norms > 0)}


def stats(values):
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"mean": None, "median": None, "std": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "std": float(values.std())}


def judge(model, x_adv, y, targeted, passes=1, eval_batch_size=100, judged_in=stochastic.RANDOM, round_8bit=False):
    """Success of adversarial images under every decision rule, judged on ``model`` in mode ``judged_in``.

    Returns ``{"images", "single" (passes, N), "vote" (N,), "mc" (N,)}`` (the judged images after rounding).
    """
    images = round_to_8bit(x_adv) if round_8bit else np.asarray(x_adv, np.float32)
    with stochastic.randomness(model, judged_in):
        probabilities = predict_probabilities(model, images, passes, eval_batch_size)
    return {"images": images, **{rule: success(decide(probabilities, rule), y, targeted) for rule in RULES}}


def score(model, x, x_adv, y, targeted, passes=1, eval_batch_size=100, l0_tolerance=L0_TOLERANCE,
          judged_in=stochastic.RANDOM, round_8bit=False):
    """ASR under each decision rule (single pass: the mean over ``passes``; majority vote; MC average of
    ``passes``), defense rates and the distortion of the examples successful by majority vote.

    Returns ``(scores, judged)``: the JSON-ready scores and the arrays of :func:`judge`.
    """
    judged = judge(model, x_adv, y, targeted, passes, eval_batch_size, judged_in, round_8bit)
    single, majority, mc = judged["single"], judged["vote"], judged["mc"]
    dist = distortions(x, judged["images"], l0_tolerance)
    asr = float(single.mean())
    scores = {
        "num_examples": int(len(y)),
        "passes": int(passes),
        "asr": asr,
        "asr_first_pass": float(single[0].mean()),
        "asr_std_over_passes": float(single.mean(axis=1).std()),
        "asr_majority": float(majority.mean()),
        "asr_mc_average": float(mc.mean()),
        "defense_rate": 1.0 - asr,
        "defense_rate_majority": 1.0 - float(majority.mean()),
        "num_successful_majority": int(majority.sum()),
        "distortion_of_successful": {k: stats(v[majority]) for k, v in dist.items()},
        "l0_tolerance": float(l0_tolerance),
        "rounded_to_8bit": bool(round_8bit),
    }
    return scores, judged
