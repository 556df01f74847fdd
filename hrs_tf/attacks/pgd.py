"""PGD: projected gradient descent (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks", eq. 2), L-inf or L2, with an optional uniform random start in the eps-ball.

Each step: ``x <- clip(x + eps_iter * step(grad))``, then project ``x - x0`` onto the eps-ball, then clip
to the pixel box again -- the order of ``cleverhans.tf2.attacks.projected_gradient_descent``, which our iterates
equal on deterministic models without random start (``tests/attacks/test_cleverhans.py``). Written here
rather than called from CleverHans because (1) every step must go through the shared EOT gradient
(:mod:`hrs_tf.attacks.gradients`), so that EOT, fixed randomness, BPDA and ``loss_fn`` work with it, and (2)
the whole loop runs as one ``tf.function`` (CleverHans runs one eager step per iteration; see ``benchmarks/``).

Defaults: the CleverHans v3 MadryEtAl values at eps = 0.3 (40 steps of 0.01, random start), with the step
scaled with eps (``eps_iter = eps / 30``) so that e.g. ``eps=8/255`` gets a sensible step.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import backends, common, gradients
from hrs_tf.attacks.registry import Parameter, declare

PARAMETERS = {
    "eps": Parameter("fraction", "L-inf bound in [0, 1] pixel units, e.g. 0.3 or 8/255"),
    "eps_iter": Parameter("amount", "step size per iteration (fractions accepted)"),
    "nb_iter": Parameter("int", "iterations", minimum=1),
    "rand_init": Parameter("bool", "uniform random start in the eps-ball"),
}


def check_budget(eps, eps_iter, nb_iter, norm, iter_fraction):
    """Checked (eps, eps_iter, nb_iter, norm); ``eps_iter=None`` -> ``eps * iter_fraction``."""
    norm = common.check_norm(norm)
    eps = common.check_eps(eps, norm)
    eps_iter = eps * iter_fraction if eps_iter is None else checks.positive(eps_iter, "eps_iter")
    nb_iter = checks.count(nb_iter, "nb_iter")
    return eps, eps_iter, nb_iter, norm


def loop(model, objective, x, y, start, eps, eps_iter, nb_iter, norm, eot_samples=1, clip_min=0.0, clip_max=1.0):
    """The projected steepest-ascent loop of BIM, PGD, CW-PGD and adversarial training (graph code, tensors)."""
    def body(i, adv):
        _, grad, _ = gradients.value_and_grad(model, objective, adv, y, eot_samples)
        adv = common.clip_pixels(adv + common.steepest_step(grad, eps_iter, norm), clip_min, clip_max)
        adv = common.clip_pixels(x + common.project(adv - x, norm, eps), clip_min, clip_max)
        return i + 1, adv

    _, adv = tf.while_loop(lambda i, _: i < nb_iter, body, (tf.constant(0), start))
    return adv


def iterate(model, objective, x, y, start, eps, eps_iter, nb_iter, norm, eot_samples, clip_min=0.0, clip_max=1.0):
    """:func:`loop` as a cached ``tf.function`` on numpy inputs; returns the final iterate (numpy)."""
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)

    def build():
        return lambda x, y, adv: loop(model, objective, x, y, adv, eps, eps_iter, nb_iter, norm, eot_samples, clip_min,
                                      clip_max)

    key = gradients.objective_key(objective)
    run = gradients.compiled(model, key and ("pgd", key, eps, eps_iter, nb_iter, norm, eot_samples, clip_min, clip_max),
                             build)
    return run(tf.constant(x), tf.constant(y), tf.constant(start)).numpy()


def initial_point(x, norm, eps, rand_init, rand_minmax, seed, clip_min=0.0, clip_max=1.0):
    """``clip(x + project(eta))`` with eta uniform in the ``rand_minmax`` ball (or 0); numpy."""
    if not rand_init:
        return x
    radius = eps if rand_minmax is None else checks.nonnegative(rand_minmax, "rand_minmax")
    eta = common.project(common.random_start(x.shape, norm, radius, common.check_seed(seed)), norm, eps)
    return common.clip_pixels(x + eta, clip_min, clip_max).numpy()


def pgd(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=40, norm=np.inf, targeted=False, rand_init=True,
        rand_minmax=None, seed=None, eot_samples=1, loss_fn=None, clip_min=0.0, clip_max=1.0, backend="ours"):
    """PGD on the cross-entropy (or ``loss_fn``); ``y`` = target if ``targeted`` else true label (None:
    prediction). ``seed`` fixes the random start (None: a fresh one). Returns the final iterate.
    ``backend="cleverhans"``: CleverHans's ``projected_gradient_descent`` (white-box only, :mod:`.backends`;
    its random start is drawn by TensorFlow's global generator, seeded with ``seed`` when one is given)."""
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 30)
    backend = backends.check(backend, "pgd", eot_samples, loss_fn, model)
    x, y, _ = common.prepare(model, x, y, targeted, "pgd", clip_min, clip_max)
    if backend == backends.CLEVERHANS:
        if rand_init and seed is not None:
            tf.random.set_seed(int(seed))
        return backends.run("projected_gradient_descent", model, x, y, targeted, clip_min, clip_max, eps=eps,
                            eps_iter=eps_iter, nb_iter=nb_iter, norm=norm, loss_fn=loss_fn, rand_init=bool(rand_init),
                            rand_minmax=rand_minmax)
    start = initial_point(x, norm, eps, rand_init, rand_minmax, seed, clip_min, clip_max)
    objective = gradients.objective_or_loss(gradients.cross_entropy(targeted), loss_fn, targeted)
    return iterate(model, objective, x, y, start, eps, eps_iter, nb_iter, norm, eot_samples, clip_min, clip_max)


def pgd_l2(model, x, y=None, eps=2.0, eps_iter=None, nb_iter=40, targeted=False, rand_init=True,
           rand_minmax=None, seed=None, eot_samples=1, loss_fn=None, clip_min=0.0, clip_max=1.0, backend="ours"):
    """PGD in the L2 ball of radius ``eps`` (pixel units, so eps may exceed 1); steps along grad/||grad||."""
    return pgd(model, x, y, eps=eps, eps_iter=eps_iter, nb_iter=nb_iter, norm=2, targeted=targeted,
               rand_init=rand_init, rand_minmax=rand_minmax, seed=seed, eot_samples=eot_samples, loss_fn=loss_fn,
               clip_min=clip_min, clip_max=clip_max, backend=backend)


declare("pgd", pgd, norm="linf", summary="projected gradient descent on the cross-entropy, random start",
        reference="Madry et al. 2018, eq. 2", parameters=PARAMETERS)
declare("pgd_l2", pgd_l2, norm="l2", summary="PGD in an L2 ball (eps may exceed 1)", reference="Madry et al. 2018",
        parameters={**PARAMETERS, "eps": Parameter("amount", "L2 radius in pixel units (may exceed 1)")})
