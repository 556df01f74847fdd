"""BIM: the basic iterative method (Kurakin, Goodfellow & Bengio 2017, "Adversarial examples in the
physical world", eq. 3): iterated FGSM from the clean image, clipped to the eps-ball and to [0, 1].

PGD without random start; equals ``cleverhans.tf2.attacks.basic_iterative_method`` on deterministic
models (which needs ``sanity_checks=False`` under NumPy >= 1.24, REFERENCE section 7). Defaults: the
CleverHans v3 values at eps = 0.3 (10 steps of 0.05), the step scaled with eps (``eps_iter = eps / 6``).
"""

import numpy as np

from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.pgd import check_budget, iterate


def bim(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=10, norm=np.inf, targeted=False, eot_samples=1):
    """Basic iterative method; ``y`` = target if ``targeted`` else true label (None: prediction)."""
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 6)
    x, y, _ = common.prepare(model, x, y, targeted, "bim")
    return iterate(model, gradients.cross_entropy(targeted), x, y, x, eps, eps_iter, nb_iter, norm,
                              eot_samples)
