"""Resumable rows: a result file whose rows are saved one by one as they are measured.

A search or a grid measures rows (one per setting) in order; :class:`ResumableRows` keeps them in one JSON
file, rewritten atomically after every new row (``finished: false`` until :meth:`finish`). A rerun with the
same settings takes the finished rows from the file instead of measuring them again; one with other settings
is refused (one line naming every differing setting), except that list settings named ``growable`` may gain
entries (a grid given one more model or rate measures only the new cells), never lose or change one.
"""

import os

from hrs_tf import fileio
from hrs_tf.errors import ConfigError


class ResumableRows:
    """Rows of kind ``kind`` under ``settings`` in the file ``path``, keyed by ``key(row)``."""

    def __init__(self, path, kind, settings, key, growable=()):
        self.path, self.kind, self.settings, self.key = path, kind, settings, key
        self.rows = []
        self.done = self._resume(growable)

    def _resume(self, growable):
        if not os.path.exists(self.path):
            return {}
        try:
            previous = fileio.read_json(self.path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read earlier results {self.path!r}: {e}") from None
        old = previous.get("settings") or {}
        fileio.check_same_settings(old, self.settings, sorted((set(old) | set(self.settings)) - set(growable)),
                                   f"{self.path!r} holds results", "use another output or the original settings to resume")
        for name in growable:
            missing = [entry for entry in old.get(name, []) if entry not in self.settings.get(name, [])]
            if missing:
                raise ConfigError(f"{self.path!r} holds results for {name} {missing} that this run does not have (a "
                                  "changed model file or a removed entry); entries may only be added: use another output")
        return {self.key(row): row for row in previous.get("rows", [])}

    def get(self, key):
        """The finished row ``key`` of an earlier run, or None."""
        return self.done.get(key)

    def add(self, row, fresh=True):
        """Appends ``row``; a ``fresh`` (newly measured) row is saved at once."""
        self.rows.append(row)
        if fresh:
            fileio.write_json(self.path, {"kind": self.kind, "settings": self.settings, "rows": self.rows, "finished": False})

    def finish(self, **extra):
        """Writes and returns the finished result: kind, settings, rows and ``extra`` fields."""
        result = {"kind": self.kind, "settings": self.settings, "rows": self.rows, "finished": True, **extra}
        fileio.write_json(self.path, result)
        return result
