"""Carlini & Wagner L2 attack (Carlini & Wagner 2017, "Towards evaluating the robustness of neural
networks", section V.A), batched, targeted or untargeted, any input rank.

Minimises ``||x' - x||_2^2 + c * f(x')`` over ``w`` with ``x' = (tanh(w) + 1) / 2`` (box [0, 1]),
``f = max(max_{j != t} Z_j - Z_t, -kappa)`` (targeted) or ``max(Z_y - max_{j != y} Z_j, -kappa)``
(untargeted), with Adam (TF1 semantics: beta1 0.9, beta2 0.999, epsilon 1e-8, bias-corrected step),
restarted from ``w = atanh((2x - 1) * 0.999999)`` for every value of c. The constant c is searched per
example: x10 until a first success gives an upper bound, then bisection; with 10 or more search steps the
last one uses the upper bound (Carlini's ``repeat``). Abort early: every ``max_iterations // 10``
iterations the batch loss must have fallen below 0.9999 of its previous check. An iterate counts as a
success only if the prediction is the target (resp. not the label) **with a logit margin of at least
kappa**; the smallest-L2 success over all iterations and constants is returned, the original image where
none was found.

Why not CleverHans 4.0.0's ``carlini_wagner_l2``: it crashes on Keras 3 (``optimizer.variables()``), keeps
the constant shaped like the image, ignores ``targeted``, mis-updates the constant after a success, and
does not use the confidence in its success test (REFERENCE section 7). Defaults are Carlini's (REFERENCE
section 6) with 1000 iterations; the HRS paper's setting (100 iterations, step 0.1, 10 search steps) is the
preset ``hrs_cw_l2`` declared below.

``model`` may be a list of models (an ensemble): the loss sums their margins and an iterate succeeds only if
it fools every one of them with the margin (the multi-surrogate C&W of the Random Spiking paper). ``loss_fn``
(CleverHans convention, :mod:`hrs_tf.attacks.losses`) replaces f by ``loss(t)`` (targeted) or ``-loss(y)``;
the box ``[clip_min, clip_max]`` is the range of the tanh change of variable.
"""

import logging

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.registry import Parameter, declare

_TANH_SHRINK = 0.999999  # keeps atanh finite at the box edges (as Carlini)
EDGE_START = float(np.arctanh(_TANH_SHRINK))  # |w| of a pixel at a box edge: 7.25


def warn_if_edges_frozen(learning_rate, max_iterations):
    """Log a warning when ``learning_rate * max_iterations`` < |w| of a box-edge pixel (7.25): Adam moves w by about
    the learning rate per iteration, so such a run may leave the pixels at 0 or 1 where they are (docs/attacks.md)."""
    if learning_rate * max_iterations < EDGE_START:
        logging.getLogger(__name__).warning(
            "cw_l2: learning_rate x max_iterations = %.3g < %.2f (|w| of a pixel at 0 or 1 at the start): the pixels "
            "at the box edges may not move and C&W may understate what it reaches (docs/attacks.md)",
            learning_rate * max_iterations, EDGE_START)


