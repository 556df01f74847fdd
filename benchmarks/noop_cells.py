"""Cells that do nothing but write their result: what an executor costs per cell beyond the work itself. A module of
its own (not the benchmark script, which runs as ``__main__``) so that Ray workers can import it."""

import os

from hrs_tf.experiments.cells import CellStore
from hrs_tf.experiments.execution import Cell, Recipe


class NoopCells:
    """``count`` independent cells ``noop/<i>``, each writing ``{"index": i}``."""

    def __init__(self, work_dir, count):
        self.work_dir, self.count = work_dir, count
        self.cells = CellStore(work_dir, log=lambda line: None)

    def recipe(self):
        return Recipe(NoopCells, work_dir=os.path.abspath(self.work_dir), count=self.count)

    def cell_plan(self):
        return [Cell("noop", str(i)) for i in range(self.count)]

    def done(self, cell):
        return self.cells.stored(cell.kind, cell.name) is not None

    def compute(self, cell):
        self.cells.cell(cell.kind, cell.name, lambda: {"index": int(cell.name)})
