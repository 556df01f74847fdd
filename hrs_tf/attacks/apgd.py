"""APGD: Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", Algorithm 1 and sections 3-4), L-inf or L2, on the cross-entropy (APGD-CE) or on the
difference-of-logits ratio (APGD-DLR), with EOT for randomized defenses.

Algorithm 1 (section 3), per example and batched: ``x1 = P(x0 + eta grad f(x0))`` (first step without momentum),
then for k = 1..N_iter-1 ``z = P(x_k + eta step(grad f(x_k)))``, ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)
(x_k - x_{k-1}))`` with momentum alpha = 0.75, keeping the point x_max of highest loss f_max. ``step`` is the sign
(L-inf) or grad / ||grad||_2 (L2, AutoAttack's L2 APGD); P projects onto the eps-ball then clips to the pixel box.
The step size starts at eta = 2 eps and is halved at checkpoints w_j = ceil(p_j N_iter), p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (:func:`checkpoints`), for the examples meeting
  condition 1: the loss increased (f(x_{i+1}) > f(x_i)) in fewer than rho (w_j - w_{j-1}) of the steps
  i = w_{j-1}..w_j - 1 since the last checkpoint (rho = 0.75), or
  condition 2: eta was not halved at w_{j-1} and f_max did not increase since w_{j-1}
(:func:`halve_step`); those examples then restart from x_max (with the gradient stored at x_max, as AutoAttack's
code, so a restart costs no extra pass). f_max at w_0 is the value after iteration 0, max(f(x0), f(x1)) (line 4).

Losses (section 4): APGD-CE uses the cross-entropy; APGD-DLR the DLR loss ``-(Z_y - max_{i != y} Z_i) / (Z_pi1 -
Z_pi3 + 1e-12)`` (:func:`hrs_tf.attacks.losses.dlr`); targeted APGD-DLR (APGD-T) the targeted DLR ``-(Z_y - Z_t) /
(Z_pi1 - (Z_pi3 + Z_pi4) / 2 + 1e-12)`` (:func:`.losses.dlr_targeted`). Every gradient goes through
:func:`hrs_tf.attacks.gradients.value_and_grad`, so EOT (``eot_samples``; AutoAttack's ``rand`` version for
randomized defenses is APGD-CE and APGD-DLR with 20 EOT samples, i.e. the ``eot`` setting with
``eot_samples=20``), fixed randomness, BPDA and ``loss_fn`` apply. The whole iteration is one ``tf.while_loop`` in
a cached ``tf.function`` with per-example step sizes and checkpoint counters in tensors; random restarts
(``n_restarts``, AutoAttack's default 1) run in Python on the examples not yet successful.

Returned point, per example: the **latest successful iterate** (the prediction is not y, resp. is the target t;
with EOT, on the averaged logits) as AutoAttack's ``x_best_adv``, else the point of highest loss x_max over the
restarts (AutoAttack returns the clean image there; x_max is more useful to a caller that scores it).
Defaults: AutoAttack's (100 iterations, 1 restart, rho 0.75, random start), eps 0.3 (MNIST L-inf, as ``pgd``);
the L2 presets use eps 2.0 (as ``pgd_l2``). CleverHans 4 has no APGD (TF1 or TF2; REFERENCE section 7), so this
is written from the paper, checked against the authors' PyTorch code (fra31/auto-attack).

Deviations, and why:
- the checkpoints are the paper's ceil(p_j N_iter) computed exactly (AutoAttack's code uses floor-based periods
  max(int(0.22 N), 1) shrinking by int(0.03 N) down to int(0.06 N)); condition 1 is the paper's strict
  "< rho h" (the code uses <=); condition 2 is active from the first checkpoint as the paper states (the code
  starts with "reduced at the last check" set, which disables it at w_1); the comparison counted for the
  iteration of a restart is f(x^(w_j+1)) > f(x^(w_j)) with x^(w_j+1) = x_max, as the paper's sum reads (the
  code compares the loss of the iterate the restart discarded);
- targeted DLR: the suite's convention gives a targeted attack only the target t, not the true label y, so
  Z_y is the largest non-target logit ``max_{j != t} Z_j``. It equals Z_y whenever y is the strongest
  non-target class (in particular at the start of a correctly classified example, where AutoAttack's APGD-T
  begins), and otherwise pushes the target above the class that actually blocks it, which is what success
  (prediction = t) needs. It fits the ``loss_fn`` seam: ``dlr_targeted(labels=t, logits)``;
- the L2 random start is uniform in the ball (common.random_start, as ``pgd``); AutoAttack's is on the sphere.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients, losses
from hrs_tf.attacks.registry import Parameter, declare
from hrs_tf.errors import ConfigError

MOMENTUM = 0.75  # alpha, section 3
INITIAL_STEP = 2.0  # eta^(0) = 2 eps, section 3
RHO = 0.75  # condition 1 threshold, section 3
# Checkpoint fractions in hundredths (exact integers: 0.22 + 0.19 is 0.41000000000000003 in floats, whose ceil
# would move w_2 from 41 to 42 at N_iter = 100).
_P1, _SHRINK, _MIN_GAP = 22, 3, 6


def checkpoints(nb_iter):
    """The checkpoints w_j = ceil(p_j N_iter) of section 3 with p_j <= 1, sorted without repeats (w_0 = 0).

    ``checkpoints(100)`` = [0, 22, 41, 57, 70, 80, 87, 93, 99]. The loop tests those in 1..N_iter-1.
    """
    nb_iter = checks.count(nb_iter, "nb_iter", minimum=1)
    p = [0, _P1]
    while True:
        following = p[-1] + max(p[-1] - p[-2] - _SHRINK, _MIN_GAP)
        if following > 100:
            break
        p.append(following)
    return sorted({-(-q * nb_iter // 100) for q in p})


def halve_step(eta, increases, interval, f_max, f_max_last, halved_last, rho=RHO, current=(), best=()):
    """The step-size rule at a checkpoint w_j (section 3), per example; graph code, numpy inputs accepted.

    ``increases``: how many of the ``interval`` = w_j - w_{j-1} steps since the last checkpoint increased the
    loss; ``f_max`` / ``f_max_last``: the best loss now and at w_{j-1}; ``halved_last``: eta was halved at
    w_{j-1}. Condition 1: ``increases < rho * interval``; condition 2: ``not halved_last and f_max <=
    f_max_last``. Returns ``(halve, eta, restarted)``: the examples meeting either condition, eta halved for
    them, and each tensor of ``current`` replaced by the same example of ``best`` (x_max, its gradient...)
    for them.
    """
    eta = tf.convert_to_tensor(eta)
    f_max = tf.convert_to_tensor(f_max)
    condition1 = tf.cast(increases, tf.float32) < rho * tf.cast(interval, tf.float32)
    condition2 = tf.logical_and(tf.logical_not(tf.convert_to_tensor(halved_last, tf.bool)),
                                f_max <= tf.cast(f_max_last, f_max.dtype))
    halve = tf.logical_or(condition1, condition2)
    eta = tf.where(halve, eta / 2.0, eta)
    restarted = tuple(_pick(halve, b, c) for c, b in zip(current, best))
    return halve, eta, restarted


def _pick(mask, a, b):
    """``a`` where the per-example ``mask`` holds, else ``b`` (mask broadcast over the other axes)."""
    a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
    return tf.where(tf.reshape(mask, [-1] + [1] * (len(b.shape) - 1)), a, b)


def check_rho(rho):
    rho = checks.number(rho, "rho")
    if not 0.0 < rho < 1.0:
        raise ConfigError(f"rho={rho!r} is outside (0, 1)")
    return rho


def single_run(model, objective, x, y, start, eps, nb_iter, norm, targeted, rho=RHO, eot_samples=1, clip_min=0.0,
               clip_max=1.0):
    """One run of Algorithm 1 from ``start`` (numpy, in the ball), as a cached ``tf.function``.

    Returns a dict of numpy arrays per example: ``x_max`` / ``f_max`` (highest-loss point and its loss),
    ``found`` / ``x_found`` (an iterate succeeded; the latest such iterate), ``eta`` (final step size) and
    ``halvings`` (how many checkpoints halved eta).
    """
    marks = [w for w in checkpoints(nb_iter) if w < nb_iter]  # includes w_0 = 0: bookkeeping only there

    def build():
        def run(x, y, start):
            def project(p):
                return common.clip_pixels(x + common.project(p - x, norm, eps), clip_min, clip_max)

            def shaped(v):  # per-example scalar broadcast over the image axes
                return tf.reshape(v, [-1] + [1] * (len(x.shape) - 1))

            f0, g0, logits0 = gradients.value_and_grad(model, objective, start, y, eot_samples)
            found0 = gradients.succeeded(logits0, y, targeted)
            n = tf.shape(f0)[0]
            mark_tensor = tf.constant(marks, tf.int32)

            def body(k, adv, prev, grad, f, eta, x_max, g_max, f_max, increases, f_max_last, halved_last,
                     last_mark, halvings, found, x_found):
                alpha = tf.where(k > 0, MOMENTUM, 1.0)  # the first step has no momentum
                z = project(adv + common.steepest_step(grad, shaped(eta), norm))
                new = project(adv + alpha * (z - adv) + (1.0 - alpha) * (adv - prev))
                f_new, g_new, logits = gradients.value_and_grad(model, objective, new, y, eot_samples)
                ok = gradients.succeeded(logits, y, targeted)
                found = tf.logical_or(found, ok)
                x_found = _pick(ok, new, x_found)
                better = f_new > f_max
                x_max, g_max, f_max = _pick(better, new, x_max), _pick(better, g_new, g_max), tf.where(
                    better, f_new, f_max)
                at_mark = tf.reduce_any(tf.equal(k, mark_tensor))

                def checkpoint():
                    halve, eta2, restarted = halve_step(eta, increases, k - last_mark, f_max, f_max_last,
                                                        halved_last, rho, (new, g_new, f_new), (x_max, g_max, f_max))
                    halve = tf.logical_and(halve, k > 0)  # w_0 = 0: only the bookkeeping below
                    eta2 = tf.where(halve, eta2, eta)
                    return (halve, eta2) + tuple(_pick(halve, r, c) for r, c in zip(restarted, (new, g_new, f_new)))

                def step():
                    return (tf.zeros_like(halved_last), eta, new, g_new, f_new)

                halve, eta, nxt, grad, f_next = tf.cond(at_mark, checkpoint, step)
                up = tf.cast(f_next > f, tf.int32)  # f(x^(k+1)) > f(x^(k)); x^(k+1) = x_max if restarted
                f = f_next
                increases = tf.where(at_mark, up, increases + up)  # a new interval starts with iteration w_j
                f_max_last = tf.where(at_mark, f_max, f_max_last)
                halved_last = tf.where(at_mark, halve, halved_last)
                last_mark = tf.where(at_mark, k, last_mark)
                halvings += tf.cast(halve, tf.int32)
                return (k + 1, nxt, adv, grad, f, eta, x_max, g_max, f_max, increases, f_max_last, halved_last,
                        last_mark, halvings, found, x_found)

            zeros = tf.zeros([n], tf.int32)
            state = (tf.constant(0), start, start, g0, f0, tf.fill([n], INITIAL_STEP * eps), start, g0, f0, zeros, f0,
                     tf.zeros([n], tf.bool), tf.constant(0), zeros, found0, start)
            out = tf.while_loop(lambda k, *_: k < nb_iter, body, state, parallel_iterations=1)
            return {"x_max": out[6], "f_max": out[8], "eta": out[5], "halvings": out[13], "found": out[14],
                    "x_found": out[15]}

        return run

    key = gradients.objective_key(objective)
    key = key and ("apgd", key, bool(targeted), eps, nb_iter, norm, rho, eot_samples, clip_min, clip_max)
    run = gradients.compiled(model, key, build)
    out = run(tf.constant(x, tf.float32), tf.constant(y, tf.int32), tf.constant(start, tf.float32))
    return {name: value.numpy() for name, value in out.items()}


def _restart_seed(seed, restart):
    """Restart 0 uses ``seed`` itself (the start of ``pgd`` with the same seed); later ones derived seeds."""
    if restart == 0:
        return seed
    return int(np.random.SeedSequence([seed, restart]).generate_state(1)[0] & 0x7FFFFFFF)


def apgd(model, x, y=None, targeted=False, eps=0.3, nb_iter=100, norm=np.inf, n_restarts=1, rho=RHO, rand_init=True,
         eot_samples=1, loss_fn=None, seed=None, clip_min=0.0, clip_max=1.0, stats=None):
    """APGD (Algorithm 1) on the cross-entropy, or on ``loss_fn``; ``y`` = target if ``targeted`` else true label
    (None: prediction). ``norm`` np.inf or 2; ``seed`` fixes the random starts. Returns, per example, the latest
    successful iterate, else the highest-loss point. ``stats`` (a dict): ``stats["gradients"]`` = forward +
    backward passes per example ((nb_iter + 1) * eot_samples per restart it took part in)."""
    norm = common.check_norm(norm)
    eps = common.check_eps(eps, norm)
    nb_iter = checks.count(nb_iter, "nb_iter", minimum=1)
    n_restarts = checks.count(n_restarts, "n_restarts", minimum=1)
    rho = check_rho(rho)
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    x, y, _ = common.prepare(model, x, y, targeted, "apgd", clip_min, clip_max)
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    objective = gradients.objective_or_loss(gradients.cross_entropy(targeted), loss_fn, targeted)
    seed = common.check_seed(seed) if rand_init else 0

    best = x.copy()
    best_f = np.full(len(x), -np.inf, np.float32)
    done = np.zeros(len(x), bool)
    passes = np.zeros(len(x), np.int64)
    for restart in range(n_restarts):
        todo = np.flatnonzero(~done)
        if len(todo) == 0:
            break
        xs, ys = x[todo], y[todo]
        start = xs
        if rand_init:
            eta = common.project(common.random_start(xs.shape, norm, eps, _restart_seed(seed, restart)), norm, eps)
            start = common.clip_pixels(xs + eta, clip_min, clip_max).numpy()
        out = single_run(model, objective, xs, ys, start, eps, nb_iter, norm, targeted, rho, eot_samples, clip_min,
                         clip_max)
        passes[todo] += (nb_iter + 1) * eot_samples
        better = out["f_max"] > best_f[todo]
        best[todo[better]] = out["x_max"][better]
        best_f[todo[better]] = out["f_max"][better]
        best[todo[out["found"]]] = out["x_found"][out["found"]]
        done[todo[out["found"]]] = True
    if stats is not None:
        stats["gradients"] = passes
    return best


def apgd_dlr(model, x, y=None, targeted=False, eps=0.3, nb_iter=100, norm=np.inf, n_restarts=1, rho=RHO,
             rand_init=True, eot_samples=1, loss_fn=None, seed=None, clip_min=0.0, clip_max=1.0, stats=None):
    """APGD on the DLR loss (section 4): :func:`losses.dlr` untargeted, :func:`.losses.dlr_targeted` targeted (APGD-T's
    loss); a ``loss_fn`` given replaces it. Needs at least 3 classes (4 targeted)."""
    if loss_fn is None:
        # the class count from the declared output shapes (a forward pass here would be one more model query)
        shapes = [getattr(m, "output_shape", None) for m in common.models_of(model)]
        classes = min((int(s[-1]) for s in shapes if s is not None and s[-1] is not None), default=None)
        if classes is None:
            classes = common.prepare(model, x, y, targeted, "apgd_dlr", clip_min, clip_max)[2]
        need = 4 if targeted else 3
        if classes < need:
            raise ConfigError(f"apgd_dlr: the {'targeted ' if targeted else ''}DLR loss needs at least {need} classes, "
                              f"the model has {classes}")
        loss_fn = losses.dlr_targeted if targeted else losses.dlr
    return apgd(model, x, y, targeted, eps, nb_iter, norm, n_restarts, rho, rand_init, eot_samples, loss_fn, seed,
                clip_min, clip_max, stats)


PARAMETERS = {
    "eps": Parameter("fraction", "L-inf bound in [0, 1] pixel units, e.g. 0.3 or 8/255"),
    "nb_iter": Parameter("int", "iterations N_iter (gradient passes: N_iter + 1 per restart)", minimum=1),
    "n_restarts": Parameter("int", "random restarts (each on the examples not yet successful)", minimum=1),
    "rho": Parameter("float", "checkpoint condition 1: halve eta if the loss rose in fewer than rho of the steps"),
    "rand_init": Parameter("bool", "start at a uniform random point of the eps-ball (AutoAttack always does)"),
}
L2_PARAMETERS = {**PARAMETERS, "eps": Parameter("amount", "L2 radius in pixel units (may exceed 1)")}
_REFERENCE = "Croce & Hein 2020, Algorithm 1, sections 3-4"
declare("apgd_ce", apgd, norm="linf", summary="Auto-PGD on the cross-entropy (step halving at checkpoints, momentum)",
        reference=_REFERENCE, parameters=PARAMETERS)
declare("apgd_dlr", apgd_dlr, norm="linf", summary="Auto-PGD on the DLR loss (targeted: targeted DLR, APGD-T)",
        reference=_REFERENCE, parameters=PARAMETERS)
declare("apgd_ce_l2", apgd, norm="l2", summary="Auto-PGD on the cross-entropy in an L2 ball", reference=_REFERENCE,
        parameters=L2_PARAMETERS, defaults={"norm": 2, "eps": 2.0})
declare("apgd_dlr_l2", apgd_dlr, norm="l2", summary="Auto-PGD on the DLR loss in an L2 ball", reference=_REFERENCE,
        parameters=L2_PARAMETERS, defaults={"norm": 2, "eps": 2.0})
