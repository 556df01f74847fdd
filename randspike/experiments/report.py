"""The report of a Random Spiking study (:mod:`.table2`): ``docs/rs_schemes_<dataset>.md`` with the command at its
top, the scale used, Table 2 beside the paper's, the stability figures and an optional hand-written reading
(``docs/rs_schemes/<dataset>_reading.md``)."""

import math
import os
import shutil

from scipy import stats

from hrs_tf import fileio
from hrs_tf.reporting import markdown_table
from randspike import decision

# Table 2 of the paper: test error in % (mean, std over 16 models) of each scheme's row (its decision rule).
PAPER_TABLE2 = {
    "mnist": {"Standard": (0.77, 0.05), "Dropout": (0.67, 0.07), "Distillation": (0.78, 0.05), "RS-1": (0.88, 0.09),
              "RS-1-Dropout": (0.71, 0.07), "RS-1-Adv": (0.98, 0.11), "MagNet": (0.87, 0.06),
              "Dropout-Adv": (0.69, 0.07), "RC": (0.77, 0.11)},
    "fashion_mnist": {"Standard": (4.94, 0.19), "Dropout": (4.75, 0.09), "Distillation": (4.81, 0.18),
                      "RS-1": (5.34, 0.10), "RS-1-Dropout": (5.32, 0.17), "RS-1-Adv": (5.49, 0.16),
                      "MagNet": (5.36, 0.17), "Dropout-Adv": (4.76, 0.11), "RC": (5.39, 0.23)},
    "cifar10": {"Standard": (4.38, 0.21), "Dropout": (4.46, 0.25), "Distillation": (4.33, 0.27), "RS-1": (5.59, 0.22),
                "RS-1-Dropout": (5.81, 0.27), "RS-1-Adv": (6.20, 0.40), "MagNet": (5.52, 0.24),
                "Dropout-Adv": (4.71, 0.19), "RC": (5.72, 0.46)},
}


def table2_markdown(rows, dataset):
    paper = PAPER_TABLE2.get(dataset, {})
    lines = []
    for row in rows:
        reference = paper.get(row.get("paper_scheme")) if row["paper_rule"] else None
        ours = f"{row['mean']:.2f} +- {row['std']:.2f}%"
        rule = decision.RULE_TITLES.get(row["rule"], row["rule"]) + (" *" if row["paper_rule"] else "")
        lines.append([row["scheme"], rule,
                      ours, "" if reference is None else f"{reference[0]:.2f} +- {reference[1]:.2f}%",
                      str(row["models"]), f"{row['rejected']:.2f}%" if row["rejected"] else "-",
                      ", ".join(f"{e:.2f}" for e in row["errors"])])
    return markdown_table(["scheme", "rule (* = paper's row)", "ours: test error", "paper", "models", "rejected",
                           "per model (%)"], lines)


PAPER_MODELS = 16  # models per scheme behind each mean +- std of the paper's Table 2


def welch_difference(first, second):
    """``second``'s mean minus ``first``'s, each a (mean, std, models) summary, with its standard error and the
    half-width of its 95% interval under Welch's t (unequal variances, Welch-Satterthwaite degrees of freedom)."""
    (m1, s1, n1), (m2, s2, n2) = first, second
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1)) if se > 0 else float("inf")
    return m2 - m1, se, float(stats.t.ppf(0.975, df)) * se


def differences_markdown(rows, dataset, baseline="Standard"):
    """Each scheme's Table 2 row minus the ``baseline`` scheme's, ours and the paper's (16 models each), with 95%
    intervals; None without two models of the baseline and of another scheme."""
    starred = [r for r in rows if r["paper_rule"] and r["models"] >= 2]
    base = next((r for r in starred if r.get("paper_scheme") == baseline), None)
    paper = PAPER_TABLE2.get(dataset, {})
    if base is None or len(starred) < 2:
        return None
    lines = []
    for row in starred:
        if row is base:
            continue
        ours = welch_difference(*[(r["mean"], r["std"], r["models"]) for r in (base, row)])
        cells = [row["scheme"], decision.RULE_TITLES.get(row["rule"], row["rule"]),
                 f"{ours[0]:+.2f} +- {ours[2]:.2f}", f"{ours[1]:.2f}"]
        reference = [paper.get(name) for name in (baseline, row.get("paper_scheme"))]
        if None in reference:
            cells += ["", ""]
        else:
            theirs = welch_difference(*[(m, s, PAPER_MODELS) for m, s in reference])
            cells += [f"{theirs[0]:+.2f} +- {theirs[2]:.2f}", f"{theirs[1]:.2f}"]
        lines.append(cells)
    return markdown_table(["scheme", "rule", "ours: difference (95% interval)", "ours: SE", "paper: difference",
                           "paper: SE"], lines)


