"""FGSM / FGM: one gradient step (Goodfellow, Shlens & Szegedy 2015, "Explaining and harnessing
adversarial examples", eq. 3): ``x' = clip(x + eps * sign(grad_x CE(x, y)))``; targeted: step down the
cross-entropy of the target. ``norm=2`` steps along the normalised gradient (fast gradient method).

Our own implementation (not a call into CleverHans) so that EOT, fixed randomness, BPDA and ``loss_fn`` apply
to it; on deterministic models it equals ``cleverhans.tf2.attacks.fast_gradient_method`` with
``clip_min=0, clip_max=1`` (pinned by ``tests/attacks/test_cleverhans.py``). Unlike the HRS repo's FGSM,
the result is clipped to the pixel box.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import backends, common, gradients
from hrs_tf.attacks.registry import Parameter, declare


def fgsm(model, x, y=None, eps=0.3, norm=np.inf, targeted=False, eot_samples=1, loss_fn=None, clip_min=0.0,
         clip_max=1.0, backend="ours"):
    """Fast gradient (sign) method; ``y`` = target if ``targeted`` else true label (None: prediction).
    ``backend="cleverhans"``: CleverHans's ``fast_gradient_method`` (white-box only, :mod:`.backends`)."""
    norm = common.check_norm(norm)
    eps = common.check_eps(eps, norm)
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    backend = backends.check(backend, "fgsm", eot_samples, loss_fn, model)
    x, y, _ = common.prepare(model, x, y, targeted, "fgsm", clip_min, clip_max)
    if backend == backends.CLEVERHANS:
        return backends.run("fast_gradient_method", model, x, y, targeted, clip_min, clip_max, eps=eps, norm=norm,
                            loss_fn=loss_fn)
    objective = gradients.objective_or_loss(gradients.cross_entropy(targeted), loss_fn, targeted)

    def build():
        def run(x, y):
            _, grad, _ = gradients.value_and_grad(model, objective, x, y, eot_samples)
            return common.clip_pixels(x + common.steepest_step(grad, eps, norm), clip_min, clip_max)

        return run

    key = gradients.objective_key(objective)
    run = gradients.compiled(model, key and ("fgsm", key, eps, norm, eot_samples, clip_min, clip_max), build)
    return run(tf.constant(x), tf.constant(y)).numpy()


declare("fgsm", fgsm, norm="linf", summary="fast gradient sign method, one step", reference="Goodfellow et al. 2015, eq. 3",
        parameters={"eps": Parameter("fraction", "L-inf bound in [0, 1] pixel units, e.g. 0.3 or 8/255")})
