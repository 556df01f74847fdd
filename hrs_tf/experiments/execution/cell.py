"""What an executor runs: cells (one result each), what they need and wait for, and how a worker rebuilds the
experiment that computes them.

An experiment that can run on any executor (:mod:`hrs_tf.experiments.execution`) offers four methods:

- ``recipe()``: a :class:`Recipe`, the picklable way to build an equivalent experiment object in another process
  (a worker loads the data and models from the work folder itself; nothing large is shipped);
- ``cell_plan()``: the :class:`Cell` s known so far, in the order a local run computes them; it may list more once
  some are done (an attack cell whose name depends on a model appears once the model is made);
- ``done(cell)``: whether the cell's result is stored (read from the work folder);
- ``compute(cell)``: computes the cell and stores its result atomically (nothing is half-written if it dies).

A cell names the cells it depends on in ``after`` (a model's training before the attacks on it); every cell it
does not depend on may run at the same time as it, in any process.
"""

import dataclasses
import hashlib
import importlib
import pickle

from hrs_tf import checks
from hrs_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Needs:
    """What one cell needs of a worker: CPU cores, GPUs and memory (MiB, 0 = no reservation)."""

    cpus: float = 1
    gpus: float = 0
    memory_mb: int = 0

    def __post_init__(self):
        for name in ("cpus", "gpus", "memory_mb"):
            if checks.number(getattr(self, name), name) < 0:
                raise ConfigError(f"a cell's {name}={getattr(self, name)!r} must be >= 0")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One unit of work: ``kind`` (the result folder, or "model") and ``name`` identify it (``key``); ``args`` are
    the picklable arguments the experiment's ``compute`` reads; ``after`` the keys of the cells it waits for;
    ``group`` names work that cells share and a worker keeps once done (a model loaded, an attack traced for it):
    an executor runs cells of one group on one worker, one after the other, where that keeps every core busy;
    ``estimate``: cells of one kind and one ``estimate`` take about the same time (the time left of the progress
    line, :mod:`.progress`)."""

    kind: str
    name: str
    args: tuple = ()
    needs: Needs = Needs()
    after: tuple = ()
    group: str = ""
    estimate: str = ""

    @property
    def key(self):
        return f"{self.kind}/{self.name}"


class Recipe:
    """``factory(**kwargs)`` by reference: ``factory`` is a module-level callable (pickled by its import path, so
    a worker imports the same code) and ``kwargs`` plain picklable values (paths absolute, plans as dataclasses).
    :attr:`token` identifies equal recipes, so a worker builds each experiment once and reuses it."""

    def __init__(self, factory, **kwargs):
        self.module, self.qualname = factory.__module__, factory.__qualname__
        if "<locals>" in self.qualname or "<lambda>" in self.qualname:
            raise ConfigError(f"a recipe's factory must be a module-level callable, not {self.qualname}")
        self.kwargs = kwargs
        self.token = hashlib.sha256(pickle.dumps((self.module, self.qualname, sorted(kwargs.items())))).hexdigest()

    def build(self):
        target = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            target = getattr(target, part)
        return target(**self.kwargs)


def cell_seed(key, seed=0):
    """A 31-bit seed for cell ``key`` under the experiment seed ``seed``: the same in every process and order, so a
    cell computed on a worker draws what it draws in a local run."""
    digest = hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1
