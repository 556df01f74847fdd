"""Result cells: one JSON file per result, computed once, resumable, never mixed with other settings.

An experiment (a paper's reproduction, a search, a battery) is a set of cells named by what they measure.
:meth:`CellStore.cell` returns a stored cell or computes, stamps (name, compute time) and writes it atomically
the moment it is done, so a killed run restarted with the same command continues where it stopped.
:func:`check_settings` refuses a work folder whose stored settings differ from the current run's on the keys
that change what a cell holds without being part of its name.
"""

import dataclasses
import os
import re
import time

from hrs_tf import checks, fileio
from hrs_tf.errors import ConfigError

SETTINGS_FILE = "plan.json"


def slug(text):
    """A file-name-safe form of a cell or model name."""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")


def json_ready(value):
    """Tuples to lists, recursively (what a JSON round trip gives), so stored and new settings compare equal."""
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return value


def plan_with(plan_class, overrides, counts=(), **fixed):
    """An experiment's plan: ``plan_class(**fixed, **overrides)`` with the overrides that are None left at their
    defaults, unknown keys refused, and the fields named in ``counts`` checked to be positive integers."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(plan_class)}
    if unknown:
        raise ConfigError(f"unknown plan setting(s) {', '.join(sorted(unknown))}")
    plan = plan_class(**fixed, **{k: v for k, v in overrides.items() if v is not None})
    for name in counts:
        checks.count(getattr(plan, name), name, minimum=1)
    return plan


def check_settings(work_dir, settings, content_keys, holder, hint="use another --work_dir or the original settings",
                   merged=()):
    """Refuses (ConfigError) a ``work_dir`` whose stored settings differ on ``content_keys``; stores the new ones.

    Each key in ``merged`` holds a dict (e.g. {model name: its spec and epochs}) whose entries must agree where
    both runs have them; a run may add entries (another experiment using more models), and the union is stored.
    """
    path = os.path.join(work_dir, SETTINGS_FILE)
    settings = json_ready(settings)
    if os.path.exists(path):
        stored = fileio.read_json(path)
        fileio.check_same_settings(stored, settings, content_keys, f"{work_dir!r} holds {holder}", hint)
        for key in merged:
            old, new = stored.get(key) or {}, settings.get(key) or {}
            fileio.check_same_settings(old, new, sorted(set(old) & set(new)), f"{work_dir!r} holds {holder}", hint)
            settings[key] = {**old, **new}
    fileio.write_json(path, settings)


class CellStore:
    """The cells of one work folder: ``<work_dir>/cells/<experiment>/<slug(name)>.json``.

    Every cell starts from randomness of its own: before computing, the global seeds are set from the cell's key
    and ``seed`` (:func:`hrs_tf.experiments.execution.cell_seed`) and each ``reseed`` callback (e.g.
    :meth:`hrs_tf.experiments.model_store.ModelStore.reseed`, which restarts the seed generators of its models) is
    called with that seed, so a cell's result does not depend on which cells ran before it in the same process:
    a cell computed on any worker, in any order, equals the local run's."""

    def __init__(self, work_dir, log=print, seed=0, reseed=()):
        self.work_dir, self.log, self.seed = work_dir, log, int(seed)
        self.reseed = list(reseed)
        self._read = {}  # path -> every stored cell read so far (a cell never changes once written)

    def path(self, experiment, name):
        return os.path.join(self.work_dir, "cells", experiment, slug(name) + ".json")

    def cell(self, experiment, name, compute):
        """The stored cell, or ``compute()`` (a JSON-ready dict) stamped with its name and time and written."""
        path = self.path(experiment, name)
        if os.path.exists(path):
            return self.stored(experiment, name)
        self.log(f"[{experiment}] {name}")
        self.start_randomness(f"{experiment}/{name}")
        start = time.time()
        result = compute()
        result["cell"] = name
        result["seconds"] = round(time.time() - start, 2)
        fileio.write_json(path, result)
        self._read[path] = result
        return result

    def start_randomness(self, key):
        """Seeds Python, NumPy and TensorFlow and calls every ``reseed`` callback from cell ``key``'s seed."""
        import keras

        from hrs_tf.experiments.execution import cell_seed

        seed = cell_seed(key, self.seed)
        keras.utils.set_random_seed(seed)
        for reseed in self.reseed:
            reseed(seed)

    def stored(self, experiment, name):
        """The stored cell, or None if it has not been computed."""
        path = self.path(experiment, name)
        if path not in self._read:
            if not os.path.exists(path):
                return None
            self._read[path] = fileio.read_json(path)
        return self._read[path]

    def read_minutes(self):
        """(number of cells read so far, their total compute time in minutes)."""
        return len(self._read), sum(cell.get("seconds", 0) for cell in self._read.values()) / 60