def write_report(study, results, docs_dir, command, scale_lines=()):
    """Writes ``docs_dir/rs_schemes_<dataset>.md`` (and copies the stability figure beside it); returns its path."""
    dataset = study.dataset.name
    name = f"rs_schemes_{dataset}"
    figures = os.path.join(docs_dir, "rs_schemes")
    shown = " and ".join(title for key, title in (("table2", "Table 2"), ("stability", "stability")) if key in results)
    parts = [f"# Random Spiking paper: {shown or 'nothing computed yet'} on {dataset} (our reproduction)", "",
             "Command (resumable; rerun it to finish or to rebuild this page):", "", "```", command, "```", "",
             "## Scale", ""]
    parts += [f"- {line}" for line in scale_lines]
    plan = study.plan
    parts += [f"- {plan.models} model(s) per scheme (paper 16), test error on the first {plan.test_images} test images "
              f"(paper 10,000), {plan.passes} passes for MC average / voting, images evaluated in batches of "
              f"{plan.batch_size}" + (" (each image its own spiking range)" if plan.per_image else
                                     " (the spiking range is the batch's, as in the paper's code)") + ".", ""]
    if "table2" in results:
        parts += ["## Table 2: test error (mean +- std over the models)", "",
                  table2_markdown(results["table2"], dataset), ""]
        if any(row["rejected"] for row in results["table2"]):
            parts += ["A rejection of a clean test image (MagNet) counts as an error (the 'rejected' column).", ""]
        differences = differences_markdown(results["table2"], dataset)
        if differences:
            parts += ["### Difference from Standard", "",
                      "Test error of each scheme's row minus Standard's, in points: difference +- half-width of its "
                      "95% interval and standard error (Welch's t over the models; the paper's from its mean +- std "
                      f"of {PAPER_MODELS} models per scheme). An interval that contains 0 does not resolve the sign.",
                      "", differences, ""]
    if "stability" in results:
        source = os.path.join(study.work_dir, "stability", "stability.png")
        if os.path.exists(source):
            os.makedirs(figures, exist_ok=True)
            shutil.copyfile(source, os.path.join(figures, f"{dataset}_stability.png"))
        settings = results["stability"]["settings"]
        parts += ["## Stability (section 5.3, Figures 1-2)", "",
                  f"First {settings['images']} test images (paper 1,000), {settings['draws']} Gaussian draws per L2 "
                  f"level (paper 20), JPEG quality {min(settings['jpeg_qualities'])}.."
                  f"{max(settings['jpeg_qualities'])}; % of predictions unchanged from the clean prediction, mean "
                  "(band: +- std) over each scheme's models.",
                  "", f"![stability](rs_schemes/{dataset}_stability.png)", "",
                  stability_markdown(results["stability"]), ""]
    reading = os.path.join(docs_dir, "rs_schemes", f"{dataset}_reading.md")
    if os.path.exists(reading):
        with open(reading) as f:
            parts += [f.read().strip(), ""]
    else:
        parts += ["## Reading", "", "(not written yet)", ""]
    path = os.path.join(docs_dir, name + ".md")
    fileio.write_text(path, "\n".join(parts))
    return path


def stability_markdown(results):
    """% unchanged per scheme at each level (mean over models), one table per perturbation."""
    tables = []
    for perturbation in ("gaussian", "jpeg"):
        curves = [c for c in results["curves"] if c["perturbation"] == perturbation]
        if not curves:
            continue
        levels = sorted({c["level"] for c in curves}, reverse=perturbation == "jpeg")
        schemes = list(dict.fromkeys(c["scheme"] for c in curves))
        lookup = {(c["scheme"], c["level"]): c for c in curves}
        rows = [[s] + [f"{lookup[(s, level)]['mean']:.1f}" if (s, level) in lookup else "" for level in levels]
                for s in schemes]
        title = "L2" if perturbation == "gaussian" else "quality"
        tables.append(f"{'Gaussian noise' if perturbation == 'gaussian' else 'JPEG'} (% unchanged):\n\n" +
                      markdown_table(["scheme"] + [f"{title} {level:g}" for level in levels], rows))
    return "\n\n".join(tables)
