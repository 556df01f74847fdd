"""Shared plumbing of the absl scripts in ``tools/``: error reporting and eps parsing."""

import sys

from absl import app

from hrs_tf.errors import ConfigError, HrsError


def run(main):
    """``absl.app.run(main)``, printing an :class:`HrsError` as one line and exiting with status 2."""

    def guarded(argv):
        if len(argv) > 1:
            print(f"error: unexpected positional arguments {argv[1:]} (all settings are --flags)", file=sys.stderr)
            sys.exit(2)
        try:
            return main(argv)
        except HrsError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)


def parse_fraction(text, name="eps"):
    """Parses ``"0.03"`` or ``"8/255"`` into a float in [0, 1]; raises ConfigError otherwise."""
    s = str(text).strip()
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(s)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{name}={text!r} is not a number or a fraction like 8/255") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={text!r} is {value:g}, outside [0, 1] (pixels are scaled to [0, 1]; write 8/255, not 8)")
    return value
