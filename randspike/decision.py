"""Decision rules of the Random Spiking paper (Definition 2 and section 5.1) and the protocol of defenses whose
decision is more than the argmax of one forward pass (MagNet's rejection, region-based voting).

Rules for a stochastic Keras model (logits output):

- ``single``  randomness off (dropout and random spiking not used at test time), argmax of the logits;
- ``mc``      "MC Avg.": the mean of the softmax of ``passes`` (10) stochastic forward passes, then argmax;
- ``vote``    "Voting": the majority of the argmaxes of ``passes`` stochastic passes, ties to the smaller label.

**Batch semantics.** A :class:`randspike.RandomSpiking` layer draws its noise in the range (min, max) of the whole
batch tensor, so a prediction depends on the other images evaluated with it. The paper's code predicts in batches;
here the images are evaluated in consecutive batches of ``batch_size`` (default :data:`BATCH_SIZE`, the training
batch), which is the default everywhere (accuracy, attack scoring). ``per_image=True`` gives every image its own
range, as if it were evaluated alone (batched: :func:`hrs_tf.layers.stochastic.per_example`).

A *decider* (:class:`Decider`) is an object with the Keras model an attacker differentiates through (``model``) and
its own ``labels(x, rule, passes, batch_size, per_image)``; labels may be :data:`REJECTED` (MagNet). A rejected
clean image is an error; a rejected adversarial example is not a success (:func:`attack_succeeded`).
"""

import contextlib

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation.deciders import BATCH_SIZE, PASSES, REJECTED, Decider  # noqa: F401  (the core's, re-exported)
from hrs_tf.layers import stochastic

SINGLE, MC_AVERAGE, VOTING = "single", "mc", "vote"
RULES = (SINGLE, MC_AVERAGE, VOTING)
RULE_TITLES = {SINGLE: "Single pred.", MC_AVERAGE: "MC Avg.", VOTING: "Voting"}


def check_rule(rule):
    return checks.choice(rule, "decision rule", RULES)


def _batches(count, batch_size):
    return [(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


_FORWARD = {}  # (id(model), trace generation) -> (model, compiled forward pass), oldest first
_FORWARD_LIMIT = 8


def forward(model):
    """A compiled forward pass of ``model`` (inference mode; its stochastic layers draw on every call), cached per
    model and per :func:`hrs_tf.layers.stochastic.trace_generation` (a per-example context changes the graph)."""
    key = (id(model), stochastic.trace_generation())
    entry = _FORWARD.get(key)
    if entry is None or entry[0] is not model:
        for old in [k for k in _FORWARD if k[0] == id(model)]:
            del _FORWARD[old]
        while len(_FORWARD) >= _FORWARD_LIMIT:  # a study evaluates many models: keep the most recent ones only
            del _FORWARD[next(iter(_FORWARD))]
        entry = (model, tf.function(lambda images: model(images, training=False), reduce_retracing=True))
        _FORWARD[key] = entry
    return entry[1]


def pass_logits(model, x, passes=PASSES, batch_size=BATCH_SIZE):
    """Logits of ``passes`` forward passes of ``model`` on ``x``: array (passes, n, classes). Each pass evaluates the
    images in consecutive batches of ``batch_size`` (the batch semantics of the module docstring)."""
    x = np.asarray(x, np.float32)
    run = forward(model)
    out = np.empty((passes, len(x), int(model.output_shape[-1])), np.float32)
    for k in range(passes):
        for a, b in _batches(len(x), batch_size):
            out[k, a:b] = run(tf.constant(x[a:b])).numpy()
    return out


def labels_from_passes(logits, rule):
    """Labels from the logits of several passes (passes, n, classes) under ``rule`` (``mc`` or ``vote``)."""
    if rule == MC_AVERAGE:
        return np.argmax(softmax(logits).mean(axis=0), axis=-1)
    votes = np.argmax(logits, axis=-1)  # (passes, n)
    counts = np.zeros((logits.shape[1], logits.shape[2]), np.int64)
    for k in range(votes.shape[0]):
        counts[np.arange(votes.shape[1]), votes[k]] += 1
    return np.argmax(counts, axis=-1)  # the first maximum: ties go to the smaller label


def labels(model, x, rule=MC_AVERAGE, passes=PASSES, batch_size=BATCH_SIZE, per_image=False, seed=None):
    """Predicted labels of ``model`` (a Keras model or a :class:`Decider`) on ``x`` under ``rule``.

    ``mc`` / ``vote`` need randomness: a Keras model without a stochastic layer is refused (ConfigError), since
    its 10 passes would be one prediction repeated. ``seed`` reseeds the model's generators first (repeatable).
    """
    return labels_by_rule(model, x, (rule,), passes, batch_size, per_image, seed)[check_rule(rule)]


def labels_by_rule(model, x, rules, passes=PASSES, batch_size=BATCH_SIZE, per_image=False, seed=None):
    """``{rule: labels}`` under each of ``rules`` (:func:`labels`; each rule starts from ``seed``). On a Keras model
    ``mc`` and ``vote`` read one set of ``passes`` stochastic passes: the passes each would draw alone from ``seed``,
    drawn once. A :class:`Decider` is asked rule by rule."""
    rules = [check_rule(rule) for rule in rules]
    passes = checks.count(passes, "passes", minimum=1)
    batch_size = checks.count(batch_size, "batch_size", minimum=1)
    target = model.model if isinstance(model, Decider) else model

    def restart():
        if seed is not None:
            stochastic.reseed(target, seed)

    out = {}
    if isinstance(model, Decider):
        for rule in rules:
            restart()
            out[rule] = np.asarray(model.labels(x, rule, passes, batch_size, per_image), np.int64)
        return out
    if SINGLE in rules:
        restart()
        with stochastic.randomness(model, stochastic.OFF):
            out[SINGLE] = np.argmax(pass_logits(model, x, 1, batch_size)[0], axis=-1).astype(np.int64)
    stochastic_rules = [rule for rule in rules if rule != SINGLE]
    if stochastic_rules:
        if not stochastic.is_stochastic(model):
            raise ConfigError(f"model {model.name!r} has no stochastic layer: the {RULE_TITLES[stochastic_rules[0]]} "
                              "rule needs random spiking or dropout at test time (use rule=single)")
        restart()
        with stochastic.per_example(model) if per_image else contextlib.nullcontext():
            logits = pass_logits(model, x, passes, batch_size)
        for rule in stochastic_rules:
            out[rule] = labels_from_passes(logits, rule).astype(np.int64)
    return {rule: out[rule] for rule in rules}


def error_rate(model, x, y, **settings):
    """Test error (fraction) of ``model`` under a decision rule (:func:`labels` settings); a rejection is an error."""
    return float(np.mean(labels(model, x, **settings) != np.asarray(y)))


def attack_succeeded(predicted, y, targeted):
    """Per example: did an attack succeed, given the labels predicted on its output? Targeted: the target is
    predicted; untargeted: a label other than ``y`` is predicted. A rejected example (:data:`REJECTED`) never
    succeeds."""
    predicted, y = np.asarray(predicted), np.asarray(y)
    hit = predicted == y if targeted else predicted != y
    return hit & (predicted != REJECTED)


def rule_or_error(rule, model):
    """The rule to use for ``model``: ``single`` for a deterministic Keras model whatever was asked (the paper's
    Standard and Distillation rows), ``rule`` otherwise."""
    if not isinstance(model, Decider) and not stochastic.is_stochastic(model):
        return SINGLE
    if rule not in RULES:
        raise ConfigError(f"decision rule {rule!r} is not one of {', '.join(RULES)}")
    return rule
