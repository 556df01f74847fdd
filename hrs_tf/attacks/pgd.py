"""PGD: projected gradient descent (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks", eq. 2), L-inf or L2, with an optional uniform random start in the eps-ball.

Each step: ``x <- clip01(x + eps_iter * step(grad))``, then project ``x - x0`` onto the eps-ball, then clip
to [0, 1] again -- the order of ``cleverhans.tf2.attacks.projected_gradient_descent``, which our iterates
equal on deterministic models without random start (``tests/test_attacks_cleverhans.py``). Written here
rather than called from CleverHans because (1) every step must go through the shared EOT gradient
(:mod:`hrs_tf.attacks.gradients`), so that EOT, fixed randomness and BPDA work with it, and (2) the whole
loop runs as one ``tf.function`` (CleverHans runs one eager step per iteration; see ``benchmarks/``).

Defaults: the CleverHans v3 MadryEtAl values at eps = 0.3 (40 steps of 0.01, random start), with the step
scaled with eps (``eps_iter = eps / 30``) so that e.g. ``eps=8/255`` gets a sensible step.
"""

import numpy as np
import tensorflow as tf

from hrs_tf.attacks import common, gradients


def check_budget(eps, eps_iter, nb_iter, norm, iter_fraction):
    """Checked (eps, eps_iter, nb_iter, norm); ``eps_iter=None`` -> ``eps * iter_fraction``."""
    norm = common.check_norm(norm)
    eps = common.check_fraction(eps) if norm == np.inf else common.check_nonnegative(eps, "eps")
    eps_iter = eps * iter_fraction if eps_iter is None else common.check_positive(eps_iter, "eps_iter")
    nb_iter = common.check_count(nb_iter, "nb_iter")
    return eps, eps_iter, nb_iter, norm


def iterate(model, objective, x, y, start, eps, eps_iter, nb_iter, norm, eot_samples):
    """The projected steepest-ascent loop shared by BIM, PGD and CW-PGD; returns the final iterate (numpy)."""
    eot_samples = common.check_count(eot_samples, "eot_samples", minimum=1)

    def build():
        def run(x, y, adv):
            def body(i, adv):
                _, grad, _ = gradients.value_and_grad(model, objective, adv, y, eot_samples)
                adv = common.clip_pixels(adv + common.steepest_step(grad, eps_iter, norm))
                adv = common.clip_pixels(x + common.project(adv - x, norm, eps))
                return i + 1, adv

            _, adv = tf.while_loop(lambda i, _: i < nb_iter, body, (tf.constant(0), adv))
            return adv

        return run

    key = gradients.objective_key(objective)
    run = gradients.compiled(model, key and ("pgd", key, eps, eps_iter, nb_iter, norm, eot_samples), build)
    return run(tf.constant(x), tf.constant(y), tf.constant(start)).numpy()


def initial_point(x, norm, eps, rand_init, rand_minmax, seed):
    """``clip01(x + project(eta))`` with eta uniform in the ``rand_minmax`` ball (or 0); numpy."""
    if not rand_init:
        return x
    radius = eps if rand_minmax is None else common.check_nonnegative(rand_minmax, "rand_minmax")
    eta = common.project(common.random_start(x.shape, norm, radius, common.check_seed(seed)), norm, eps)
    return common.clip_pixels(x + eta).numpy()


def pgd(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=40, norm=np.inf, targeted=False, rand_init=True,
        rand_minmax=None, seed=None, eot_samples=1):
    """PGD on the cross-entropy; ``y`` = target if ``targeted`` else true label (None: prediction).

    ``seed`` fixes the random start (None: a fresh one). Returns the final iterate.
    """
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 30)
    x, y, _ = common.prepare(model, x, y, targeted, "pgd")
    start = initial_point(x, norm, eps, rand_init, rand_minmax, seed)
    return iterate(model, gradients.cross_entropy(targeted), x, y, start, eps, eps_iter, nb_iter, norm, eot_samples)


def pgd_l2(model, x, y=None, eps=2.0, eps_iter=None, nb_iter=40, targeted=False, rand_init=True,
           rand_minmax=None, seed=None, eot_samples=1):
    """PGD in the L2 ball of radius ``eps`` (pixel units, so eps may exceed 1); steps along grad/||grad||."""
    return pgd(model, x, y, eps=eps, eps_iter=eps_iter, nb_iter=nb_iter, norm=2, targeted=targeted,
               rand_init=rand_init, rand_minmax=rand_minmax, seed=seed, eot_samples=eot_samples)
