"""Runs an experiment's cells on an executor, round by round, until every cell it lists is done.

A round is the experiment's current ``cell_plan()`` minus the finished ones; the executor computes them honouring
``after``; the experiment is then asked again (its plan may have grown: cells named after a model's properties
appear once the model exists). A cell that was computed but is still not done, or a dependency on a cell the
experiment does not list, is a bug in the experiment and stops the run with one line.
"""

import heapq

from hrs_tf.errors import ConfigError
from hrs_tf.experiments.execution.progress import Progress


def check_plan(cells):
    """ConfigError on two cells with one key or a dependency on a cell that is not listed; returns {key: cell}."""
    by_key = {}
    for cell in cells:
        if cell.key in by_key:
            raise ConfigError(f"the plan lists cell {cell.key!r} twice")
        by_key[cell.key] = cell
    for cell in cells:
        for key in cell.after:
            if key not in by_key:
                raise ConfigError(f"cell {cell.key!r} waits for {key!r}, which the plan does not list")
    return by_key


def ordered(todo, finished):
    """The cells of ``todo`` in an order where every cell comes after the cells of ``todo`` it waits for (keys in
    ``finished`` are satisfied); stable: each next cell is the earliest in the plan whose waits are over, so a plan
    already in a valid order keeps it (a model's results right after its training, not after every other cell)."""
    todo, done = list(todo), set(finished)
    waits = [{key for key in cell.after if key not in done} for cell in todo]
    waiting_on = {}
    for i, keys in enumerate(waits):
        for key in keys:
            waiting_on.setdefault(key, []).append(i)
    ready = [i for i, keys in enumerate(waits) if not keys]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(todo[i])
        for j in waiting_on.get(todo[i].key, ()):
            waits[j].discard(todo[i].key)
            if not waits[j]:
                heapq.heappush(ready, j)
    if len(out) < len(todo):
        left = [cell.key for cell, keys in zip(todo, waits) if keys]
        raise ConfigError(f"cells wait for each other in a cycle: {', '.join(left[:3])}")
    return out


def execute(experiment, executor=None, log=print):
    """Computes every cell ``experiment`` lists that is not done yet on ``executor`` (default: in this process, in
    order); prints a progress line per finished cell; returns {cells, wall_seconds, cell_seconds}."""
    from hrs_tf.experiments.execution.local import LocalExecutor

    executor = executor or LocalExecutor()
    progress = Progress(log)
    attempted = set()
    while True:
        cells = experiment.cell_plan()
        by_key = check_plan(cells)
        todo = [c for c in cells if not experiment.done(c)]
        if not todo:
            return progress.summary()
        again = [c.key for c in todo if c.key in attempted]
        if again:
            raise ConfigError(f"cell {again[0]!r} was computed but is still not done (the experiment's done() and "
                              "compute() disagree)")
        attempted.update(c.key for c in todo)
        finished = set(by_key) - {c.key for c in todo}
        progress.planned(todo)
        executor.run(experiment, ordered(todo, finished), finished, progress)
