"""The report of a translucent-box study (:mod:`.study`): ``docs/reproduce_rs_<dataset>.md`` with the command at its
top, the scale used, Tables 4-5 beside the paper's, Figure 3 (transfer per L2 bucket of the three strategies) and
Figure 4 (the cross-scheme heat map of the validation passing rate) as PNGs and CSVs, and the hand-written reading
``docs/reproduce_rs/<dataset>_reading.md``."""

import csv
import io
import os

import numpy as np

from hrs_tf import fileio
from hrs_tf.reporting import markdown_table, plots
from randspike import schemes
from randspike.translucent import strategies

# Tables 4 and 5 of the paper: C&W (K = 0) L2, mean and std, against one model / 8 models at once (section 5.2).
PAPER_TABLE4 = {
    "mnist": {"Standard": (2.12, 0.69), "Dropout": (1.80, 0.52), "Distillation": (2.02, 0.63), "RS-1": (2.06, 0.76),
              "RS-1-Dropout": (1.79, 0.86), "RS-1-Adv": (2.36, 0.80), "MagNet": (2.22, 0.65),
              "Dropout-Adv": (2.44, 0.66)},
    "fashion_mnist": {"Standard": (0.12, 0.08), "Dropout": (0.14, 0.07), "Distillation": (0.13, 0.07),
                      "RS-1": (0.31, 0.16), "RS-1-Dropout": (0.36, 0.21), "RS-1-Adv": (0.56, 0.30),
                      "MagNet": (0.28, 0.15), "Dropout-Adv": (0.33, 0.15)},
    "cifar10": {"Standard": (0.17, 0.08), "Dropout": (0.17, 0.08), "Distillation": (0.17, 0.07), "RS-1": (0.32, 0.14),
                "RS-1-Dropout": (0.32, 0.15), "RS-1-Adv": (0.39, 0.18), "MagNet": (0.29, 0.21),
                "Dropout-Adv": (0.18, 0.07)},
}
PAPER_TABLE5 = {
    "mnist": {"Standard": (2.50, 0.77), "Dropout": (2.29, 0.65), "Distillation": (2.37, 0.71), "RS-1": (2.77, 0.82),
              "RS-1-Dropout": (2.77, 0.93), "RS-1-Adv": (3.18, 0.88), "MagNet": (2.68, 0.75),
              "Dropout-Adv": (2.93, 0.70)},
    "fashion_mnist": {"Standard": (0.22, 0.15), "Dropout": (0.25, 0.13), "Distillation": (0.24, 0.14),
                      "RS-1": (0.54, 0.25), "RS-1-Dropout": (0.61, 0.30), "RS-1-Adv": (1.04, 0.44),
                      "MagNet": (0.54, 0.25), "Dropout-Adv": (0.57, 0.23)},
    "cifar10": {"Standard": (0.25, 0.10), "Dropout": (0.26, 0.10), "Distillation": (0.33, 0.13), "RS-1": (0.49, 0.18),
                "RS-1-Dropout": (0.51, 0.18), "RS-1-Adv": (0.64, 0.23), "MagNet": (0.47, 0.24),
                "Dropout-Adv": (0.29, 0.10)},
}
STRATEGY_TITLES = {strategies.SINGLE: "Single", strategies.MULTI: "Multi-{t}",
                   strategies.VALIDATED: "Multi-{t} + passing {m}/{v} validation"}


def bucket_labels(edges):
    return [f"({a:g}, {b:g}]" for a, b in zip(edges, edges[1:])]


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}%"


def _l2(cell):
    if not cell or cell["mean"] is None:
        return "-"
    return f"{cell['mean']:.2f} +- {cell['std']:.2f} ({cell['found']}/{cell['attacked']} found)"


def tables_markdown(results, dataset, spec_of_label):
    rows = []
    for label in results["schemes"]:
        paper = schemes.paper_name(spec_of_label[label])
        t4, t5 = PAPER_TABLE4.get(dataset, {}).get(paper), PAPER_TABLE5.get(dataset, {}).get(paper)
        cells = results["tables"][label]
        rows.append([label, _l2(cells["single"]), "" if t4 is None else f"{t4[0]:.2f} +- {t4[1]:.2f}",
                     _l2(cells["multi"]), "" if t5 is None else f"{t5[0]:.2f} +- {t5[1]:.2f}"])
    return markdown_table(["scheme", "ours: L2 vs one model (Table 4)", "paper", "ours: L2 vs Multi-t (Table 5)",
                           "paper"], rows)


