"""The HRS paper's own PGD semantics (Wang et al., IJCAI 2019; repo ``KieranXWang/HRS``, ``attack_utils.py``;
REFERENCE section 1), so that its curves can be regenerated.

PGD and CW-PGD there are not sign-step PGD: the image itself is optimised by **Adam with learning rate 0.1**
(TF1 defaults beta1 0.9, beta2 0.999, epsilon 1e-8, a fresh optimiser per (image, target) -- Adam is
element-wise, so a batch is the same), starting at the lower corner of the ball ``max(x - eps, clip_min)``;
each step is one Adam update, then a clip to the pixel box, then a clip to the eps-ball; after 100 steps the
**final** iterate is returned (not the best one).

- ``hrs_pgd``: Adam is fed the **sign** of the gradient of the cross-entropy toward the target
  (untargeted: away from the label). With EOT the sign is taken after averaging the n gradients.
- ``hrs_cw_pgd``: Adam is fed the raw gradient of the margin ``max_{j != t} Z_j - Z_t`` (untargeted:
  ``Z_y - max_{j != y} Z_j``), without the confidence clamp.

The published attacks are targeted only; ``targeted=False`` is offered for symmetry. Their C&W-L2 setting is
the ``hrs_cw_l2`` preset of :mod:`hrs_tf.attacks.cw_l2`; their FGSM (one targeted sign step, unclipped: a
bug) is :func:`hrs_tf.attacks.fgsm.fgsm` with ``targeted=True`` (clipped).
"""

import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients, losses
from hrs_tf.attacks.registry import Parameter, declare

LEARNING_RATE = 0.1
NB_ITER = 100
PARAMETERS = {
    "eps": Parameter("fraction", "L-inf bound in [0, 1] pixel units, e.g. 0.3 or 8/255"),
    "nb_iter": Parameter("int", "iterations", minimum=1),
    "learning_rate": Parameter("float", "Adam learning rate"),
}


def adam_in_the_ball(model, objective, x, y, eps, nb_iter, learning_rate, use_sign, eot_samples, clip_min=0.0,
                     clip_max=1.0):
    """Minimises ``-objective`` with Adam on the image, clip to the box then to the ball; final iterate."""
    eps = checks.fraction(eps)
    nb_iter = checks.count(nb_iter, "nb_iter")
    learning_rate = checks.positive(learning_rate, "learning_rate")
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)

    def build():
        def run(x, y, eps):  # eps is a tensor: one trace serves every budget of an eps sweep
            lower, upper = x - eps, x + eps
            start = tf.maximum(lower, clip_min)

            def body(i, adv, m, v):
                _, ascent, _ = gradients.value_and_grad(model, objective, adv, y, eot_samples)
                g = -ascent  # Adam minimises the loss
                if use_sign:
                    g = tf.sign(g)
                step, m, v = common.adam_update(m, v, g, i + 1, learning_rate)
                adv = tf.clip_by_value(common.clip_pixels(adv - step, clip_min, clip_max), lower, upper)
                return i + 1, adv, m, v

            zeros = tf.zeros_like(x)
            _, adv, _, _ = tf.while_loop(lambda i, *_: i < nb_iter, body, (tf.constant(0), start, zeros, zeros))
            return adv

        return run

    key = gradients.objective_key(objective)
    key = key and ("hrs_adam", key, nb_iter, learning_rate, use_sign, eot_samples, clip_min, clip_max)
    run = gradients.compiled(model, key, build)
    return run(tf.constant(x), tf.constant(y), tf.constant(eps, tf.float32)).numpy()


def hrs_pgd(model, x, y, eps, targeted=True, nb_iter=NB_ITER, learning_rate=LEARNING_RATE, eot_samples=1, loss_fn=None,
            clip_min=0.0, clip_max=1.0):
    """The HRS repo's PGD: Adam (lr 0.1) on the sign of the CE gradient, start max(x - eps, 0), final iterate."""
    x, y, _ = common.prepare(model, x, y, targeted, "hrs_pgd", clip_min, clip_max)
    objective = gradients.objective_or_loss(gradients.cross_entropy(targeted), loss_fn, targeted)
    return adam_in_the_ball(model, objective, x, y, eps, nb_iter, learning_rate, True, eot_samples, clip_min, clip_max)


def hrs_cw_pgd(model, x, y, eps, targeted=True, nb_iter=NB_ITER, learning_rate=LEARNING_RATE, eot_samples=1,
               loss_fn=None, clip_min=0.0, clip_max=1.0):
    """The HRS repo's CW-PGD: Adam (lr 0.1) on the raw margin gradient, start max(x - eps, 0), final iterate."""
    x, y, _ = common.prepare(model, x, y, targeted, "hrs_cw_pgd", clip_min, clip_max)
    objective = gradients.objective_from_loss(loss_fn or losses.margin, targeted)
    return adam_in_the_ball(model, objective, x, y, eps, nb_iter, learning_rate, False, eot_samples, clip_min, clip_max)


declare("hrs_pgd", hrs_pgd, norm="linf", summary="the HRS repo's PGD: Adam (lr 0.1) on the sign of the CE gradient",
        reference="HRS section 6.1; REFERENCE section 1", parameters=PARAMETERS)
declare("hrs_cw_pgd", hrs_cw_pgd, norm="linf", summary="the HRS repo's CW-PGD: Adam (lr 0.1) on the raw margin gradient",
        reference="HRS section 6.1; REFERENCE section 1", parameters=PARAMETERS)
