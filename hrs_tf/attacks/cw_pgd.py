"""CW-PGD: PGD on the Carlini & Wagner margin loss with confidence kappa (Carlini & Wagner 2017, loss f_6;
used inside PGD by Madry et al. 2018 and the HRS paper, section 6).

Ascends ``-max(max_{j != t} Z_j - Z_t, -kappa)`` (targeted) or ``-max(Z_y - max_{j != y} Z_j, -kappa)``
(untargeted) on the logits Z with PGD's sign steps, projection and [0, 1] clipping (:mod:`pgd`). The clamp
at ``-kappa`` stops pushing an example once its margin reaches kappa. The HRS repo's own version (Adam on
the raw, unclamped margin gradient) is :func:`hrs_tf.attacks.hrs_paper.hrs_cw_pgd`.
"""

import numpy as np

from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.pgd import check_budget, initial_point, iterate


def cw_pgd(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=40, norm=np.inf, kappa=0.0, targeted=False,
           rand_init=True, rand_minmax=None, seed=None, eot_samples=1):
    """PGD on the C&W margin loss; ``y`` = target if ``targeted`` else true label (None: prediction)."""
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 30)
    kappa = common.check_nonnegative(kappa, "kappa")
    x, y, _ = common.prepare(model, x, y, targeted, "cw_pgd")
    start = initial_point(x, norm, eps, rand_init, rand_minmax, seed)
    return iterate(model, gradients.carlini_wagner(targeted, kappa), x, y, start, eps, eps_iter, nb_iter,
                              norm, eot_samples)
