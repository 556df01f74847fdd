"""Progress of an executed plan: one line per finished cell with the counts done / running / left and the times.

The time left is estimated kind by kind (a model's training and a judgement of 50 examples differ by orders of
magnitude), and within a kind by the cells' ``estimate`` class (a stochastic model's stability cell against a
deterministic one's): the cells left of each class times the mean time of that class's finished cells (of the kind's,
while the class has none), scaled by the run's parallelism (wall time over summed cell time). Cells of a kind with no
finished cell yet are counted, not guessed."""

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
        self.waiting = collections.Counter()  # cells planned and not finished, by (kind, estimate)
        self.kind_seconds = collections.defaultdict(list)
        self.class_seconds = collections.defaultdict(list)  # by (kind, estimate)

    def planned(self, cells):
        """``cells``: more cells to compute (a plan may grow as cells finish)."""
        cells = list(cells)
        self.total += len(cells)
        self.waiting.update((cell.kind, cell.estimate) for cell in cells)

    def started(self, cell):
        self.running += 1

    def finished(self, cell, seconds, where=""):
        self.running -= 1
        self.done += 1
        self.cell_seconds.append(seconds)
        self.kind_seconds[cell.kind].append(seconds)
        self.class_seconds[(cell.kind, cell.estimate)].append(seconds)
        self.waiting[(cell.kind, cell.estimate)] -= 1
        elapsed = time.time() - self.start
        left = self.total - self.done - self.running
        line = (f"cells: {self.done}/{self.total} done, {self.running} running, {left} left; {minutes(elapsed)} so far"
                + self.time_left(elapsed) + f" | {cell.key} took {minutes(seconds)}"
                + (f" on {where}" if where else ""))
        self.log(line)

    def time_left(self, elapsed):
        """", about T left" for the kinds already timed, and how many cells of untimed kinds remain."""
        timed, untimed, seconds = collections.Counter(), collections.Counter(), 0.0
        for (kind, estimate), n in self.waiting.items():
            if n <= 0:
                continue
            times = self.class_seconds.get((kind, estimate)) or self.kind_seconds.get(kind)
            if times:
                timed[kind] += n
                seconds += n * sum(times) / len(times)
            else:
                untimed[kind] += n
        text = ""
        if timed:
            parallelism = elapsed / max(sum(self.cell_seconds), 1e-9)  # < 1 when cells run at once
            text += f", about {minutes(parallelism * seconds)} left for {sum(timed.values())} " \
                    f"{'/'.join(sorted(timed))} cell(s) at the mean time of finished cells like them"
        if untimed:
            text += f", {sum(untimed.values())} {'/'.join(sorted(untimed))} cell(s) not timed yet"
        return text

    def summary(self):
        """{cells computed, wall seconds, summed cell seconds} of the run so far."""
        return {"cells": self.done, "wall_seconds": round(time.time() - self.start, 2),
                "cell_seconds": round(sum(self.cell_seconds), 2)}
