"""User-facing errors.

Every problem a user can cause (unknown data set, missing or corrupt file, wrong shape, a value out
of range, a model without the expected layers) raises a subclass of :class:`HrsError` whose message is
one line naming what is wrong. The ``tools/`` scripts print that line and exit non-zero instead of a
traceback (see :func:`hrs_tf.cli.run`).
"""


class HrsError(Exception):
    """Base class of the errors a user can fix; ``str(error)`` is a one-line explanation."""


class DataError(HrsError):
    """A data set is unknown, missing, or its files are corrupt."""


class ModelError(HrsError):
    """A model or weights file is missing, corrupt, or does not fit the expected architecture."""


class ConfigError(HrsError):
    """A setting (flag or argument) has an invalid value."""


class PluginError(HrsError):
    """A plug-in package (an entry point of the ``hrs_tf.plugins`` group) failed to load."""
