"""The attack suite: every attack is ``attack(model, x, y, targeted=..., **settings) -> x_adv``.

``model``: any Keras model (or callable ``model(x, training=False)``) mapping images in ``[clip_min, clip_max]``
(default [0, 1]) to logits, or a list of models attacked at once; ``x``: a batch (numpy or tensor); ``y``: the
target if ``targeted`` else the true label; the result is a numpy batch. Every gradient attack takes
``eot_samples`` (EOT, :mod:`.gradients`), ``loss_fn`` (CleverHans convention, :mod:`.losses`) and
``clip_min`` / ``clip_max``; settings (white-box / EOT / fixed randomness) are wrappers (:mod:`.settings`);
BPDA is a context (:mod:`.bpda`).

Each attack lives in its own module and declares itself there (:func:`.registry.declare`: function, norm,
settings and their command-line flags); this package imports every module of its folder, so the registry
(:data:`ATTACKS`) holds every attack without a list to edit, and each attack function is an attribute of
this package (``hrs_tf.attacks.pgd(model, x, y, ...)``).
"""

import importlib
import pkgutil

from hrs_tf.attacks import bpda as _bpda_module
from hrs_tf.attacks import registry, settings  # noqa: F401
from hrs_tf.attacks.registry import ATTACKS
from hrs_tf.attacks.settings import SETTINGS, eot, fixed_randomness  # noqa: F401

INFRASTRUCTURE = ("backends", "bpda", "common", "gradients", "losses", "registry", "settings")

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")
for _attack in ATTACKS.values():
    globals()[_attack.name] = _attack.call
bpda = _bpda_module.bpda


def get_attack(name):
    """The attack function registered as ``name`` (with a preset's defaults); ConfigError naming the choices."""
    return registry.get(name).call


def eps_norm(name):
    """The norm the ``eps`` of attack ``name`` is measured in (``np.inf``, 2 or 1; L0 attacks: ``np.inf``)."""
    import numpy as np

    return {"l2": 2, "l1": 1}.get(registry.get(name).norm, np.inf)


__all__ = ["ATTACKS", "SETTINGS", "bpda", "eot", "eps_norm", "fixed_randomness", "get_attack", "registry"] + list(ATTACKS)
