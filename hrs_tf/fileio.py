"""Atomic file output: a crash or a bad setting never leaves a half-written file behind."""

import contextlib
import json
import os
import tempfile

from hrs_tf.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary name keeps the extension of ``path`` (Keras chooses the file format by it). On any
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    suffix = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + suffix, dir=directory)
    os.close(fd)
    os.unlink(tmp)  # writers such as h5py want to create the file themselves
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")


def write_text(path, text):
    """Writes the string ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_result(path):
    """The JSON result file ``path`` of an earlier run; ConfigError (one line) if missing or not JSON."""
    if os.path.isdir(path):
        raise ConfigError(f"result file {path!r} is a directory; give the .json file inside it")
    if not os.path.isfile(path):
        raise ConfigError(f"result file {path!r} does not exist")
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"result file {path!r} is not valid JSON: {e}") from None


def check_same_settings(stored, current, keys, holder, hint):
    """ConfigError unless ``stored`` and ``current`` agree on every key in ``keys`` (a resumed run must keep
    the settings its saved work was made with). The message names ``holder`` (e.g. "'runs/x' holds an HRS
    run"), every differing key with both values, and ``hint`` (what to do instead)."""
    changed = [k for k in keys if stored.get(k) != current.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} there vs {current.get(k)!r} now" for k in changed)
        raise ConfigError(f"{holder} with other settings ({detail}); {hint}")
