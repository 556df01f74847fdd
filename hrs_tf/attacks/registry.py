"""Attack declarations: each attack is declared once, in its own module, with its function, the norm its
budget is measured in, and the settings a user may give it (each with its kind and help line, which become the
command-line flags of ``tools/attack.py`` and of the experiment tools).

``declare(...)`` registers an :class:`Attack`; :mod:`hrs_tf.attacks` imports every attack module of the
package, so adding an attack touches its own file (and its tests) only. A *preset* (``defaults=``) declares a
paper's configuration of another attack's function under its own name (e.g. ``hrs_cw_l2`` = C&W-L2 with the
HRS appendix C.1 settings).
"""

import dataclasses
import functools
import inspect

from hrs_tf import checks
from hrs_tf.errors import ConfigError

NORMS = ("linf", "l2", "l1", "l0")
KINDS = ("fraction", "amount", "int", "float", "bool")
# Keywords every attack takes that are not user settings (the evaluation harness passes them).
# ``stats``: a dict a query-counting attack fills (``stats["queries"]``: images sent through the model, per
# example); ``seed_images``: attacker-side data (e.g. a substitute's seed set) the harness supplies;
# ``backend``: ours or cleverhans (:mod:`.backends`), a command-line choice of its own.
RESERVED = ("model", "x", "y", "targeted", "eot_samples", "loss_fn", "seed", "clip_min", "clip_max", "stats",
            "seed_images", "backend")

ATTACKS = {}


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A user setting of an attack: ``kind`` decides how its command-line text is read.

    ``fraction``: a pixel amount in [0, 1], ``8/255`` accepted; ``amount``: any non-negative number (an L2
    radius), fractions accepted; ``int`` (at least ``minimum``: a count that must be 1 or more, such as a number
    of iterations, is refused at 0 instead of silently doing nothing), ``float``, ``bool``.
    """

    kind: str
    help: str
    minimum: int = 0

    def parse(self, value, name):
        if self.kind == "fraction":
            return checks.fraction(value, name)
        if self.kind == "amount":
            return checks.nonnegative(value, name)
        if self.kind == "int":
            return checks.count(value, name, minimum=self.minimum)
        if self.kind == "float":
            return checks.number(value, name)
        if isinstance(value, str):
            if value.strip().lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"{name}={value!r} is not true or false")
            return value.strip().lower() in ("true", "1")
        return bool(value)


@dataclasses.dataclass(frozen=True)
class Attack:
    """A declared attack: ``function(model, x, y, targeted, **settings) -> x_adv``."""

    name: str
    function: object
    norm: str
    summary: str
    reference: str
    parameters: dict
    defaults: dict

    @property
    def call(self):
        """The function with the preset's defaults (the function itself when there are none)."""
        if not self.defaults:
            return self.function

        @functools.wraps(self.function)
        def preset(*args, **kwargs):
            return self.function(*args, **{**self.defaults, **kwargs})

        preset.__name__ = self.name
        return preset

    @property
    def gradient_based(self):
        """Does the attack follow gradients (so EOT, fixed randomness and BPDA apply to it)?"""
        return "eot_samples" in inspect.signature(self.function).parameters

    def parse_settings(self, given):
        """Checked keyword settings from ``given`` ({setting: text or value}, None = unset); ConfigError for a
        setting this attack does not take, naming the ones it takes."""
        settings = {}
        for key, value in given.items():
            if value is None:
                continue
            if key not in self.parameters:
                raise ConfigError(f"attack {self.name!r} does not take the setting {key!r}; it takes "
                                  f"{', '.join(self.parameters) or 'no settings'}")
            settings[key] = self.parameters[key].parse(value, key)
        return settings


def declare(name, function, *, norm, summary, reference, parameters, defaults=None):
    """Registers attack ``name`` and returns its :class:`Attack`; ConfigError on an inconsistent declaration."""
    checks.choice(norm, f"norm of attack {name!r}", NORMS)
    accepted = inspect.signature(function).parameters
    for key, parameter in parameters.items():
        checks.choice(parameter.kind, f"kind of setting {key!r} of attack {name!r}", KINDS)
        if key not in accepted or key in RESERVED:
            raise ConfigError(f"attack {name!r} declares setting {key!r} that {function.__name__} does not take")
        other = next((a.parameters[key] for a in ATTACKS.values() if key in a.parameters), None)
        if other is not None and flag_type(other) != flag_type(parameter):
            raise ConfigError(f"setting {key!r} of attack {name!r} is a {parameter.kind}, elsewhere a {other.kind}")
    for key in defaults or {}:
        if key not in accepted:
            raise ConfigError(f"preset {name!r} sets {key!r} that {function.__name__} does not take")
    if name in ATTACKS and ATTACKS[name].function is not function:
        raise ConfigError(f"attack {name!r} is declared twice")
    attack = Attack(name, function, norm, summary, reference, dict(parameters), dict(defaults or {}))
    ATTACKS[name] = attack
    return attack


def flag_type(parameter):
    """The command-line flag type of a setting: ``text`` (fractions such as 8/255 are text), int, float or bool."""
    return "text" if parameter.kind in ("fraction", "amount") else parameter.kind


def get(name):
    """The declared :class:`Attack` called ``name``; ConfigError naming the choices otherwise."""
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}") from None


def all_parameters():
    """``{setting: Parameter}`` over every declared attack (the first declaration's help for shared names)."""
    found = {}
    for attack in ATTACKS.values():
        for key, parameter in attack.parameters.items():
            found.setdefault(key, parameter)
    return found


def listing():
    """Markdown table of every declared attack: name, norm, settings, summary, reference."""
    from hrs_tf.reporting import markdown_table

    rows = [[f"`{a.name}`", a.norm, ", ".join(a.parameters) or "-", a.summary, a.reference] for a in ATTACKS.values()]
    return markdown_table(["attack", "norm", "settings", "what it does", "reference"], rows)
