"""Tables and plots of the defensive-dropout search and grid (the paper's Tables 3-6 and Figures 3-4)."""

import numpy as np

from hrs_tf import reporting
from hrs_tf.evaluation import des
from hrs_tf.reporting import fmt, plots


def search_markdown(result):
    """Markdown table of an Algorithm-1 run, with the chosen r'."""
    rows = [[f"{r['test_rate']:g}", f"{100 * r['accuracy']:.2f}% +- {100 * r['accuracy_std']:.2f}",
             reporting.percent(r["asr"]), reporting.percent(r["asr_majority"]), fmt(r["mean_l2"]),
             "yes" if r["meets_accuracy"] else "**no** (stop)", f"{r['seconds']:.0f}"] for r in result["rows"]]
    s = result["settings"]
    table = reporting.markdown_table(["test rate r'", "test accuracy", "ASR (single pass)", "ASR (majority)",
                                      "mean L2 of successes", f">= a_max - {s['epsilon']:g}", "time (s)"], rows)
    return (f"{table}\n\nTrain rate r = {result['rows'][0]['train_rate']:g}; a_max = "
            f"{100 * result['a_max']:.2f}% (r' = 0); threshold {100 * result['accuracy_threshold']:.2f}%; "
            f"**chosen r' = {result['chosen_test_rate']:g}**.\n")


def grid_tables(result):
    """Markdown tables (rows: train rate, columns: test rate) of ASR, test accuracy and mean L2."""
    cells = result["rows"]
    train_rates = sorted({c["train_rate"] for c in cells})
    test_rates = result["settings"]["test_rates"]
    lookup = {(c["train_rate"], c["test_rate"]): c for c in cells}
    parts = []
    for title, field, show in (("ASR (single pass)", "asr", reporting.percent),
                               ("test accuracy", "accuracy", reporting.percent),
                               ("mean L2 of successes", "mean_l2", fmt)):
        rows = [[f"train {r:g}"] + [show(lookup[(r, t)][field]) if (r, t) in lookup and lookup[(r, t)][field] is not None
                                    else "-" for t in test_rates] for r in train_rates]
        parts.append(f"{title}:\n\n" + reporting.markdown_table(["dropout rate"] + [f"test {t:g}" for t in test_rates], rows))
    return "\n\n".join(parts) + "\n"


def plot_search(result, path):
    rates = [r["test_rate"] for r in result["rows"]]
    plots.plot_lines(path, {"test accuracy": (rates, [r["accuracy"] for r in result["rows"]]),
                                "ASR (single pass)": (rates, [r["asr"] for r in result["rows"]])},
                         "test dropout rate r'", "fraction",
                         f"Algorithm 1, train rate {result['rows'][0]['train_rate']:g}", ylim=(0, 1.02))


def plot_grid(result, prefix):
    """Figure 3 style: one PNG per quantity, a curve per train rate over the test rate; returns the paths."""
    paths = {}
    cells = result["rows"]
    for field, label in (("accuracy", "test accuracy"), ("asr", "ASR (single pass)"), ("mean_l2", "mean L2 of successes")):
        series = {}
        for r in sorted({c["train_rate"] for c in cells}):
            row = sorted((c for c in cells if c["train_rate"] == r and c[field] is not None), key=lambda c: c["test_rate"])
            series[f"train {r:g}"] = ([c["test_rate"] for c in row], [c[field] for c in row])
        paths[field] = f"{prefix}_{field}.png"
        plots.plot_lines(paths[field], series, "test dropout rate r'", label, label)
    return paths


def plot_gradient_histograms(result, path):
    plots.plot_gradient_histograms(path, {p["label"]: np.array(p["samples"]) for p in result["panels"]},
                                 dim_names=des.pixel_names(result["pixels"], result["image_shape"]))
