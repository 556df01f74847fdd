"""Resumable training: fingerprints of what a run depends on, and one checkpoint file format.

A checkpoint is one HDF5 file, written atomically after every epoch: a JSON *state* (the run's settings,
the epoch reached, the history so far, anything else the trainer keeps) and named groups of arrays (model
weights, optimizer variables, random-generator states). :func:`resume` reads it back into the same
variables after refusing a run with other settings (:func:`hrs_tf.fileio.check_same_settings`), so that a
killed run restarted with the same command continues exactly where it stopped.
"""

import hashlib
import json
import os

import h5py
import numpy as np

from hrs_tf import fileio
from hrs_tf.errors import ConfigError, ModelError

FORMAT = "hrs_tf.checkpoint/1"


def data_fingerprint(x, y):
    """SHA-1 of images and labels: a resume on other data is refused."""
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(y).astype(np.int64).tobytes())
    return digest.hexdigest()


def weights_fingerprint(model):
    """SHA-1 of every weight of ``model`` (shapes and values), to recognise the same model on resume."""
    digest = hashlib.sha1()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(str((w.dtype.str, w.shape)).encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def seed_states(*models):
    """The state variables of every random generator in ``models`` (each counted once)."""
    found, seen = [], set()
    for model in models:
        for v in model.variables:
            if v.path.endswith("seed_generator_state") and id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def save(path, state, groups):
    """Writes ``state`` (JSON-ready dict) and ``groups`` ({name: [variables or arrays]}) to ``path`` atomically."""
    with fileio.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["state"] = json.dumps(state, sort_keys=True)
            for name, values in groups.items():
                group = f.create_group(name)
                for i, value in enumerate(values):
                    group.create_dataset(str(i), data=np.asarray(value.numpy() if hasattr(value, "numpy") else value))


def read(path):
    """``(state, {group: [arrays]})`` of the checkpoint at ``path``; ModelError if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ModelError(f"{path!r} is not a checkpoint of this project (format {f.attrs.get('format')!r})")
            state = json.loads(f.attrs["state"])
            groups = {name: [np.asarray(f[name][str(i)]) for i in range(len(f[name]))] for name in f.keys()}
    except (OSError, KeyError, ValueError) as e:
        raise ModelError(f"cannot read checkpoint {path!r}: {' '.join(str(e).split())}") from None
    return state, groups


def resume(path, settings, identity_keys, groups, what, epochs=None):
    """The state of the checkpoint at ``path`` with its arrays assigned to ``groups`` ({name: [variables]}),
    or None if there is no checkpoint yet.

    Refuses (ConfigError naming ``what``, e.g. "an adversarial-training run", and every differing setting) a
    checkpoint whose ``state["settings"]`` differ from ``settings`` on ``identity_keys``, or one already beyond
    ``epochs``; ModelError if its arrays do not fit the variables.
    """
    if not os.path.exists(path):
        return None
    state, arrays = read(path)
    fileio.check_same_settings(state["settings"], settings, identity_keys, f"checkpoint {path!r} holds {what}",
                               "use another output or the original settings to resume")
    if epochs is not None and state["epoch"] > epochs:
        raise ConfigError(f"checkpoint {path!r} already holds {state['epoch']} epochs, more than epochs={epochs}")
    for name, variables in groups.items():
        if [tuple(v.shape) for v in variables] != [a.shape for a in arrays.get(name, [])]:
            raise ModelError(f"checkpoint {path!r}: the saved {name} state does not fit this run")
    for name, variables in groups.items():
        for v, a in zip(variables, arrays[name]):
            v.assign(a)
    return state
