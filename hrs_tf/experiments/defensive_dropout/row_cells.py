"""The rows of the defensive-dropout grid and of Algorithm 1 as executor cells (:mod:`hrs_tf.experiments.execution`):
one file per row in ``<output stem>_cells/``, the result file assembled from them (:mod:`.search` measures a row)."""

import os
import time

from hrs_tf import checks, fileio
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.defensive_dropout.search import (RATE_DIGITS, ModelEvaluators, check_search, rate_key,
                                                         search_rates, search_state)
from hrs_tf.experiments.execution import Cell, Recipe, execute
from hrs_tf.experiments.rows import ResumableRows
from hrs_tf.reporting import fmt

CELLS_SUFFIX = "_cells"  # the folder of a result file's row cells: <output stem>_cells/
CELL_KIND = "rows"
CELLS_SETTINGS = "settings.json"  # in the cells folder: the settings its rows were measured under


class DropoutRows:
    """The rows of a grid (``test_rates``: every model x test rate, independent cells) or of Algorithm 1
    (``epsilon``, ``step``: one rate per round, the next listed once the last is measured) as cells of any
    executor (:mod:`hrs_tf.experiments.execution`).

    Each row is a file of its own in ``<output stem>_cells/`` (beside ``settings.json``, the settings its rows
    were measured under); :meth:`run` computes the missing ones and assembles ``output`` from them (rows in order,
    ``finished``). ``evaluators``: a :class:`ModelEvaluators` (any executor) or evaluator objects (the local one)."""

    def __init__(self, evaluators, output, settings, test_rates=None, epsilon=None, step=None, log=print):
        self.evaluators, self.output, self.log = evaluators, output, log
        self.given = settings
        self.grid = test_rates is not None
        if self.grid:
            self.rates = sorted({round(checks.rate(r, "test rate"), RATE_DIGITS) for r in test_rates})
            self.settings = dict(settings, grid=True, test_rates=self.rates)
            self.kind, self.growable = "defensive_dropout_grid", ("models", "test_rates")
        else:
            self.epsilon, self.step = check_search(epsilon, step)
            self.settings = dict(settings, epsilon=self.epsilon, step=self.step)
            self.kind, self.growable = "defensive_dropout_search", ()
        self.folder = os.path.splitext(output)[0] + CELLS_SUFFIX

    # -- the executor protocol ----------------------------------------------------------------------------
    def recipe(self):
        if not isinstance(self.evaluators, ModelEvaluators):
            raise ConfigError("rows measured by evaluator objects run on the local executor only; give the models as "
                              "files (ModelEvaluators) to run them elsewhere")
        return Recipe(DropoutRows, evaluators=self.evaluators, output=os.path.abspath(self.output),
                      settings=self.given, test_rates=self.rates if self.grid else None,
                      epsilon=None if self.grid else self.epsilon, step=None if self.grid else self.step)

    def cell_plan(self):
        """Grid: every (model, test rate) cell, model by model, rates ascending. Search: the rows measured so far
        and the next rate (none once the search has stopped)."""
        if self.grid:
            plan = [(index, rate) for index in range(len(self.evaluators)) for rate in self.rates]
        else:
            rows, rate, _ = search_state(self._stored_by_rate(), self.epsilon, self.step)
            plan = [(0, row["test_rate"]) for row in rows] + ([(0, rate)] if rate is not None else [])
        return [Cell(CELL_KIND, self._name(self.evaluators[index].train_rate, rate),
                     args=(index, rate, f"[{position}/{len(plan)}] " if self.grid else ""))
                for position, (index, rate) in enumerate(plan, 1)]

    def done(self, cell):
        return os.path.exists(self._path(cell.name))

    def compute(self, cell):
        """Measures the cell's row and writes its file."""
        index, rate, position = cell.args
        evaluator = self.evaluators[index]
        tag = f"{position}train {evaluator.train_rate:g}, test {rate:g}" if self.grid else f"r' = {rate:g}"
        self.log(f"{tag}: measuring" + ("" if self.grid else f" (train rate {evaluator.train_rate:g})"))
        row = evaluator(rate)
        fileio.write_json(self._path(cell.name), row)
        self.log(f"{tag}: test accuracy {row['accuracy']:.4f}, ASR {row['asr']:.4f}, mean L2 {fmt(row['mean_l2'])}, "
                 f"{row['seconds']:.0f} s")

    # -- the result file ----------------------------------------------------------------------------------
    def run(self, executor=None):
        """Computes every missing row on ``executor`` (default: in this process, in order) and writes the finished
        ``output``; a run that stops early leaves ``output`` with the rows finished so far (``finished: false``)."""
        started = time.time()
        self._prepare()
        try:
            execute(self, executor, self.log)
        except BaseException:
            self._save_partial()
            raise
        rows, extra = self._rows()
        result = {"kind": self.kind, "settings": self.settings, "rows": rows, "finished": True, **extra}
        if not self.grid:
            result["seconds_this_run"] = round(time.time() - started, 1)
        fileio.write_json(self.output, result)
        return result

    def _prepare(self):
        """Refuses an earlier output or cells folder of other settings, takes the rows of an earlier output as
        finished cells (runs before cells kept their rows there only) and stores the settings."""
        key = (lambda row: rate_key(row["test_rate"], row["train_rate"])) if self.grid else (
            lambda row: rate_key(row["test_rate"]))
        earlier = ResumableRows(self.output, self.kind, self.settings, key, self.growable).done
        ResumableRows(os.path.join(self.folder, CELLS_SETTINGS), self.kind, self.settings, key, self.growable)
        for row in earlier.values():
            path = self._path(self._name(row["train_rate"], row["test_rate"]))
            if not os.path.exists(path):
                fileio.write_json(path, {k: v for k, v in row.items() if k != "meets_accuracy"})
        fileio.write_json(os.path.join(self.folder, CELLS_SETTINGS), {"kind": self.kind, "settings": self.settings})
        finished = len(self._rows()[0])
        if finished:
            where = self.output if os.path.exists(self.output) else self.folder
            self.log(f"resuming: {finished} finished {'cell' if self.grid else 'row'}(s) in {where}")

    def _rows(self):
        """(the finished rows in order, the search's extra fields)."""
        if self.grid:
            rows = [self._stored(e.train_rate, rate) for e in self.evaluators for rate in self.rates]
            return [row for row in rows if row is not None], {}
        rows, rate, a_max = search_state(self._stored_by_rate(), self.epsilon, self.step)
        if rate is not None or not rows:
            return rows, {}
        return rows, {"a_max": a_max, "accuracy_threshold": a_max - self.epsilon,
                      "chosen_test_rate": max(row["test_rate"] for row in rows if row["meets_accuracy"])}

    def _save_partial(self):
        rows = self._rows()[0]
        if rows and not (os.path.exists(self.output) and fileio.read_json(self.output).get("rows") == rows):
            fileio.write_json(self.output, {"kind": self.kind, "settings": self.settings, "rows": rows,
                                            "finished": False})

    def _name(self, train_rate, test_rate):
        return f"train{rate_key(train_rate)}_test{rate_key(test_rate)}"

    def _path(self, name):
        return os.path.join(self.folder, name + ".json")

    def _stored(self, train_rate, test_rate):
        path = self._path(self._name(train_rate, test_rate))
        return fileio.read_json(path) if os.path.exists(path) else None

    def _stored_by_rate(self):
        train_rate = self.evaluators[0].train_rate
        rows = (self._stored(train_rate, rate) for rate in search_rates(self.step))
        return {rate_key(row["test_rate"]): row for row in rows if row is not None}