def titles(roles):
    return {s: STRATEGY_TITLES[s].format(t=roles.sources, m=roles.threshold, v=roles.validators)
            for s in strategies.STRATEGIES}


def figure3_markdown(results, roles):
    labels = bucket_labels(results["edges"])
    names = titles(roles)
    rows = []
    for label in results["schemes"] + ["mean"]:
        for s in strategies.STRATEGIES:
            rates = results["figure3"][label][s]
            counts = results["counts"].get(label, {})
            count = counts.get(strategies.SINGLE if s == strategies.SINGLE else
                               (strategies.MULTI if s == strategies.MULTI else "passed"))
            rows.append([label if label != "mean" else "**mean over schemes**", names[s]] +
                        [_pct(r) + (f" (n={count[b]})" if count else "") for b, r in enumerate(rates)])
    return markdown_table(["scheme", "strategy"] + [f"L2 {b}" for b in labels], rows)


def figure3_png(results, roles, path):
    edges = results["edges"]
    middles = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    names = titles(roles)
    series = {}
    for s in strategies.STRATEGIES:
        points = [(m, 100 * r) for m, r in zip(middles, results["figure3"]["mean"][s]) if r is not None]
        if points:
            series[names[s]] = ([p[0] for p in points], [p[1] for p in points])
    plots.plot_lines(path, series, "L2 distance (bucket middle)", "transfer rate (%)",
                     "Figure 3: transferability by strategy (mean over schemes)", ylim=(0, 100))


def figure4_rows(results):
    """CSV rows: source, target, bucket, passing rate, transfer rate of the passing examples."""
    rows = []
    for source in results["schemes"]:
        for target in results["schemes"]:
            cell = results["figure4"][source][target]
            for b, label in enumerate(bucket_labels(results["edges"])):
                rows.append([source, target, label, cell["passing"][b], cell["transfer"][b]])
    return rows


