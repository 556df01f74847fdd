"""The result files of a run as data, timing fields left out: what two runs of one plan (local and Ray, resumed and
uninterrupted) must agree on."""

import json
import os


def without_timing(value, drop=()):
    """Parsed JSON ``value`` without timing fields (keys ending in ``seconds`` or holding ``seconds_``) and the keys
    in ``drop``, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v, drop) for k, v in value.items()
                if not (k.endswith("seconds") or "seconds_" in k or k in drop)}
    if isinstance(value, list):
        return [without_timing(v, drop) for v in value]
    return value


def in_cells(path):
    """Whether the relative ``path`` lies in a ``cells`` folder."""
    return "cells" in path.split(os.sep)[:-1]


def json_files(folder, keep=lambda path: True, drop=()):
    """{path relative to ``folder``: :func:`without_timing` content} of every JSON file under ``folder`` whose relative
    path ``keep`` accepts."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if name.endswith(".json") and keep(relative):
                with open(path) as f:
                    out[relative] = without_timing(json.load(f), drop)
    return out
