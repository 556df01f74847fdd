"""Progress of an executed plan: one line per finished cell with the counts done / running / left and the times.

The time left is estimated kind by kind (a model's training and a judgement of 50 examples differ by orders of
magnitude): the cells left of each kind times the mean time of that kind's finished cells, scaled by the run's
parallelism (wall time over summed cell time). Cells of a kind with no finished cell yet are counted, not guessed."""

import collections
import time


def minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class Progress:
    """Counts the cells of a run as they start and finish; :meth:`finished` prints the progress line."""

    def __init__(self, log=print):
        self.log = log
        self.start = time.time()
        self.total = self.done = self.running = 0
        self.cell_seconds = []
        self.waiting = collections.Counter()  # cells planned and not finished, by kind
        self.kind_seconds = collections.defaultdict(list)

    def planned(self, cells):
        """``cells``: more cells to compute (a plan may grow as cells finish)."""
        cells = list(cells)
        self.total += len(cells)
        self.waiting.update(cell.kind for cell in cells)

    def started(self, cell):
        self.running += 1

    def finished(self, cell, seconds, where=""):
        self.running -= 1
        self.done += 1
        self.cell_seconds.append(seconds)
        self.kind_seconds[cell.kind].append(seconds)
        self.waiting[cell.kind] -= 1
        elapsed = time.time() - self.start
        left = self.total - self.done - self.running
        line = (f"cells: {self.done}/{self.total} done, {self.running} running, {left} left; {minutes(elapsed)} so far"
                + self.time_left(elapsed) + f" | {cell.key} took {minutes(seconds)}"
                + (f" on {where}" if where else ""))
        self.log(line)

    def time_left(self, elapsed):
        """", about T left" for the kinds already timed, and how many cells of untimed kinds remain."""
        timed = {kind: n for kind, n in self.waiting.items() if n > 0 and kind in self.kind_seconds}
        untimed = {kind: n for kind, n in self.waiting.items() if n > 0 and kind not in self.kind_seconds}
        text = ""
        if timed:
            parallelism = elapsed / max(sum(self.cell_seconds), 1e-9)  # < 1 when cells run at once
            seconds = parallelism * sum(n * sum(self.kind_seconds[k]) / len(self.kind_seconds[k])
                                        for k, n in timed.items())
            text += f", about {minutes(seconds)} left for {sum(timed.values())} " \
                    f"{'/'.join(sorted(timed))} cell(s) at their kind's mean time"
        if untimed:
            text += f", {sum(untimed.values())} {'/'.join(sorted(untimed))} cell(s) not timed yet"
        return text

    def summary(self):
        """{cells computed, wall seconds, summed cell seconds} of the run so far."""
        return {"cells": self.done, "wall_seconds": round(time.time() - self.start, 2),
                "cell_seconds": round(sum(self.cell_seconds), 2)}
