"""Compression-rate search of the defensive hash classifier (Wang et al., IEEE TNNLS 2021, Algorithm 1), resumable.

For each pair (CR1, CR2) of the grid -- CR1 from (N1 M1)^-1/2 divided by ``factor`` (the paper: 2) while it stays
above (N1 M1)^-1, CR2 from 1/2 likewise while above (N2 M2)^-1 -- the last two fully connected layers of the trained
``base_model`` are replaced by hashed layers, the model is retrained (``epochs``), and its test accuracy and the
estimator's raw terms g and phi (:mod:`hashdef.robustness`) are measured. Then g and phi are min-max normalised over
the search and R = alpha g' + (1 - alpha) phi' (R = 1 where the accuracy drop is not below T); the chosen pair is the
smallest R.

Algorithm 1 as printed never resets CR2 inside the CR1 loop (after the first CR1 no pair would be trained); the text
("for each CR configuration") describes the full grid, which is what this runs. Each pair (retraining and
measuring) is a cell of its own, a JSON file in ``<output stem>_pairs/`` (:class:`PairSearch`) written when it is
measured, so the pairs run on any executor (:mod:`hrs_tf.experiments.execution`: in this process, or on Ray) and a
killed search continues with the missing pairs; the output file is assembled from them once all are done (the rows
of an earlier output file, finished or not, count as measured).
"""

import math
import os

import numpy as np

from hashdef import robustness
from hashdef.defenses.hash_classifier import layer_shape, rate_text, replaced_layers, with_hashed_classifier
from hrs_tf import checks, fileio
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import metrics
from hrs_tf.experiments.cells import CellStore, check_settings
from hrs_tf.experiments.execution import Cell, Recipe, execute
from hrs_tf.training import checkpoint as checkpoints
from hrs_tf.training import fine_tuning

KIND = "hash_cr_search"
PAIR = "pair"  # the kind of a pair's cell


def rate_grid(shapes, factor=2.0, max_cr1=None, max_cr2=None):
    """(CR1 values, CR2 values) of Algorithm 1 for layer shapes ((N1, M1), (N2, M2)); ``max_cr1`` / ``max_cr2``
    keep only the first that many values of each (a coarser or shorter search)."""
    factor = checks.number(factor, "factor")
    if factor <= 1:
        raise checks.ConfigError(f"factor={factor} must be greater than 1")
    (n1, m1), (n2, m2) = shapes

    def halving(start, stop):
        values, rate = [], start
        while rate > stop * (1 + 1e-9):
            values.append(rate)
            rate /= factor
        return values

    cr1 = halving(1.0 / math.sqrt(n1 * m1), 1.0 / (n1 * m1))
    cr2 = halving(0.5, 1.0 / (n2 * m2))
    if max_cr1 is not None:
        cr1 = cr1[:checks.count(max_cr1, "max_cr1", minimum=1)]
    if max_cr2 is not None:
        cr2 = cr2[:checks.count(max_cr2, "max_cr2", minimum=1)]
    return cr1, cr2


def pairs_dir(output):
    """The folder of the pair cells of the search whose result file is ``output``."""
    return os.path.splitext(output)[0] + "_pairs"


def pair_name(cr1, cr2):
    """The cell name of the pair (CR1, CR2) (the exact rates: two pairs never share one)."""
    return f"cr1={cr1!r}|cr2={cr2!r}"