def figure4_csv(results, path):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["source_scheme", "target_scheme", "l2_bucket", "passing_rate", "transfer_rate_of_passing"])
    for row in figure4_rows(results):
        writer.writerow(["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v) for v in row])
    fileio.write_text(path, out.getvalue())


def figure4_png(results, path):
    """Writes :func:`figure4_figure` at ``path``."""
    plots.save_png(figure4_figure(results), path)


EMPTY_CELL = "#f2c9a0"  # Figure 4's colour of a bucket without examples (hatched, its "none" on a patch of it)


def figure4_figure(results):
    """One grayscale panel per L2 bucket (one column, as the paper's): source scheme (rows) x target scheme
    (columns), passing rate 0% black to 100% white (the paper's linear mapping); hatched orange with "none" where
    the bucket holds no example. The reports' font sizes (:data:`hrs_tf.reporting.plots.FONT`), cells wide enough
    for a three-digit rate at that size; at least 4 inches wide, so that the two-line title fits over two schemes."""
    plt = plots.pyplot()
    font = plots.FONT
    names, labels = results["schemes"], bucket_labels(results["edges"])
    fig, axes = plt.subplots(len(labels), 1, figsize=(max(4.0, 2.2 + 0.75 * len(names)),
                                                      1.3 + (0.45 * len(names) + 0.25) * len(labels)), dpi=100,
                             squeeze=False, layout="constrained")
    for b, ax in enumerate(axes[:, 0]):
        values = np.array([[np.nan if results["figure4"][s][t]["passing"][b] is None else
                            100 * results["figure4"][s][t]["passing"][b] for t in names] for s in names])
        ax.set_facecolor(EMPTY_CELL)  # shows through the masked (empty) cells: not a shade of the gray scale
        ax.patch.set_hatch("//")
        ax.imshow(np.ma.masked_invalid(values), cmap="gray", vmin=0, vmax=100, aspect="auto")
        for (r, c), value in np.ndenumerate(values):
            finite = np.isfinite(value)
            ax.text(c, r, f"{value:.0f}" if finite else "none", ha="center", va="center", fontsize=font["ticks"],
                    color="black" if not finite or value > 50 else "white",
                    bbox=None if finite else {"facecolor": EMPTY_CELL, "edgecolor": "none", "pad": 1})
        ax.set_yticks(range(len(names)), names, fontsize=font["ticks"])
        ax.set_xticks(range(len(names)), names if b == len(labels) - 1 else [""] * len(names),
                      fontsize=font["ticks"], rotation=40, ha="right", rotation_mode="anchor")
        ax.set_ylabel(f"L2 {labels[b]}\nsource", fontsize=font["label"])
    axes[-1, 0].set_xlabel("target scheme", fontsize=font["label"])
    axes[0, 0].set_title("Figure 4: passing rate (%)\nof the validation", fontsize=font["title"])
    return fig


def figure4_markdown(results):
    rows = []
    for source, target, bucket, passing, transfer in figure4_rows(results):
        rows.append([source, target, bucket, _pct(passing), _pct(transfer)])
    return markdown_table(["source", "target", "L2 bucket", "passing rate", "transfer of passing"], rows)


def outcomes_section(results, names):
    """The section on rejecting target schemes (MagNet): for every target scheme that refused at least one judged
    example, how its held-out models judged each source scheme's Multi-t examples (every L2), and how its models
    other than the Single sources judged its own Single examples. [] when no scheme rejected anything (the section
    says nothing then) or the results predate the outcome counts."""
    outcomes, single = results.get("outcomes", {}), results.get("single_outcomes", {})
    schemes = results["schemes"]
    rejecting = [t for t in schemes if any((outcomes.get(s, {}).get(t) or {}).get("rejected") for s in schemes)
                 or (single.get(t) or {}).get("rejected")]
    if not rejecting:
        return []
    judged = [(source, names[strategy], target, cell) for target in rejecting
              for source, strategy, cell in [(s, "multi", outcomes.get(s, {}).get(target)) for s in schemes]
              + [(target, "single", single.get(target))] if cell]
    rows = [[source, strategy, target, cell["judgements"], _pct(cell["target"]), _pct(cell["rejected"]),
             _pct(cell["other"])] for source, strategy, target, cell in judged]
    lines = ["## Rejections: how the rejecting schemes judged the examples", "",
             f"Every {names['multi']} example of the source scheme (all L2, all confidences) on each held-out model of "
             f"the target scheme, and every {names['single']} example of a rejecting scheme on its models other than "
             "the Single sources: the share of these (model, example) judgements that gave the attack's target, "
             "rejected the example (not a success), or gave another class. Only target schemes that rejected at "
             "least one example are listed.", "",
             markdown_table(["source", "examples", "target", "judgements", "target class", "rejected", "other class"],
                            rows), ""]
    if all("by_bucket" in cell for *_, cell in judged):
        rows = [[source, strategy, target] + [f"{_pct(b['rejected'])} (n={b['judgements']})" if b["judgements"]
                                              else "-" for b in cell["by_bucket"]]
                for source, strategy, target, cell in judged]
        lines += ["The rejected share of the same judgements by the example's L2 (n = judgements in the bucket):", "",
                  markdown_table(["source", "examples", "target"] + [f"L2 {b}" for b in bucket_labels(
                      results["edges"])], rows), ""]
    return lines


def held_out_section(results, names):
    """Every held-out model of each target scheme alone: the share of all source schemes' Multi-t examples (all L2,
    all confidences) it labels as the attack's target. A member far below the rest of its fleet (a failed training
    run) makes its scheme look harder to transfer to in Figure 4. [] for results that predate these counts."""
    held_out = results.get("held_out")
    if not held_out:
        return []
    models = sorted({k for counts in held_out.values() for k in counts}, key=int)
    rows = [[target] + [f"{_pct(c['fooled'] / c['judged'])} (n={c['judged']})" if c and c["judged"] else "-"
                        for c in (held_out[target].get(k) for k in models)]
            for target in results["schemes"] if target in held_out]
    return ["## Held-out models one by one", "",
            f"Every source scheme's {names['multi']} examples (all L2, all confidences) on each held-out model of the "
            "target scheme, judged by its decision rule: the share labelled as the attack's target (n = judged "
            "examples). A model far below the rest of its fleet is a failed training run, not a robust one.", "",
            markdown_table(["target scheme"] + [f"model {k}" for k in models], rows), ""]


def fleet_lines(study):
    """The scale lines of a study's report: what each scheme's fleet was made with, read from its manifest and the
    models' training records."""
    lines = []
    for spec in study.specs:
        fleet = study.fleets[spec.label]
        manifest = fleet.manifest()
        members = manifest.get("members", [])
        images = sorted({m.get("train_images") for m in members})
        errors, rejections, unlearned, added = {}, [], 0, []  # errors: {model: test error %}
        for k in [m["model"] for m in members]:
            path = fleet.file(k)
            record = (spec.defense.record(path) if path and os.path.exists(path) else None) or {}
            if record.get("test_error_single") is not None:
                errors[k] = 100 * record["test_error_single"]
            elif isinstance(record.get("clean_accuracy"), dict):
                errors[k] = 100 * (1 - record["clean_accuracy"]["mean"])
            elif record.get("test_accuracy_single") is not None:  # MagNet: a rejection counts as an error
                errors[k] = 100 * (1 - record["test_accuracy_single"])
                rejections.append(100 * record.get("test_rejection_rate", 0.0))
                unlearned += bool(record.get("unlearned_autoencoders"))
            if isinstance(record.get("adversarial_examples"), dict):  # the adversarially trained schemes
                added.append(record["adversarial_examples"])
        epochs = manifest.get("epochs")
        lines.append(f"{spec.label} (`{spec.text}`): {len(members)} of {study.plan.models} models trained"
                     + (f", {epochs} epochs" if epochs else " (made from its source models without training)")
                     + (f" on {', '.join(str(i) for i in images)} images each" if images else "")
                     + (f"; test error {min(errors.values()):.2f}-{max(errors.values()):.2f}% (from the training "
                        "records: single prediction, or one stochastic pass)" if errors else "")
                     + (f", {min(rejections):.2f}-{max(rejections):.2f}% of the clean test images rejected (counted "
                        "as errors)" if rejections else "")
                     + (f"; **{unlearned} of {len(members)} models have autoencoders no better than the mean training "
                        "image: not a working MagNet, its rows say nothing about MagNet**" if unlearned else "")
                     + (_added_examples(added) if added else "")
                     + _failed_members(errors))
    return lines


def _failed_members(errors):
    """``errors`` ({model: test error %}): members above 20% and 5x the fleet's median are failed training runs,
    named (they weigh on every rotation they validate in; see the held-out models section)."""
    if len(errors) < 3:
        return ""
    median = float(np.median(list(errors.values())))
    failed = [(k, e) for k, e in errors.items() if e > max(20.0, 5 * median)]
    return "".join(f"; **model {k} failed to train ({e:.2f}% test error, the fleet's median {median:.2f}%)**"
                   for k, e in failed)


def _added_examples(summaries):
    """What the adversarially trained members added to their training sets (their records' C&W summaries)."""
    kept = [s["kept"] for s in summaries]
    generated = sorted({s["generated"] for s in summaries})
    l2 = [s["l2_mean_kept"] for s in summaries if s.get("l2_mean_kept") is not None]
    return (f"; C&W examples added to each model's training set: {min(kept)}-{max(kept)} (of "
            f"{'/'.join(str(g) for g in generated)} crafted, kept under L2 {summaries[0]['l2_cutoff']:g})"
            + (f", mean L2 of the added {min(l2):.2f}-{max(l2):.2f}" if l2 else ""))


def write_report(study, results, docs_dir, command, scale_lines=()):
    """Writes ``docs_dir/reproduce_rs_<dataset>.md`` with its figures and CSV under ``docs_dir/reproduce_rs/``;
    returns its path."""
    dataset, plan, roles = study.dataset.name, study.plan, study.roles
    figures = os.path.join(docs_dir, "reproduce_rs")
    figure3_png(results, roles, os.path.join(figures, f"{dataset}_figure3.png"))
    figure4_png(results, os.path.join(figures, f"{dataset}_figure4.png"))
    figure4_csv(results, os.path.join(figures, f"{dataset}_figure4.csv"))
    fileio.write_json(os.path.join(figures, f"{dataset}_results.json"), results)
    spec_of_label = {spec.label: spec for spec in study.specs}
    names = titles(roles)
    parts = [f"# Random Spiking paper: translucent-box evaluation on {dataset} (our reproduction)", "",
             "Command (resumable; rerun it to finish, add `--report_only` to rebuild this page):", "", "```", command,
             "```", "", "## Scale", ""]
    parts += [f"- {line}" for line in scale_lines]
    parts += [f"- Fleets: {plan.models} models per scheme (paper 16), each trained with its own seed on a random "
              f"{plan.train_fraction:g} of the training images (paper: a random half); Multi-t attacks the first "
              f"{roles.sources} (paper 8), Single each of the first {roles.single_sources} alone (paper 4); "
              f"validation: at least {roles.threshold} of {roles.validators} (paper 5 of 7).",
              f"- Attack: targeted C&W-L2 on the first {plan.images} test images (random target other than the true "
              f"label, the same for every scheme), confidences K = {', '.join(f'{k:g}' for k in plan.confidences)}, "
              f"{plan.cw_iterations} iterations (paper 1000), {plan.cw_search_steps} binary-search steps (paper 9), "
              f"Adam step {plan.cw_learning_rate:g} (paper 0.01), initial c {plan.cw_initial_const:g}, abort early; "
              f"EOT over {plan.eot} passes per step on stochastic surrogates; images rounded to 8 bits before "
              "anything is measured.",
              f"- Targets judged with their scheme's decision rule (Table 2's row: MC average / voting over "
              f"{plan.passes} passes, MagNet's rejection never a success), images in batches of {plan.batch_size}.",
              f"- L2 buckets: {', '.join(bucket_labels(results['edges']))} ("
              + ("the paper's four Figure 4 rows have no stated edges: four equal buckets up to Table 3's cut-off"
                 if tuple(results["edges"]) == strategies.default_edges(dataset) else
                 f"set with --l2_edges; Table 3's cut-off is {strategies.L2_CUTOFF[dataset]:g}, the default buckets "
                 "split it in four") + ").", ""]
    parts += ["## Tables 4 and 5: white-box C&W (K = 0), L2 of the found examples (mean +- std)", "",
              tables_markdown(results, dataset, spec_of_label), "",
              "## Figure 3: transfer rate per L2 bucket of the three strategies", "",
              f"Single: examples of each Single source on the models other than the Single sources; {names['multi']}: "
              f"on the {roles.models - roles.sources} held-out models; {names['validated']}: each held-out model "
              "in turn the target, the transfer rate of the examples that passed the other models' validation, "
              "averaged over the rotations (n = examples, resp. passing (example, rotation) pairs).", "",
              f"![figure 3](reproduce_rs/{dataset}_figure3.png)", "", figure3_markdown(results, roles), "",
              "## Figure 4: passing rate of the validation, source scheme x target scheme", "",
              f"Examples made by {names['multi']} on the source scheme's fleet; validation on the target scheme's "
              "held-out models (each in turn left out as the target); passing rate = fraction of the bucket's "
              "examples that pass, averaged over the rotations. CSV: "
              f"[reproduce_rs/{dataset}_figure4.csv](reproduce_rs/{dataset}_figure4.csv).", "",
              f"![figure 4](reproduce_rs/{dataset}_figure4.png)", "", figure4_markdown(results), ""]
    parts += held_out_section(results, names)
    parts += outcomes_section(results, names)
    reading = os.path.join(figures, f"{dataset}_reading.md")
    if os.path.exists(reading):
        with open(reading) as f:
            parts += [f.read().strip(), ""]
    else:
        parts += ["## Reading", "", "(not written yet)", ""]
    path = os.path.join(docs_dir, f"reproduce_rs_{dataset}.md")
    fileio.write_text(path, "\n".join(parts))
    return path
