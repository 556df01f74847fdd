"""CW-PGD: PGD on the Carlini & Wagner margin loss with confidence kappa (Carlini & Wagner 2017, loss f_6;
used inside PGD by Madry et al. 2018 and the HRS paper, section 6).

Ascends ``-max(max_{j != t} Z_j - Z_t, -kappa)`` (targeted) or ``-max(Z_y - max_{j != y} Z_j, -kappa)``
(untargeted) on the logits Z with PGD's sign steps, projection and clipping (:mod:`pgd`); kappa is
``confidence`` (CleverHans's name). The clamp at ``-kappa`` stops pushing an example once its margin reaches
kappa. The HRS repo's own version (Adam on the raw, unclamped margin gradient) is
:func:`hrs_tf.attacks.hrs_pgd.hrs_cw_pgd`.
"""

import numpy as np

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.pgd import PARAMETERS, check_budget, initial_point, iterate
from hrs_tf.attacks.registry import Parameter, declare


def cw_pgd(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=40, norm=np.inf, confidence=0.0, targeted=False,
           rand_init=True, rand_minmax=None, seed=None, eot_samples=1, loss_fn=None, clip_min=0.0, clip_max=1.0):
    """PGD on the C&W margin loss; ``y`` = target if ``targeted`` else true label (None: prediction)."""
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 30)
    confidence = checks.nonnegative(confidence, "confidence")
    x, y, _ = common.prepare(model, x, y, targeted, "cw_pgd", clip_min, clip_max)
    start = initial_point(x, norm, eps, rand_init, rand_minmax, seed, clip_min, clip_max)
    objective = gradients.objective_or_loss(gradients.carlini_wagner(targeted, confidence), loss_fn, targeted)
    return iterate(model, objective, x, y, start, eps, eps_iter, nb_iter, norm, eot_samples, clip_min, clip_max)


declare("cw_pgd", cw_pgd, norm="linf", summary="PGD on the C&W margin loss with confidence",
        reference="Carlini & Wagner 2017 (f_6); Madry et al. 2018",
        parameters={**PARAMETERS, "confidence": Parameter("float", "C&W confidence kappa on the logit margin")})
