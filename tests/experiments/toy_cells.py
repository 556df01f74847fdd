"""A toy experiment for the executor tests: cells that draw seeded numbers, wait for each other, fail or kill their
worker on request. It is a module of its own (not a test file) so that Ray workers can import it."""

import os
import signal

import numpy as np

from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import CellStore
from hrs_tf.experiments.execution import Cell, Needs, Recipe

DIE_MARK = "died_once"


class ToyExperiment:
    """``count`` draw cells ("draws/d<i>"), a "sums/total" cell after all of them; ``die`` names a draw cell that kills
    its own process the first time it runs; ``fail`` one that raises."""

    def __init__(self, work_dir, count=4, die=None, fail=None, seed=0, log=print):
        self.work_dir, self.count, self.die, self.fail, self.seed = work_dir, count, die, fail, seed
        self.cells = CellStore(work_dir, log, seed=seed)

    def recipe(self):
        return Recipe(ToyExperiment, work_dir=os.path.abspath(self.work_dir), count=self.count, die=self.die,
                      fail=self.fail, seed=self.seed)

    def cell_plan(self):
        draws = [Cell("draws", f"d{i}", needs=Needs(cpus=1)) for i in range(self.count)]
        return draws + [Cell("sums", "total", after=tuple(c.key for c in draws))]

    def done(self, cell):
        return self.cells.stored(cell.kind, cell.name) is not None

    def compute(self, cell):
        if cell.kind == "sums":
            def total():
                values = [self.cells.stored("draws", f"d{i}")["value"] for i in range(self.count)]
                return {"total": float(np.sum(values)), "pid": os.getpid()}
            self.cells.cell("sums", "total", total)
            return

        def draw():
            if cell.name == self.fail:
                raise ConfigError(f"cell {cell.name} was told to fail")
            mark = os.path.join(self.work_dir, DIE_MARK)
            if cell.name == self.die and not os.path.exists(mark):
                os.makedirs(self.work_dir, exist_ok=True)
                open(mark, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return {"value": float(np.random.uniform()), "pid": os.getpid()}
        self.cells.cell("draws", cell.name, draw)
