"""Attack settings of the HRS paper (section 6.1) as wrappers around any gradient attack.

- ``whitebox``: the attack runs on the stochastic model as deployed (every forward pass draws anew).
- ``eot``: Expectation over Transformation: each gradient is the mean of ``n`` separate forward + backward
  passes (:func:`hrs_tf.attacks.gradients.value_and_grad`); for sign attacks the sign is taken after
  averaging. Implemented by passing ``eot_samples=n`` to the attack -- every gradient attack takes it.
- ``fixed``: fixed randomness: craft on one fixed realisation of the model, then evaluate on the
  stochastic model. ``fixed="off"`` (default) runs the crafting with every stochastic layer switched off
  (HRS: channel 0 of every block, the reference's fixed path; dropout / noise / SAP: the deterministic
  model); ``fixed="pinned"`` uses each layer's pinned realisation; a path such as ``(3, 1)`` pins the layers
  with discrete realisations (HRS switches) to it, every other stochastic layer off
  (:func:`hrs_tf.layers.stochastic.fixed_realisation`).

The wrappers change how the attack *sees* the model, never the attack itself; the modes are restored
afterwards. Success is judged separately by :mod:`hrs_tf.evaluation` on the model in ``random`` mode.
"""

import functools
import inspect

from hrs_tf import checks
from hrs_tf.attacks import backends
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic

SETTINGS = ("whitebox", "eot", "fixed")


def accepts(attack, parameter):
    """Does ``attack`` take keyword ``parameter``?"""
    target = getattr(attack, "__wrapped__", attack)
    return parameter in inspect.signature(target).parameters


def eot(attack, samples):
    """``attack`` with every gradient averaged over ``samples`` separate stochastic passes."""
    samples = checks.count(samples, "eot_samples", minimum=1)
    if not accepts(attack, "eot_samples"):
        raise ConfigError(f"attack {attack.__name__!r} is not a gradient attack with eot_samples; EOT does not apply")

    @functools.wraps(attack)
    def wrapped(model, x, y, *args, **kwargs):
        kwargs["eot_samples"] = samples
        return attack(model, x, y, *args, **kwargs)

    return wrapped


def fixed_randomness(attack, fixed="off"):
    """``attack`` crafted on a fixed realisation of the model (see :func:`stochastic.fixed_realisation`)."""
    fixed = stochastic.parse_fixed(fixed)

    @functools.wraps(attack)
    def wrapped(model, x, y, *args, **kwargs):
        with stochastic.fixed_realisation(model, fixed), backends.refused("fixed randomness (it has no such setting)"):
            return attack(model, x, y, *args, **kwargs)

    return wrapped


def apply(attack, setting, eot_samples=10, fixed="off"):
    """``attack`` under ``setting`` (``whitebox``, ``eot`` with ``eot_samples``, ``fixed`` with ``fixed``)."""
    checks.choice(setting, "attack setting", SETTINGS)
    if setting == "eot":
        return eot(attack, eot_samples)
    if setting == "fixed":
        return fixed_randomness(attack, fixed)
    return attack
