"""The ``backend`` choice of FGSM, BIM, MIM and PGD: ``"ours"`` (default) or ``"cleverhans"``.

``backend="cleverhans"`` runs ``cleverhans.tf2.attacks`` (CleverHans 4.0.0, REFERENCE section 7) as it is:
``fast_gradient_method``, ``basic_iterative_method``, ``momentum_iterative_method`` and
``projected_gradient_descent`` on ``model`` called as CleverHans calls it (``model(x)``, integer labels),
in the white-box setting only. On deterministic models its images equal ours
(``tests/attacks/test_backends.py``). CleverHans takes one gradient per step from one forward pass, so it
cannot average gradients over passes (EOT), and it knows nothing of our fixed-randomness wrapper or BPDA
patches: those, and settings CleverHans lacks (a ``loss_fn`` for BIM / MIM, a seeded random start, an
ensemble of models), are refused with a one-line error. ``sanity_checks=False`` everywhere (CleverHans's
checks crash at the end of BIM / MIM under NumPy >= 1.24).
"""

import contextlib

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common
from hrs_tf.errors import ConfigError

OURS, CLEVERHANS = "ours", "cleverhans"
BACKENDS = (OURS, CLEVERHANS)

# Attacks CleverHans cannot run at this moment (a setting wrapper or a BPDA patch is active): a stack of reasons.
_refusals = []


@contextlib.contextmanager
def refused(reason):
    """Inside the context, ``backend="cleverhans"`` raises ConfigError saying ``reason`` (e.g. fixed randomness)."""
    _refusals.append(reason)
    try:
        yield
    finally:
        _refusals.remove(reason)


def check(backend, name, eot_samples=1, loss_fn=None, model=None, takes_loss=True):
    """Checked backend name; ConfigError when ``backend="cleverhans"`` is asked for what CleverHans cannot do."""
    backend = checks.choice(backend, "backend", BACKENDS)
    if backend == OURS:
        return backend
    why = None
    if checks.count(eot_samples, "eot_samples", minimum=1) > 1:
        why = "EOT (it takes one gradient per step from one forward pass)"
    elif _refusals:
        why = _refusals[-1]
    elif loss_fn is not None and not takes_loss:
        why = f"a loss_fn for {name} (its {name} has no loss_fn argument)"
    elif model is not None and len(common.models_of(model)) > 1:
        why = "an ensemble of models"
    if why:
        raise ConfigError(f"backend=cleverhans cannot run {why}; use backend=ours")
    return backend


def run(name, model, x, y, targeted, clip_min, clip_max, **settings):
    """``cleverhans.tf2.attacks.<name>`` on checked numpy inputs; numpy images.

    ``name``: fast_gradient_method, basic_iterative_method, momentum_iterative_method or
    projected_gradient_descent; ``settings``: its own keyword arguments (None values dropped).
    """
    import importlib

    module = importlib.import_module(f"cleverhans.tf2.attacks.{name}")
    model = common.models_of(model)[0]
    kwargs = {k: v for k, v in settings.items() if v is not None}
    out = getattr(module, name)(lambda t: model(t, training=False), tf.constant(x), y=tf.constant(y),
                                targeted=targeted, clip_min=clip_min, clip_max=clip_max, sanity_checks=False, **kwargs)
    return np.asarray(common.as_numpy(out), np.float32)
