"""Compression-rate search of the defensive hash classifier (Wang et al., IEEE TNNLS 2021, Algorithm 1), resumable.

For each pair (CR1, CR2) of the grid -- CR1 from (N1 M1)^-1/2 divided by ``factor`` (the paper: 2) while it stays
above (N1 M1)^-1, CR2 from 1/2 likewise while above (N2 M2)^-1 -- the last two fully connected layers of the trained
``base_model`` are replaced by hashed layers, the model is retrained (``epochs``), and its test accuracy and the
estimator's raw terms g and phi (:mod:`hashdef.robustness`) are measured. Then g and phi are min-max normalised over
the search and R = alpha g' + (1 - alpha) phi' (R = 1 where the accuracy drop is not below T); the chosen pair is the
smallest R.

Algorithm 1 as printed never resets CR2 inside the CR1 loop (after the first CR1 no pair would be trained); the text
("for each CR configuration") describes the full grid, which is what this runs. Each measured pair is a row saved
at once (:class:`hrs_tf.experiments.rows.ResumableRows`): a killed search continues with the next pair.
"""

import math
import os
import time

import numpy as np

from hashdef import robustness
from hashdef.defenses.hash_classifier import layer_shape, rate_text, replaced_layers, with_hashed_classifier
from hrs_tf import checks, fileio
from hrs_tf.evaluation import metrics
from hrs_tf.experiments.rows import ResumableRows
from hrs_tf.training import checkpoint as checkpoints
from hrs_tf.training import fine_tuning

KIND = "hash_cr_search"


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


def search(base_model, dataset, output, epochs=3, factor=2.0, max_cr1=None, max_cr2=None, alpha=0.5, threshold=0.01,
           estimator_images=1000, train_images=None, seed=0, batch_size=128, learning_rate=0.01, log=print,
           base_model_path=None, verbose=2):
    """Runs (or resumes) the search into the JSON file ``output``; returns the finished result (rows with accuracy,
    g, phi, R; the chosen pair; the settings)."""
    if not str(output).endswith(".json"):
        raise checks.ConfigError(f"output {output!r} must end in .json")
    alpha = checks.fraction(alpha, "alpha")
    threshold = checks.nonnegative(threshold, "threshold")
    estimator_images = checks.count(estimator_images, "estimator_images", minimum=1)
    shapes = [layer_shape(layer) for layer in replaced_layers(base_model)]
    cr1_values, cr2_values = rate_grid(shapes, factor, max_cr1, max_cr2)
    x_est = dataset.x_test[:estimator_images]
    settings = {"dataset": dataset.name, "base_model": base_model_path, "base_fingerprint":
                checkpoints.weights_fingerprint(base_model), "layers": [list(s) for s in shapes], "epochs": int(epochs),
                "factor": float(factor), "cr1": cr1_values, "cr2": cr2_values, "estimator_images": estimator_images, "train_images": train_images, "seed": int(seed),
                "batch_size": int(batch_size), "learning_rate": float(learning_rate)}
    rows = ResumableRows(output, KIND, settings, key=lambda row: (row["cr1"], row["cr2"]),
                         growable=())
    reference_accuracy = metrics.accuracy(base_model, dataset.x_test, dataset.y_test)
    reference_terms = robustness.logit_statistics(base_model, x_est)
    total, started = len(cr1_values) * len(cr2_values), time.time()
    for i, cr1 in enumerate(cr1_values):
        for j, cr2 in enumerate(cr2_values):
            done = rows.get((cr1, cr2))
            if done is not None:
                rows.add(done, fresh=False)
                continue
            began = time.time()
            model = with_hashed_classifier(base_model, (cr1, cr2), seed=seed)
            history = fine_tuning.fine_tune(model, dataset, epochs, None, batch_size, learning_rate, seed,
                                            verbose=verbose, log=lambda line: None, train_images=train_images)
            terms = robustness.logit_statistics(model, x_est)
            row = {"cr1": cr1, "cr2": cr2, "cr1_text": rate_text(cr1), "cr2_text": rate_text(cr2),
                   "accuracy": history[-1]["test_accuracy"], "g": terms["g"], "phi": terms["phi"],
                   "seconds": round(time.time() - began, 1)}
            rows.add(row)
            k = len(rows.rows)
            elapsed = time.time() - started
            log(f"[{k}/{total}] CR ({row['cr1_text']}, {row['cr2_text']}): accuracy {row['accuracy']:.4f}, "
                f"g {row['g']:.4g}, phi {row['phi']:.4g}, {row['seconds']:.0f} s; about "
                f"{elapsed / k * (total - k) / 60:.0f} min left")
    scores = robustness.robustness_scores([r["g"] for r in rows.rows], [r["phi"] for r in rows.rows],
                                          [r["accuracy"] for r in rows.rows], reference_accuracy, alpha, threshold)
    for row, score in zip(rows.rows, scores):
        row["R"] = float(score)
        row["accuracy_drop"] = reference_accuracy - row["accuracy"]
    best = rows.rows[int(np.argmin(scores))]
    chosen = {"cr1": best["cr1"], "cr2": best["cr2"], "cr1_text": best["cr1_text"], "cr2_text": best["cr2_text"],
              "R": best["R"], "accuracy": best["accuracy"], "spec": f"hash:{best['cr1_text']},{best['cr2_text']}"}
    # alpha and T only score the measured rows: a finished search may be rescored with others (not row settings)
    result = rows.finish(reference={"accuracy": reference_accuracy, **reference_terms}, chosen=chosen,
                         scoring={"alpha": alpha, "threshold": threshold})
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
