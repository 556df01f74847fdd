"""FGSM / FGM: one gradient step (Goodfellow, Shlens & Szegedy 2015, "Explaining and harnessing
adversarial examples", eq. 3): ``x' = clip(x + eps * sign(grad_x CE(x, y)))``; targeted: step down the
cross-entropy of the target. ``norm=2`` steps along the normalised gradient (fast gradient method).

Our own implementation (not a call into CleverHans) so that EOT, fixed randomness and BPDA apply to it;
on deterministic models it equals ``cleverhans.tf2.attacks.fast_gradient_method`` with
``clip_min=0, clip_max=1`` (pinned by ``tests/test_attacks_cleverhans.py``). Unlike the HRS repo's FGSM,
the result is clipped to [0, 1].
"""

import numpy as np
import tensorflow as tf

from hrs_tf.attacks import common, gradients


def fgsm(model, x, y=None, eps=0.3, norm=np.inf, targeted=False, eot_samples=1):
    """Fast gradient (sign) method; ``y`` = target if ``targeted`` else true label (None: prediction)."""
    norm = common.check_norm(norm)
    eps = common.check_fraction(eps) if norm == np.inf else common.check_nonnegative(eps, "eps")
    eot_samples = common.check_count(eot_samples, "eot_samples", minimum=1)
    x, y, _ = common.prepare(model, x, y, targeted, "fgsm")
    objective = gradients.cross_entropy(targeted)

    def build():
        def run(x, y):
            _, grad, _ = gradients.value_and_grad(model, objective, x, y, eot_samples)
            return common.clip_pixels(x + common.steepest_step(grad, eps, norm))

        return run

    run = gradients.compiled(model, ("fgsm", objective.key, eps, norm, eot_samples), build)
    return run(tf.constant(x), tf.constant(y)).numpy()