class PairSearch:
    """The pairs of a search as cells of an executor (:mod:`hrs_tf.experiments.execution`): each retrains and measures
    one pair into ``<output stem>_pairs/cells/pair/``. ``base_model`` (a Keras model) or ``base_model_path`` (read
    here: how a worker gets it); ``earlier``: {(cr1, cr2): row} measured by an earlier run of the same search."""

    def __init__(self, dataset, output, cr1_values, cr2_values, epochs, estimator_images, train_images, seed,
                 batch_size, learning_rate, base_model=None, base_model_path=None, earlier=None, verbose=2, log=print):
        if base_model is None:
            from hrs_tf.models import serialization

            base_model = serialization.load_model(base_model_path)
        self.base_model, self.base_model_path, self.dataset, self.output = base_model, base_model_path, dataset, output
        self.cr1_values, self.cr2_values = list(cr1_values), list(cr2_values)
        self.epochs, self.estimator_images, self.train_images = epochs, estimator_images, train_images
        self.seed, self.batch_size, self.learning_rate = seed, batch_size, learning_rate
        self.earlier, self.verbose, self.log = dict(earlier or {}), verbose, log
        self.cells = CellStore(pairs_dir(output), log, seed=seed)

    def recipe(self):
        """How a worker builds this search: the base model read from its file (absolute paths)."""
        if self.base_model_path is None:
            raise ConfigError("the pairs of a search run elsewhere read the base model from its file: give "
                              "base_model_path")
        return Recipe(PairSearch, dataset=self.dataset, output=os.path.abspath(self.output),
                      cr1_values=self.cr1_values, cr2_values=self.cr2_values, epochs=self.epochs,
                      estimator_images=self.estimator_images, train_images=self.train_images, seed=self.seed,
                      batch_size=self.batch_size, learning_rate=self.learning_rate,
                      base_model_path=os.path.abspath(self.base_model_path), verbose=self.verbose)

    def pairs(self):
        return [(cr1, cr2) for cr1 in self.cr1_values for cr2 in self.cr2_values]

    def cell_plan(self):
        return [Cell(PAIR, pair_name(cr1, cr2), args=(cr1, cr2)) for cr1, cr2 in self.pairs()]

    def done(self, cell):
        return cell.args in self.earlier or self.cells.stored(PAIR, cell.name) is not None

    def compute(self, cell):
        self.measure(*cell.args)

    def measure(self, cr1, cr2):
        """The cell of pair (cr1, cr2): the base model with its last two layers hashed at these rates, retrained;
        its test accuracy and the estimator's terms g and phi (computed if missing)."""
        computed = []

        def compute():
            computed.append(True)
            model = with_hashed_classifier(self.base_model, (cr1, cr2), seed=self.seed)
            history = fine_tuning.fine_tune(model, self.dataset, self.epochs, None, self.batch_size,
                                            self.learning_rate, self.seed, verbose=self.verbose, log=lambda line: None,
                                            train_images=self.train_images)
            terms = robustness.logit_statistics(model, self.dataset.x_test[:self.estimator_images])
            return {"cr1": cr1, "cr2": cr2, "cr1_text": rate_text(cr1), "cr2_text": rate_text(cr2),
                    "accuracy": history[-1]["test_accuracy"], "g": terms["g"], "phi": terms["phi"]}
        cell = self.cells.cell(PAIR, pair_name(cr1, cr2), compute)
        if computed:
            self.log(f"CR ({cell['cr1_text']}, {cell['cr2_text']}): accuracy {cell['accuracy']:.4f}, "
                     f"g {cell['g']:.4g}, phi {cell['phi']:.4g}, {cell['seconds']:.0f} s")
        return cell

    def row(self, cr1, cr2):
        """The row of pair (cr1, cr2) in the output file: its cell's numbers, else the earlier run's row."""
        cell = self.cells.stored(PAIR, pair_name(cr1, cr2))
        if cell is None:
            return dict(self.earlier[(cr1, cr2)])
        return {**{k: cell[k] for k in ("cr1", "cr2", "cr1_text", "cr2_text", "accuracy", "g", "phi")},
                "seconds": round(cell["seconds"], 1)}


def _earlier_rows(output, settings):
    """{(cr1, cr2): row} of the result file ``output`` of an earlier run (finished or not); ConfigError if it holds
    another search (other settings)."""
    if not os.path.exists(output):
        return {}
    try:
        previous = fileio.read_json(output)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read earlier results {output!r}: {e}") from None
    old = previous.get("settings") or {}
    fileio.check_same_settings(old, settings, sorted(set(old) | set(settings)), f"{output!r} holds results",
                               "use another output or the original settings to resume")
    return {(row["cr1"], row["cr2"]): row for row in previous.get("rows", [])}


