"""The number checks of every setting: one place for what a count, a rate or a pixel fraction may be.

Each check takes the value (a number, or text such as ``"8/255"`` from a flag or a spec) and the setting's
name, and returns the checked Python value or raises :class:`hrs_tf.errors.ConfigError` with one line
naming the setting, the value and what it must be.
"""

import numbers

import numpy as np

from hrs_tf.errors import ConfigError


def number(value, name):
    """A finite float from a number or a text ``"0.3"`` / ``"8/255"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a number")
    if isinstance(value, str):
        text = value.strip()
        num, sep, den = text.partition("/")
        try:
            v = float(num) / float(den) if sep else float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{name}={value!r} is not a number or a fraction like 8/255") from None
    else:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={value!r} is not a number") from None
    if not np.isfinite(v):
        raise ConfigError(f"{name}={value!r} is not a finite number")
    return v


def fraction(value, name="eps", allow_zero=True):
    """A pixel amount in [0, 1] (``(0, 1]`` without ``allow_zero``); text like ``8/255`` is accepted."""
    v = number(value, name)
    if v < 0.0 or v > 1.0 or (v == 0.0 and not allow_zero):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigError(f"{name}={value!r} is outside {bound} (pixels are scaled to [0, 1]; write 8/255, not 8)")
    return v


def positive(value, name):
    v = number(value, name)
    if not v > 0:
        raise ConfigError(f"{name}={value!r} must be a positive number")
    return v


def nonnegative(value, name):
    v = number(value, name)
    if v < 0:
        raise ConfigError(f"{name}={value!r} must be a non-negative number")
    return v


def rate(value, name="rate"):
    """A dropout-style rate in [0, 1)."""
    v = number(value, name)
    if not 0.0 <= v < 1.0:
        raise ConfigError(f"{name}={value!r} must be in [0, 1)")
    return v


def count(value, name, minimum=0):
    """A whole number of at least ``minimum`` (an integral float or text such as ``"3"`` is accepted)."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            raise ConfigError(f"{name}={value!r} is not an integer")
    v = int(value)
    if v < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return v


def choice(value, name, choices):
    """``value`` if it is one of ``choices``; ConfigError listing them otherwise."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")
    return value
