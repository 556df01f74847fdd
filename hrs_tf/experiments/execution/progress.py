"""Progress of an executed plan: one line per finished cell with the counts done / running / left and the times."""

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

    def planned(self, count):
        """``count`` more cells to compute (a plan may grow as cells finish)."""
        self.total += count

    def started(self, cell):
        self.running += 1

    def finished(self, cell, seconds, where=""):
        self.running -= 1
        self.done += 1
        self.cell_seconds.append(seconds)
        elapsed = time.time() - self.start
        left = self.total - self.done - self.running
        waiting = left + self.running
        line = (f"cells: {self.done}/{self.total} done, {self.running} running, {left} left; {minutes(elapsed)} so far"
                + (f", about {minutes(elapsed / self.done * waiting)} left at this run's rate" if waiting else "")
                + f" | {cell.key} took {minutes(seconds)}" + (f" on {where}" if where else ""))
        self.log(line)

    def summary(self):
        """{cells computed, wall seconds, summed cell seconds} of the run so far."""
        return {"cells": self.done, "wall_seconds": round(time.time() - self.start, 2),
                "cell_seconds": round(sum(self.cell_seconds), 2)}
