"""The HRS paper's own attack semantics (Wang et al., IJCAI 2019; repo ``KieranXWang/HRS``,
``attack_utils.py``; REFERENCE section 1; paper appendix C.1), so that its curves can be regenerated.

PGD and CW-PGD there are not sign-step PGD: the image itself is optimised by **Adam with learning rate 0.1**
(TF1 defaults beta1 0.9, beta2 0.999, epsilon 1e-8, a fresh optimiser per (image, target) -- Adam is
element-wise, so a batch is the same), starting at the lower corner of the ball ``max(x - eps, 0)``; each
step is one Adam update, then a clip to [0, 1], then a clip to the eps-ball; after 100 steps the **final**
iterate is returned (not the best one).

- ``hrs_pgd``: Adam is fed the **sign** of the gradient of the cross-entropy toward the target
  (untargeted: away from the label). With EOT the sign is taken after averaging the n gradients.
- ``hrs_cw_pgd``: Adam is fed the raw gradient of the margin ``max_{j != t} Z_j - Z_t`` (untargeted:
  ``Z_y - max_{j != y} Z_j``), without the confidence clamp.
- ``hrs_cw_l2``: C&W L2 with the appendix C.1 settings (100 iterations, step 0.1, 10 search steps on c).
  The repo has no CW-L2 code; this is :func:`hrs_tf.attacks.cw_l2.cw_l2` with those settings.
- FGSM there is one targeted sign step toward the target, unclipped (a bug); use
  :func:`hrs_tf.attacks.fgsm.fgsm` with ``targeted=True`` (clipped).

The published attacks are targeted only; ``targeted=False`` is offered for symmetry.
"""

import tensorflow as tf

from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.cw_l2 import cw_l2

LEARNING_RATE = 0.1
NB_ITER = 100
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


def _adam_in_the_ball(model, objective, x, y, eps, nb_iter, learning_rate, use_sign, eot_samples):
    """Minimises ``-objective`` with Adam on the image, clip [0, 1] then to the ball; final iterate."""
    eps = common.check_fraction(eps)
    nb_iter = common.check_count(nb_iter, "nb_iter")
    learning_rate = common.check_positive(learning_rate, "learning_rate")
    eot_samples = common.check_count(eot_samples, "eot_samples", minimum=1)

    def build():
        def run(x, y, eps):  # eps is a tensor: one trace serves every budget of an eps sweep
            lower, upper = x - eps, x + eps
            start = tf.maximum(lower, 0.0)

            def body(i, adv, m, v):
                _, ascent, _ = gradients.value_and_grad(model, objective, adv, y, eot_samples)
                g = -ascent  # Adam minimises the loss
                if use_sign:
                    g = tf.sign(g)
                t = tf.cast(i + 1, tf.float32)
                m = _BETA1 * m + (1.0 - _BETA1) * g
                v = _BETA2 * v + (1.0 - _BETA2) * tf.square(g)
                step = learning_rate * tf.sqrt(1.0 - tf.pow(_BETA2, t)) / (1.0 - tf.pow(_BETA1, t))
                adv = adv - step * m / (tf.sqrt(v) + _ADAM_EPS)
                adv = tf.clip_by_value(common.clip_pixels(adv), lower, upper)
                return i + 1, adv, m, v

            zeros = tf.zeros_like(x)
            _, adv, _, _ = tf.while_loop(lambda i, *_: i < nb_iter, body, (tf.constant(0), start, zeros, zeros))
            return adv

        return run

    key = gradients.objective_key(objective)
    run = gradients.compiled(model, key and ("hrs_adam", key, nb_iter, learning_rate, use_sign, eot_samples), build)

    return run(tf.constant(x), tf.constant(y), tf.constant(eps, tf.float32)).numpy()


def hrs_pgd(model, x, y, eps, targeted=True, nb_iter=NB_ITER, learning_rate=LEARNING_RATE, eot_samples=1):
    """The HRS repo's PGD: Adam (lr 0.1) on the sign of the CE gradient, start max(x - eps, 0), final iterate."""
    x, y, _ = common.prepare(model, x, y, targeted, "hrs_pgd")
    return _adam_in_the_ball(model, gradients.cross_entropy(targeted), x, y, eps, nb_iter, learning_rate, True,
                             eot_samples)


def _raw_margin(targeted):
    def objective(logits, y):
        m = gradients.margin(logits, y)  # Z_y - max_{j != y} Z_j
        return m if targeted else -m     # increase Z_t - max others / decrease Z_y - max others

    objective.key = ("raw_margin", bool(targeted))
    return objective


def hrs_cw_pgd(model, x, y, eps, targeted=True, nb_iter=NB_ITER, learning_rate=LEARNING_RATE, eot_samples=1):
    """The HRS repo's CW-PGD: Adam (lr 0.1) on the raw margin gradient, start max(x - eps, 0), final iterate."""
    x, y, _ = common.prepare(model, x, y, targeted, "hrs_cw_pgd")
    return _adam_in_the_ball(model, _raw_margin(targeted), x, y, eps, nb_iter, learning_rate, False, eot_samples)


def hrs_cw_l2(model, x, y, targeted=True, confidence=0.0, eot_samples=1):
    """C&W L2 with the HRS appendix C.1 settings: 100 iterations, step 0.1, 10 binary-search steps."""
    return cw_l2(model, x, y, targeted=targeted, confidence=confidence, learning_rate=LEARNING_RATE,
                              binary_search_steps=10, max_iterations=NB_ITER, eot_samples=eot_samples)


