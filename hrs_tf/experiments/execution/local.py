"""The local executor: every cell in this process, one after another, in the plan's order (the default)."""

import time


class LocalExecutor:
    """Computes cells in order in this process (no Ray import); a cell's dependencies come first (``ordered``)."""

    name = "local"

    def run(self, experiment, cells, finished, progress):
        for cell in cells:
            progress.started(cell)
            start = time.time()
            experiment.compute(cell)
            progress.finished(cell, time.time() - start)

    def close(self):
        pass
