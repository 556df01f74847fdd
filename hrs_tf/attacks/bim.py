"""BIM: the basic iterative method (Kurakin, Goodfellow & Bengio 2017, "Adversarial examples in the
physical world", eq. 3): iterated FGSM from the clean image, clipped to the eps-ball and to the pixel box.

PGD without random start; equals ``cleverhans.tf2.attacks.basic_iterative_method`` on deterministic
models (which needs ``sanity_checks=False`` under NumPy >= 1.24, REFERENCE section 7). Defaults: the
CleverHans v3 values at eps = 0.3 (10 steps of 0.05), the step scaled with eps (``eps_iter = eps / 6``).
"""

import numpy as np

from hrs_tf.attacks import backends, common, gradients
from hrs_tf.attacks.pgd import PARAMETERS, check_budget, iterate
from hrs_tf.attacks.registry import declare


def bim(model, x, y=None, eps=0.3, eps_iter=None, nb_iter=10, norm=np.inf, targeted=False, eot_samples=1, loss_fn=None,
        clip_min=0.0, clip_max=1.0, backend="ours"):
    """Basic iterative method; ``y`` = target if ``targeted`` else true label (None: prediction).
    ``backend="cleverhans"``: CleverHans's ``basic_iterative_method`` (white-box only, :mod:`.backends`)."""
    eps, eps_iter, nb_iter, norm = check_budget(eps, eps_iter, nb_iter, norm, 1 / 6)
    backend = backends.check(backend, "bim", eot_samples, loss_fn, model, takes_loss=False)
    x, y, _ = common.prepare(model, x, y, targeted, "bim", clip_min, clip_max)
    if backend == backends.CLEVERHANS:
        return backends.run("basic_iterative_method", model, x, y, targeted, clip_min, clip_max, eps=eps,
                            eps_iter=eps_iter, nb_iter=nb_iter, norm=norm)
    objective = gradients.objective_or_loss(gradients.cross_entropy(targeted), loss_fn, targeted)
    return iterate(model, objective, x, y, x, eps, eps_iter, nb_iter, norm, eot_samples, clip_min, clip_max)


declare("bim", bim, norm="linf", summary="basic iterative method (PGD without random start)",
        reference="Kurakin et al. 2017, eq. 3", parameters={k: PARAMETERS[k] for k in ("eps", "eps_iter", "nb_iter")})
