"""The reprogramming report (HRS paper Figure 6 style): per source task, the runs' accuracy table and curves."""

import os

from hrs_tf import reporting
from hrs_tf.errors import ConfigError
from hrs_tf.reporting import plots


def curve_label(record):
    """The name of a reprogramming run's target in tables and plots (its defense's label, given when it was run)."""
    return record.get("target_label") or record.get("target", "?")


def relabelled(records, labels):
    """``records`` with the report names ``labels`` (one per record, in order; a record's own ``target_label`` is
    the name it was run under, which changing here does not make a new run); ``labels`` empty: as they are."""
    labels = [str(label).strip() for label in labels or ()]
    if not labels:
        return list(records)
    if len(labels) != len(records) or not all(labels):
        raise ConfigError(f"{len(labels)} labels for {len(records)} records: give one non-empty label per record, "
                          "in the order of the records")
    return [dict(r, target_label=label) for r, label in zip(records, labels)]


def _reprogramming_records(records):
    return [r for r in records if r.get("kind") == "reprogramming"]


def curves_plot(records, path, title="Adversarial reprogramming"):
    """PNG of the test accuracy of every record over training epochs (epoch 0: the untrained transform)."""
    series = {}
    for r in _reprogramming_records(records):
        series[curve_label(r)] = ([0] + [h["epoch"] for h in r["history"]],
                                  [r["initial_test_accuracy"]] + [h["test_accuracy"] for h in r["history"]])
    plots.plot_lines(path, series, "reprogramming epoch", "test accuracy (source task)", title, ylim=(0, 1))


def curves_table(records, epochs=(1, 5, 10)):
    """Markdown table: reprogramming test accuracy after selected epochs, the last and the best epoch."""
    rows = []
    for r in _reprogramming_records(records):
        by_epoch = {h["epoch"]: h["test_accuracy"] for h in r["history"]}
        seconds = sorted(h["seconds"] for h in r["history"])
        rows.append([curve_label(r), reporting.percent(r["initial_test_accuracy"])]
                    + [reporting.percent(by_epoch[e]) if e in by_epoch else "-" for e in epochs]
                    + [f"{reporting.percent(r['test_accuracy'])} ({len(r['history'])})",
                       reporting.percent(r["best_test_accuracy"]), f"{seconds[len(seconds) // 2]:.0f} s"])
    headers = (["target", "untrained"] + [f"epoch {e}" for e in epochs]
               + ["last epoch (n)", "best epoch", "median epoch time"])
    return reporting.markdown_table(headers, rows)


def report_markdown(records, plot_path, command, epochs=(1, 5, 10)):
    """The reprogramming report (HRS paper Figure 6 style): per source task, the runs' settings, the accuracy
    table and the curve plot (written beside ``plot_path``, one PNG per task), and the command that made it."""
    records = _reprogramming_records(records)
    if not records:
        raise ConfigError("no reprogramming records (JSON files written by tools/reprogram.py) were given")
    tasks = {}
    for r in records:
        tasks.setdefault(r["source_dataset"], []).append(r)
    parts = [f"Made by: `{command}`", ""]
    stem, ext = os.path.splitext(plot_path)
    for source, group in tasks.items():
        path = plot_path if len(tasks) == 1 else f"{stem}_{source}{ext}"
        curves_plot(group, path, title=f"Adversarial reprogramming to {source}")
        first = group[0]
        rows = [[curve_label(r), r["target_model"], r["kernel_size"], r["num_train"], r["seed"]] for r in group]
        parts += [
            f"### Reprogrammed to classify {source}", "",
            f"Identity output map, {first['kernel_size']}x{first['kernel_size']} locally connected input transform; "
            f"test accuracy over {first['num_test']} test images, {first['evaluation']}.", "",
            reporting.markdown_table(["target", "frozen model", "kernel", "train images", "seed"], rows), "",
            curves_table(group, epochs), "",
            f"![reprogramming to {source}]({os.path.basename(path)})", ""]
    return "\n".join(parts)
