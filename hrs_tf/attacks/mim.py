"""MIM: the momentum iterative method (Dong et al. 2018, "Boosting adversarial attacks with momentum",
Algorithm 1): ``g <- mu * g + grad / mean|grad|``; ``x <- x + eps_iter * sign(g)``, projected to the
eps-ball and clipped to the pixel box.

The gradient is normalised by its mean absolute value (the paper's L1 norm divided by the dimension, as
``cleverhans.tf2.attacks.momentum_iterative_method``, whose iterates ours equal on deterministic models).
With EOT the averaged gradient is normalised. Defaults: CleverHans's (eps 0.3, 10 steps of 0.06,
mu = 1), the step scaled with eps (``eps_iter = eps / 5``).
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import backends, common, gradients
from hrs_tf.attacks.pgd import PARAMETERS, check_budget
from hrs_tf.attacks.registry import Parameter, declare


def mim(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=10, norm=np.inf, decay_factor=1.0, targeted=False,
        eot_samples=1, loss_fn=None, clip_min=0.0, clip_max=1.0, backend="ours"):
    """Momentum iterative method; ``y`` = target if ``targeted`` else true label (None: prediction).
    ``backend="cleverhans"``: CleverHans's ``momentum_iterative_method`` (white-box only, :mod:`.backends`)."""
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 5)
    decay_factor = checks.nonnegative(decay_factor, "decay_factor")
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    backend = backends.check(backend, "mim", eot_samples, loss_fn, model, takes_loss=False)
    x, y, _ = common.prepare(model, x, y, targeted, "mim", clip_min, clip_max)
    if backend == backends.CLEVERHANS:
        return backends.run("momentum_iterative_method", model, x, y, targeted, clip_min, clip_max, eps=eps,
                            eps_iter=eps_iter, nb_iter=nb_iter, norm=norm, decay_factor=decay_factor)
    objective = gradients.objective_or_loss(gradients.cross_entropy(targeted), loss_fn, targeted)

    def build():
        def run(x, y):
            axes = list(range(1, len(x.shape)))

            def body(i, adv, momentum):
                _, grad, _ = gradients.value_and_grad(model, objective, adv, y, eot_samples)
                grad = grad / tf.maximum(1e-12, tf.reduce_mean(tf.abs(grad), axes, keepdims=True))
                momentum = decay_factor * momentum + grad
                adv = adv + common.steepest_step(momentum, eps_iter, norm)
                adv = common.clip_pixels(x + common.project(adv - x, norm, eps), clip_min, clip_max)
                return i + 1, adv, momentum

            _, adv, _ = tf.while_loop(lambda i, *_: i < nb_iter, body, (tf.constant(0), x, tf.zeros_like(x)))
            return adv

        return run

    key = gradients.objective_key(objective)
    key = key and ("mim", key, eps, eps_iter, nb_iter, norm, decay_factor, eot_samples, clip_min, clip_max)
    return gradients.compiled(model, key, build)(tf.constant(x), tf.constant(y)).numpy()


declare("mim", mim, norm="linf", summary="momentum iterative method", reference="Dong et al. 2018, Algorithm 1",
        parameters={**{k: PARAMETERS[k] for k in ("eps", "eps_iter", "nb_iter")},
                    "decay_factor": Parameter("float", "momentum decay mu")})