def cw_l2(model, x, y=None, targeted=False, confidence=0.0, learning_rate=1e-2, binary_search_steps=9,
          max_iterations=1000, abort_early=True, initial_const=1e-3, eot_samples=1, loss_fn=None, clip_min=0.0,
          clip_max=1.0):
    """C&W L2; ``y`` = target if ``targeted`` else true label (None: prediction). Returns numpy images."""
    kappa, learning_rate, binary_search_steps, max_iterations, initial_const = common.ConstantSearch.check_settings(
        confidence, learning_rate, binary_search_steps, max_iterations, initial_const)
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    x, y, _ = common.prepare(model, x, y, targeted, "cw_l2", clip_min, clip_max)
    warn_if_edges_frozen(learning_rate, max_iterations)
    objective = gradients.objective_or_loss(gradients.carlini_wagner(targeted, kappa), loss_fn, targeted)
    half_range, middle = (clip_max - clip_min) / 2.0, (clip_max + clip_min) / 2.0
    period = max(1, max_iterations // 10)
    abort_early = bool(abort_early)

    def build():
        def optimise(x, y, const, best_l2, best_adv):
            """One value of c per example: Adam from scratch; returns (success seen, best L2, best images)."""
            axes = list(range(1, len(x.shape)))
            c = tf.reshape(const, [-1] + [1] * (len(x.shape) - 1))
            w0 = tf.atanh((x - middle) / half_range * _TANH_SHRINK)
            zeros = tf.zeros_like(x)
            found0 = tf.zeros(tf.shape(x)[:1], tf.bool)

            def body(i, w, m, v, prev, stop, found, best_l2, best_adv):
                adv = tf.tanh(w) * half_range + middle
                neg_f, grad_neg_f, logits = gradients.value_and_grad(model, objective, adv, y, eot_samples)
                l2 = tf.reduce_sum(tf.square(adv - x), axes)
                total = tf.reduce_sum(l2 - const * neg_f)
                ok = gradients.succeeded(logits, y, targeted, kappa)
                better = tf.logical_and(ok, l2 < best_l2)
                best_l2 = tf.where(better, l2, best_l2)
                best_adv = tf.where(tf.reshape(better, tf.shape(c)), adv, best_adv)
                found = tf.logical_or(found, ok)
                # d(loss)/dw through x' = tanh(w) * half_range + middle.
                g = (2.0 * (adv - x) - c * grad_neg_f) * half_range * (1.0 - tf.square(tf.tanh(w)))
                step, m, v = common.adam_update(m, v, g, i + 1, learning_rate)
                w = w - step
                check = tf.logical_and(abort_early, tf.equal(i % period, 0))
                stop = tf.logical_and(check, total > prev * 0.9999)
                prev = tf.where(check, total, prev)
                return i + 1, w, m, v, prev, stop, found, best_l2, best_adv

            loop = tf.while_loop(
                lambda i, w, m, v, prev, stop, *_: tf.logical_and(i < max_iterations, tf.logical_not(stop)), body,
                (tf.constant(0), w0, zeros, zeros, tf.constant(np.inf, tf.float32), tf.constant(False), found0, best_l2,
                 best_adv))
            return loop[-3], loop[-2], loop[-1]

        return optimise

    key = gradients.objective_key(objective)
    key = key and ("cw_l2", key, bool(targeted), kappa, learning_rate, max_iterations, abort_early, eot_samples,
                   clip_min, clip_max)
    optimise = gradients.compiled(model, key, build)

    best_l2 = tf.constant(np.full(len(x), np.inf, np.float32))
    best_adv = tf.constant(x)
    xt, yt = tf.constant(x), tf.constant(y)
    search = common.ConstantSearch(initial_const, len(x), binary_search_steps)
    for const in search:
        found, best_l2, best_adv = optimise(xt, yt, tf.constant(const, tf.float32), best_l2, best_adv)
        search.update(found.numpy())
    return best_adv.numpy()


PARAMETERS = {
    "confidence": Parameter("float", "C&W confidence kappa on the logit margin"),
    "learning_rate": Parameter("float", "Adam learning rate"),
    "binary_search_steps": Parameter("int", "binary-search steps on the constant c", minimum=1),
    "max_iterations": Parameter("int", "Adam iterations per constant", minimum=1),
    "initial_const": Parameter("float", "initial constant c"),
    "abort_early": Parameter("bool", "stop a constant's optimisation when the loss stalls"),
}
declare("cw_l2", cw_l2, norm="l2", summary="Carlini & Wagner L2 (tanh box, binary search on c, abort early)",
        reference="Carlini & Wagner 2017, section V.A", parameters=PARAMETERS)
declare("hrs_cw_l2", cw_l2, norm="l2", summary="C&W L2 with the HRS paper's settings (100 iterations, step 0.1, 10 "
        "search steps)", reference="HRS appendix C.1", parameters={"confidence": PARAMETERS["confidence"]},
        defaults={"learning_rate": 0.1, "binary_search_steps": 10, "max_iterations": 100})
