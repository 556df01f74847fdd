"""EAD: elastic-net attack (Chen et al. 2018, "EAD: Elastic-net attacks to deep neural networks via adversarial
examples", AAAI: the elastic-net formulation, ISTA with the projected shrinkage-thresholding function, and
Algorithm 1 with FISTA), batched, targeted or untargeted, any input rank.

Minimises ``c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1`` over ``x'`` in the box ``[clip_min, clip_max]``,
with ``f`` the C&W loss on logits with confidence kappa (targeted ``max(max_{j != t} Z_j - Z_t, -kappa)``,
untargeted ``max(Z_y - max_{j != y} Z_j, -kappa)``). The L1 term is not differentiable, so the smooth part
``g(x') = c f(x') + ||x' - x||_2^2`` takes a gradient step and the L1 term the projected shrinkage-thresholding
:func:`shrink` (ISTA), accelerated with FISTA momentum (Algorithm 1)::

    x_{k+1} = S_beta(y_k - lr_k * grad g(y_k)),   y_{k+1} = x_{k+1} + k / (k + 3) * (x_{k+1} - x_k),

``lr_k = lr * (1 - k / max_iterations)^0.5`` (the paper's square-root decay), restarted from ``x_0 = y_0 = x``
for every constant c. The constant is searched per example exactly as in :mod:`.cw_l2` (x10 until a first
success gives an upper bound, then bisection; with 10 or more steps the last one uses the upper bound), and
every ``max_iterations // 10`` iterations the batch's elastic-net loss at ``x_{k+1}`` must have fallen below
0.9999 of its previous check (abort early). Among the successful iterates ``x_{k+1}`` (prediction t, resp. not
y, with a logit margin of at least kappa: :func:`.gradients.succeeded`) over all iterations and constants, the
decision rule keeps the one with the smallest elastic-net distance ``beta * L1 + L2^2`` (``"EN"``, declared
``ead``) or the smallest L1 (``"L1"``, declared ``ead_l1``); the original image where none was found.

Defaults are the paper's / CleverHans v3 ``ElasticNetMethod``'s (REFERENCE section 6): beta 1e-2, EN rule,
lr 1e-2, 9 search steps x 1000 iterations, c starting at 1e-3, kappa 0; abort early is on (as in our cw_l2;
CleverHans v3 defaults it off, which only changes the running time). CleverHans 4 has no TF2 version of this
attack (REFERENCE section 7), so it is written from the paper; the shrinkage threshold is beta itself
(the paper's S_beta and CleverHans v3), not the proximal ``lr_k * beta``.

Deviations: (1) the momentum weight is the paper's ``k / (k + 3)`` for iteration k = 0, 1, ...; CleverHans v3
reads its step counter after the increment, i.e. ``(k + 1) / (k + 4)``. (2) An iterate is recorded before the
abort-early test of its iteration (as in our cw_l2; CleverHans v3 tests first, so the iterate that triggers the
abort is not considered there). (3) The success test uses the exact logit margin (``succeeded``) instead of
CleverHans's "subtract kappa from the target's logit, then argmax" (the same except for ties).

Each iteration costs one forward + backward pass at ``y_k`` (through :func:`.gradients.value_and_grad`, so
EOT, BPDA and ``loss_fn`` apply) and one forward pass at ``x_{k+1}`` (its success and loss; with EOT, the
mean logits of ``eot_samples`` separate passes, like the gradient). ``model`` may be a list of models: the
objectives are summed and an iterate succeeds only if it fools every model with the margin. ``loss_fn``
(CleverHans convention, :mod:`.losses`) replaces ``f`` by ``loss(t)`` (targeted) or ``-loss(y)``.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.registry import Parameter, declare

DECISION_RULES = ("EN", "L1")


def shrink(z, x0, beta, clip_min=0.0, clip_max=1.0):
    """The projected shrinkage-thresholding S_beta of EAD, followed by the box projection.

    Per component: ``z - beta`` where ``z - x0 > beta``, ``x0`` where ``|z - x0| <= beta``, ``z + beta`` where
    ``z - x0 < -beta``; then clipped to ``[clip_min, clip_max]``. Graph code (tensors or numpy in, tensor out).
    """
    z = tf.convert_to_tensor(z, tf.float32)
    x0 = tf.convert_to_tensor(x0, tf.float32)
    d = z - x0
    out = tf.where(d > beta, z - beta, tf.where(d < -beta, z + beta, x0))
    return tf.clip_by_value(out, clip_min, clip_max)


def _forward(model, objective, x, y, samples):
    """``(values, logits)`` of ``objective(model(x), y)`` without gradients: the mean over ``samples``
    separate forward passes (EOT), logits stacked as (models, N, classes) for a list of models, as
    :func:`.gradients.value_and_grad` gives them. Graph code."""
    models = common.models_of(model)

    def one_pass():
        all_logits = [m(x, training=False) for m in models]
        values = objective(all_logits[0], y)
        for more in all_logits[1:]:
            values = values + objective(more, y)
        return values, all_logits[0] if len(models) == 1 else tf.stack(all_logits)

    values, logits = one_pass()
    if samples > 1:
        def body(i, value_sum, logit_sum):
            v, lg = one_pass()
            return i + 1, value_sum + v, logit_sum + lg

        _, values, logits = tf.while_loop(lambda i, *_: i < samples, body, (tf.constant(1), values, logits),
                                          parallel_iterations=1)
        values, logits = values / samples, logits / samples
    return values, logits


def ead(model, x, y=None, targeted=False, beta=1e-2, decision_rule="EN", confidence=0.0, learning_rate=1e-2,
        binary_search_steps=9, max_iterations=1000, abort_early=True, initial_const=1e-3, eot_samples=1,
        loss_fn=None, clip_min=0.0, clip_max=1.0):
    """EAD (elastic-net attack); ``y`` = target if ``targeted`` else true label (None: prediction);
    ``decision_rule`` "EN" or "L1". Returns numpy images (the original where no success was found)."""
    beta = checks.nonnegative(beta, "beta")
    rule = decision_rule.strip().upper() if isinstance(decision_rule, str) else decision_rule
    rule = checks.choice(rule, "decision_rule", DECISION_RULES)
    kappa, learning_rate, binary_search_steps, max_iterations, initial_const = common.ConstantSearch.check_settings(
        confidence, learning_rate, binary_search_steps, max_iterations, initial_const)
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    x, y, _ = common.prepare(model, x, y, targeted, "ead", clip_min, clip_max)
    objective = gradients.objective_or_loss(gradients.carlini_wagner(targeted, kappa), loss_fn, targeted)
    period = max(1, max_iterations // 10)
    abort_early = bool(abort_early)

    def build():
        def optimise(x, y, const, beta, weights, best_dist, best_adv):
            """One value of c per example: FISTA from x; returns (success seen, best distance, best images).

            ``beta`` and the decision rule's ``weights`` (of L1 and L2^2) are inputs, not traced constants, so that
            both rules and every beta share one traced graph."""
            axes = list(range(1, len(x.shape)))
            c = tf.reshape(const, [-1] + [1] * (len(x.shape) - 1))
            found0 = tf.zeros(tf.shape(x)[:1], tf.bool)

            def body(i, adv, slack, prev, stop, found, best_dist, best_adv):
                k = tf.cast(i, tf.float32)
                # Gradient step on g(y) = c f(y) + ||y - x||^2 at the slack point (-f is the objective).
                _, grad_neg_f, _ = gradients.value_and_grad(model, objective, slack, y, eot_samples)
                rate = learning_rate * tf.sqrt(1.0 - k / max_iterations)
                new = shrink(slack - rate * (2.0 * (slack - x) - c * grad_neg_f), x, beta, clip_min, clip_max)
                slack = new + k / (k + 3.0) * (new - adv)
                neg_f, logits = _forward(model, objective, new, y, eot_samples)
                diff = new - x
                l1 = tf.reduce_sum(tf.abs(diff), axes)
                l2 = tf.reduce_sum(tf.square(diff), axes)
                dist = weights[0] * l1 + weights[1] * l2
                ok = gradients.succeeded(logits, y, targeted, kappa)
                better = tf.logical_and(ok, dist < best_dist)
                best_dist = tf.where(better, dist, best_dist)
                best_adv = tf.where(tf.reshape(better, tf.shape(c)), new, best_adv)
                found = tf.logical_or(found, ok)
                total = tf.reduce_sum(l2 + beta * l1 - const * neg_f)
                check = tf.logical_and(abort_early, tf.equal(i % period, 0))
                stop = tf.logical_and(check, total > prev * 0.9999)
                prev = tf.where(check, total, prev)
                return i + 1, new, slack, prev, stop, found, best_dist, best_adv

            loop = tf.while_loop(
                lambda i, adv, slack, prev, stop, *_: tf.logical_and(i < max_iterations, tf.logical_not(stop)), body,
                (tf.constant(0), x, x, tf.constant(np.inf, tf.float32), tf.constant(False), found0, best_dist,
                 best_adv))
            return loop[-3], loop[-2], loop[-1]

        return optimise

    key = gradients.objective_key(objective)
    key = key and ("ead", key, bool(targeted), kappa, learning_rate, max_iterations, abort_early, eot_samples,
                   clip_min, clip_max)
    optimise = gradients.compiled(model, key, build)

    best_dist = tf.constant(np.full(len(x), np.inf, np.float32))
    best_adv = tf.constant(x)
    xt, yt = tf.constant(x), tf.constant(y)
    beta_t = tf.constant(beta, tf.float32)
    weights = tf.constant([1.0, 0.0] if rule == "L1" else [beta, 1.0], tf.float32)
    search = common.ConstantSearch(initial_const, len(x), binary_search_steps)
    for const in search:
        found, best_dist, best_adv = optimise(xt, yt, tf.constant(const, tf.float32), beta_t, weights, best_dist,
                                             best_adv)
        search.update(found.numpy())
    return best_adv.numpy()


PARAMETERS = {
    "beta": Parameter("float", "EAD L1 weight beta (the shrinkage threshold, pixel units)"),
    "confidence": Parameter("float", "C&W confidence kappa on the logit margin"),
    "learning_rate": Parameter("float", "ISTA step size (square-root decay over the iterations)"),
    "binary_search_steps": Parameter("int", "binary-search steps on the constant c", minimum=1),
    "max_iterations": Parameter("int", "FISTA iterations per constant", minimum=1),
    "initial_const": Parameter("float", "initial constant c"),
    "abort_early": Parameter("bool", "stop a constant's optimisation when the loss stalls"),
}
# EAD is an elastic-net (L1 + L2) attack whose decision rules favour sparse (small-L1) perturbations: declared "l1".
declare("ead", ead, norm="l1", summary="EAD elastic-net attack (FISTA shrinkage, binary search on c), "
        "elastic-net decision rule", reference="Chen et al. 2018 (AAAI), section 3, Algorithm 1",
        parameters=PARAMETERS)
declare("ead_l1", ead, norm="l1", summary="EAD with the L1 decision rule (keeps the smallest-L1 success)",
        reference="Chen et al. 2018 (AAAI), section 3", parameters=PARAMETERS, defaults={"decision_rule": "L1"})
