"""Plug-in packages (``randspike``, ``hashdef``, or any other) that add layers and defenses to the project.

A plug-in declares an entry point in the group ``hrs_tf.plugins`` naming a module, e.g. in its
``pyproject.toml``::

    [project.entry-points."hrs_tf.plugins"]
    randspike = "randspike"

Importing that module registers its Keras layers (``keras.saving.register_keras_serializable``) and its
defenses (:func:`hrs_tf.defenses.register`). ``hrs_tf`` never imports a plug-in by name: the defense registry,
:func:`hrs_tf.models.serialization.load_model` and so every tool call :func:`load` first, which imports each
declared module once.
"""

import importlib.metadata
import sys

from hrs_tf.errors import PluginError

GROUP = "hrs_tf.plugins"
_loaded = {}  # module name -> entry-point name, for every plug-in imported (or being imported)
_scanned = [None]  # the sys.path of the last complete scan: entry points change only with the path


def load():
    """Imports every plug-in module not imported yet; returns ``{entry-point name: module}`` of all of them.

    Raises PluginError (one line naming the plug-in) if a plug-in fails to import. The installed distributions
    are scanned again only when ``sys.path`` has changed since the last complete scan (the registry calls this
    on every lookup).
    """
    path = tuple(sys.path)
    if _scanned[0] == path:
        return {name: module for module, name in _loaded.items()}
    for entry in importlib.metadata.entry_points(group=GROUP):
        if entry.value in _loaded:
            continue
        _loaded[entry.value] = entry.name  # before importing: a plug-in that calls load() does not recurse
        try:
            entry.load()
        except Exception as e:  # noqa: BLE001 -- any failure of foreign code, reported in one line
            del _loaded[entry.value]
            raise PluginError(f"plug-in {entry.name!r} (module {entry.value}) failed to load: {type(e).__name__}: "
                              f"{' '.join(str(e).split())}") from e
    _scanned[0] = path
    return {name: module for module, name in _loaded.items()}
