"""The attack suite: every attack is ``attack(model, x, y, targeted=..., **settings) -> x_adv``.

``model``: any Keras model (or callable ``model(x, training=False)``) mapping [0, 1] images to logits;
``x``: a batch (numpy or tensor); ``y``: the target if ``targeted`` else the true label; the result is a
numpy batch in [0, 1]. Every gradient attack takes ``eot_samples`` (EOT, :mod:`.gradients`); settings
(white-box / EOT / fixed randomness) are wrappers (:mod:`.settings`); BPDA is a context (:mod:`.bpda`).

Registry names (:data:`ATTACKS`): fgsm, bim, mim, pgd, pgd_l2, cw_l2, cw_pgd, jsma_z, jsma_f, hrs_pgd,
hrs_cw_pgd, hrs_cw_l2.
"""

import numpy as np

from hrs_tf.attacks import settings  # noqa: F401
from hrs_tf.attacks.bim import bim
from hrs_tf.attacks.bpda import bpda
from hrs_tf.attacks.cw_l2 import cw_l2
from hrs_tf.attacks.cw_pgd import cw_pgd
from hrs_tf.attacks.fgsm import fgsm
from hrs_tf.attacks.hrs_paper import hrs_cw_l2, hrs_cw_pgd, hrs_pgd
from hrs_tf.attacks.jsma import jsma_f, jsma_z
from hrs_tf.attacks.mim import mim
from hrs_tf.attacks.pgd import pgd, pgd_l2
from hrs_tf.attacks.settings import SETTINGS, eot, fixed_randomness  # noqa: F401
from hrs_tf.errors import ConfigError

ATTACKS = {
    "fgsm": fgsm,
    "bim": bim,
    "mim": mim,
    "pgd": pgd,
    "pgd_l2": pgd_l2,
    "cw_l2": cw_l2,
    "cw_pgd": cw_pgd,
    "jsma_z": jsma_z,
    "jsma_f": jsma_f,
    "hrs_pgd": hrs_pgd,
    "hrs_cw_pgd": hrs_cw_pgd,
    "hrs_cw_l2": hrs_cw_l2,
}

# Attacks whose eps is an L2 radius (may exceed 1); every other eps is an L-inf bound in [0, 1].
L2_EPS = ("pgd_l2",)


def get_attack(name):
    """The attack function registered as ``name``; ConfigError naming the choices otherwise."""
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}") from None


def eps_norm(name, kwargs=None):
    """The norm the ``eps`` of attack ``name`` is measured in (``np.inf`` or 2)."""
    norm = (kwargs or {}).get("norm", 2 if name in L2_EPS else np.inf)
    return 2 if norm in (2, "2", "l2") else np.inf


__all__ = ["ATTACKS", "SETTINGS", "bim", "bpda", "cw_l2", "cw_pgd", "eot", "eps_norm", "fgsm", "fixed_randomness",
           "get_attack", "hrs_cw_l2", "hrs_cw_pgd", "hrs_pgd", "jsma_f", "jsma_z", "mim", "pgd", "pgd_l2"]