def search(base_model, dataset, output, epochs=3, factor=2.0, max_cr1=None, max_cr2=None, alpha=0.5, threshold=0.01,
           estimator_images=1000, train_images=None, seed=0, batch_size=128, learning_rate=0.01, log=print,
           base_model_path=None, verbose=2, executor=None):
    """Runs (or resumes) the search into the JSON file ``output``, its pairs on ``executor`` (default: in this
    process; another one needs ``base_model_path``, the file its workers read the base model from); returns the
    finished result (rows with accuracy, g, phi, R; the chosen pair; the settings)."""
    if not str(output).endswith(".json"):
        raise checks.ConfigError(f"output {output!r} must end in .json")
    if base_model_path is None and getattr(executor, "name", "local") != "local":
        raise ConfigError(f"a search on the {executor.name} executor needs base_model_path (its workers read the "
                          "base model from that file)")
    alpha = checks.fraction(alpha, "alpha")
    threshold = checks.nonnegative(threshold, "threshold")
    estimator_images = checks.count(estimator_images, "estimator_images", minimum=1)
    shapes = [layer_shape(layer) for layer in replaced_layers(base_model)]
    cr1_values, cr2_values = rate_grid(shapes, factor, max_cr1, max_cr2)
    x_est = dataset.x_test[:estimator_images]
    settings = {"dataset": dataset.name, "base_model": base_model_path, "base_fingerprint":
                checkpoints.weights_fingerprint(base_model), "layers": [list(s) for s in shapes], "epochs": int(epochs),
                "factor": float(factor), "cr1": cr1_values, "cr2": cr2_values, "estimator_images": estimator_images,
                "train_images": train_images, "seed": int(seed), "batch_size": int(batch_size),
                "learning_rate": float(learning_rate)}
    earlier = _earlier_rows(output, settings)
    pairs = PairSearch(dataset, output, cr1_values, cr2_values, int(epochs), estimator_images, train_images, int(seed),
                       int(batch_size), float(learning_rate), base_model=base_model, base_model_path=base_model_path,
                       earlier=earlier, verbose=verbose, log=log)
    if any(pair not in earlier for pair in pairs.pairs()) or os.path.isdir(pairs_dir(output)):
        check_settings(pairs_dir(output), settings, sorted(settings), "the pairs of a compression-rate search",
                       "use another output or the original settings to resume")
    reference_accuracy = metrics.accuracy(base_model, dataset.x_test, dataset.y_test)
    reference_terms = robustness.logit_statistics(base_model, x_est)
    execute(pairs, executor, log)
    rows = [pairs.row(cr1, cr2) for cr1, cr2 in pairs.pairs()]
    scores = robustness.robustness_scores([r["g"] for r in rows], [r["phi"] for r in rows],
                                          [r["accuracy"] for r in rows], reference_accuracy, alpha, threshold)
    for row, score in zip(rows, scores):
        row["R"] = float(score)
        row["accuracy_drop"] = reference_accuracy - row["accuracy"]
    best = rows[int(np.argmin(scores))]
    chosen = {"cr1": best["cr1"], "cr2": best["cr2"], "cr1_text": best["cr1_text"], "cr2_text": best["cr2_text"],
              "R": best["R"], "accuracy": best["accuracy"], "spec": f"hash:{best['cr1_text']},{best['cr2_text']}"}
    # alpha and T only score the measured rows: a finished search may be rescored with others (not row settings)
    result = {"kind": KIND, "settings": settings, "rows": rows, "finished": True,
              "reference": {"accuracy": reference_accuracy, **reference_terms}, "chosen": chosen,
              "scoring": {"alpha": alpha, "threshold": threshold}}
    fileio.write_json(output, result)
    log(f"chosen CR pair ({chosen['cr1_text']}, {chosen['cr2_text']}): R {chosen['R']:.3f}, accuracy "
        f"{chosen['accuracy']:.4f} (base {reference_accuracy:.4f})")
    return result


def report(result, docs_path, plot_path=None, command=None):
    """Markdown table of a finished search (and a heat map of R) at ``docs_path``; returns the text."""
    from hrs_tf.reporting import markdown_table

    rows = result["rows"]
    settings = result["settings"]
    lines = []
    if command:
        lines += ["```", command, "```", ""]
    ref = result["reference"]
    lines += [f"Base model test accuracy {ref['accuracy']:.4f} (g {ref['g']:.4g}, phi {ref['phi']:.4g} on "
              f"{settings['estimator_images']} test images); {settings['epochs']} retraining epoch(s) per pair"
              + (f" on the first {settings['train_images']} training images" if settings["train_images"] else "")
              + f"; alpha {result['scoring']['alpha']}, T {result['scoring']['threshold']:.2%}.", ""]
    table = [[f"{r['cr1_text']}", f"{r['cr2_text']}", f"{r['accuracy']:.4f}", f"{r['accuracy_drop']:+.4f}",
              f"{r['g']:.4g}", f"{r['phi']:.4g}", f"{r['R']:.3f}"] for r in rows]
    lines.append(markdown_table(["CR1", "CR2", "accuracy", "drop", "g", "phi", "R"], table))
    chosen = result["chosen"]
    lines += ["", f"Chosen: **({chosen['cr1_text']}, {chosen['cr2_text']})**, R {chosen['R']:.3f}, accuracy "
              f"{chosen['accuracy']:.4f}."]
    if plot_path:
        _plot(result, plot_path)
        lines += ["", f"![R over the search]({os.path.basename(plot_path)})"]
    text = "\n".join(lines) + "\n"
    fileio.write_text(docs_path, text)
    return text


def _plot(result, path):
    from hrs_tf.reporting import plots

    rows, settings = result["rows"], result["settings"]
    cr1, cr2 = settings["cr1"], settings["cr2"]
    grid = np.full((len(cr1), len(cr2)), np.nan)
    for r in rows:
        grid[cr1.index(r["cr1"]), cr2.index(r["cr2"])] = r["R"]
    plots.heatmap(grid, [rate_text(v) for v in cr1], [rate_text(v) for v in cr2], path,
                  title="Robustness estimator R (smaller: more robust; 1: accuracy drop >= T)",
                  ylabel="CR1 (first hashed layer)", xlabel="CR2 (second hashed layer)")
