"""``docs/reproduce_hash_<dataset>.md``: the hash paper's tables with our numbers beside the paper's, its figures,
and the adaptive-attack table, written from the stored cells of :class:`.reproduction.Reproduction` (a cell not
computed yet is shown as "-"). A hand-written reading, if ``docs/reproduce_hash/<dataset>_reading.md`` exists, is
included after the command."""

import os

import numpy as np

from hashdef import robustness
from hashdef.experiments.reproduction import ADAPTIVE
from hrs_tf import fileio
from hrs_tf.reporting import markdown_table, plots

# The paper's MNIST numbers (Tables I-IV, VII); it reports no Fashion-MNIST results.
PAPER = {
    "mnist": {
        "table1": {"Original": 99.5, "Hash": 99.25, "GI1": 99.47, "GI2": 99.5, "GI3": 99.44, "Hash + GI1": 99.21,
                   "Hash + GI2": 99.26, "Hash + GI3": 99.25},
        "table2": {  # DeepFool rho, FGSM, BIM, MIM, JSMA-F, JSMA-Z, C&W, EAD, BPDA, AVG
            "Original": (0.0863, 72.8, 97.82, 99.1, 95.44, 90.22, 100, 100, 92.2, 93.45),
            "Hash": (0.1253, 62.66, 87.32, 86.23, 60.89, 32.22, 56.67, 78.44, 25.6, 61.25),
            "GI1": (0.0857, 3.28, 3.14, 3.35, 0.33, 89.11, 100, 100, 83.5, 56.55),
            "GI2": (0.0868, 0.45, 0.63, 1.02, 0.22, 90.56, 100, 100, 89.5, 47.8),
            "GI3": (0.0872, 3.45, 3.24, 3.28, 0.44, 89.44, 24.33, 54.56, 83.7, 32.8),
            "Hash + GI1": (0.1259, 3.25, 3.31, 3.02, 0.89, 25.33, 82.22, 79.67, 22.8, 27.56),
            "Hash + GI2": (0.1269, 0.91, 0.95, 1.15, 0.44, 28.44, 75.33, 76.56, 25.2, 26.12),
            "Hash + GI3": (0.1275, 3.21, 3.4, 3.2, 0.78, 24.44, 5.44, 52.56, 22.1, 14.39)},
        "table3": {"Original": (62.7, 100, 32.22, 83.33), "Hash": (62.1, 100, 28.89, 82.67),
                   "GI3": (62.9, 61.6, 27.78, 14.44), "Hash + GI3": (62.5, 45.8, 28.11, 13.89)},
        "table4": {"Bit depth": (9.1, 33.51, 12.67, 88.2), "Median 2x2": (40.97, 30.24, 49.11, 83.8),
                   "Hash + GI3": (3.21, 24.44, 5.44, 22.1)},
        "table7": {"Original": (72.8, 90.22, 100), "Pruning": (72.9, 90.18, 100), "Quantization 8 bits": (73.51, 90.05, 100),
                   "Quantization 3 bits": (74.84, 89.2, 100)},
    },
}
TABLE2 = ("FGSM", "BIM", "MIM", "JSMA-F", "JSMA-Z", "C&W", "EAD", "BPDA")
TABLE3 = ("sub-FGSM", "ZOO", "sub-C&W", "ZOO targeted")
TABLE4 = ("FGSM", "JSMA-Z", "C&W", "BPDA")
TABLE7 = ("FGSM", "JSMA-Z", "C&W")
SECTION_ORDER = ("table1", "table2", "table3", "table4", "table7", "adaptive", "figure2", "figures34")  # on the page


def _cell_key(rep, column, name, **overrides):
    return column + "".join(f"|{k}={v:.6g}" for k, v in sorted(overrides.items())) + f"|{name}"


def asr(rep, name, column, **overrides):
    """The stored ASR (0..1) of a cell, or None."""
    cell = rep.cells.stored("attacks", _cell_key(rep, column, name, **overrides))
    if cell is None or "asr" not in cell["results"]:
        return None if cell is None else 0.0
    return cell["results"]["asr"]


def distortion(rep, name, column, norm):
    """The mean ``norm`` distortion ("l1", "l2", "l2_relative", ...) of a cell's successful examples, or None."""
    cell = rep.cells.stored("attacks", _cell_key(rep, column, name))
    if cell is None:
        return None
    return ((cell["results"].get("distortion_of_successful") or {}).get(norm) or {}).get("mean")


def rho(rep, name):
    """DeepFool's robustness rho: the mean relative L2 of its successful examples (Table II)."""
    return distortion(rep, name, "DeepFool", "l2_relative")


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _beside(ours, paper):
    """``ours (paper)``, the paper's number as printed there."""
    return ours if paper is None else f"{ours} ({paper:g})"


def _paper(dataset, table, name, index=None):
    values = PAPER.get(dataset, {}).get(table, {}).get(name)
    if values is None:
        return None
    return values if index is None else values[index]


def _paper_note(dataset):
    return ("our number first, the paper's MNIST number in brackets" if dataset in PAPER else
            "the paper reports no numbers for this data set")


def _mean(values):
    known = [v for v in values if v is not None]
    return None if len(known) < len(values) or not known else float(np.mean(known))


def write_report(rep, docs_dir, command):
    """Writes the report and its plots; returns the markdown text. Only the sections of the experiments ``rep`` runs
    are written (a run of ``--experiments=figures34`` gets a page of Figures 3-4, not seven empty tables)."""
    dataset = rep.dataset.name
    stem = f"reproduce_hash_{dataset}"
    figures_dir = os.path.join(docs_dir, "reproduce_hash")
    parts = [f"# Hash compression + gradient inhibition: reproduction on {dataset}", "", "Command:", "", "```", command,
             "```", ""]
    reading = os.path.join(figures_dir, f"{dataset}_reading.md")
    if os.path.exists(reading):
        parts += [open(reading).read().strip(), ""]
    parts += [_scale(rep), ""]
    sections = {"table1": _table1, "table2": _table2, "table3": _table3, "table4": _table4, "table7": _table7,
                "adaptive": _adaptive, "figure2": _figure2, "figures34": _figures34}
    for name in SECTION_ORDER:
        if name in rep.experiments:
            parts += sections[name](rep, figures_dir, dataset)
    text = "\n".join(parts) + "\n"
    fileio.write_text(os.path.join(docs_dir, stem + ".md"), text)
    return text


def _table1(rep, figures_dir, dataset):
    """Table I: clean accuracy, and the robustness estimator's terms."""
    rows = []
    for name in rep.table2_models:
        cell = rep.cells.stored("accuracy", name)
        est = rep.cells.stored("estimator", name)
        ours = "-" if cell is None else f"{100 * cell['accuracy']:.2f}"
        rows.append([name, _beside(ours, _paper(dataset, "table1", name)),
                     "-" if est is None else f"{est['g']:.3g}", "-" if est is None else f"{est['phi']:.3g}"])
    return ["## Table I: clean accuracy (%)", "",
           _paper_note(dataset) + "; g and phi are the robustness estimator's terms (mean |dZ/dx|, logit variance) on "
           "the first test images.", "",
           markdown_table(["model", "accuracy", "g", "phi"], rows), ""]


def _table2(rep, figures_dir, dataset):
    """Table II: white-box ASR and DeepFool robustness."""
    rows = []
    for name in rep.table2_models:
        values = [asr(rep, name, c) for c in TABLE2]
        r = rho(rep, name)
        row = [name, _beside("-" if r is None else f"{r:.4f}", _paper(dataset, "table2", name, 0))]
        row += [_beside(_pct(v), _paper(dataset, "table2", name, k + 1)) for k, v in enumerate(values)]
        row.append(_beside(_pct(_mean(values)), _paper(dataset, "table2", name, 9)))
        rows.append(row)
    return ["## Table II: white-box attack success rate (%) and DeepFool robustness", "", _paper_note(dataset) + ".",
           "",
           markdown_table(["model", "DeepFool rho"] + list(TABLE2) + ["AVG"], rows), ""] + _distortions(rep)


def _distortions(rep):
    """Beyond the paper: how far C&W and EAD had to go. Where they succeed on every pair, their ASR cannot tell the
    models apart and the distortion they needed (Carlini & Wagner's measure of robustness) is what does."""
    fmt = lambda value, digits: "-" if value is None else f"{value:.{digits}f}"  # noqa: E731
    rows = [[name, _pct(asr(rep, name, "C&W")), fmt(distortion(rep, name, "C&W", "l2"), 2),
             _pct(asr(rep, name, "EAD")), fmt(distortion(rep, name, "EAD", "l1"), 1),
             fmt(distortion(rep, name, "EAD", "l2"), 2)] for name in rep.table2_models]
    return ["### Beyond the paper: the distortion C&W and EAD needed", "",
            "Mean over the successful targeted pairs of Table II (the paper gives ASR only); a larger distortion is a "
            "more robust model.", "",
            markdown_table(["model", "C&W ASR", "C&W mean L2", "EAD ASR", "EAD mean L1", "EAD mean L2"], rows), ""]


def _table3(rep, figures_dir, dataset):
    """Table III: black-box ASR."""
    rows = [[name] + [_beside(_pct(asr(rep, name, c)), _paper(dataset, "table3", name, k))
                      for k, c in enumerate(TABLE3)] for name in (rep.original, rep.hash, rep.gi[2], rep.hash_gi[2])]
    return ["## Table III: black-box attack success rate (%)", "",
           markdown_table(["model", "sub-FGSM (untargeted)", "ZOO (untargeted)", "sub-C&W (targeted)",
                           "ZOO (targeted)"], rows), ""]


def _table4(rep, figures_dir, dataset):
    """Table IV: hash + GI3 against feature squeezing."""
    rows = [[name] + [_beside(_pct(asr(rep, name, c)), _paper(dataset, "table4", name, k))
                      for k, c in enumerate(TABLE4)] for name in rep.squeezers + [rep.hash_gi[2]]]
    accs = {name: rep.cells.stored("accuracy", name) for name in rep.squeezers}
    return ["## Table IV: hash + GI3 against input transformations (ASR %)", "",
           "For bit depth and median smoothing the BPDA column is PGD through their identity backward pass (Athalye "
           "et al.'s BPDA for input transforms); for hash + GI3 it is PGD on the sigmoid loss. Clean accuracy: "
           + ", ".join(f"{n} {100 * c['accuracy']:.2f}%" for n, c in accs.items() if c) + ".",
           "", markdown_table(["defense"] + list(TABLE4), rows), ""]


def _table7(rep, figures_dir, dataset):
    """Table VII: pruning and quantisation."""
    accs = {name: rep.cells.stored("accuracy", name) for name in rep.compressed}
    rows = [[name] + [_beside(_pct(asr(rep, name, c)), _paper(dataset, "table7", name, k))
                      for k, c in enumerate(TABLE7)] for name in [rep.original] + rep.compressed]
    return ["## Table VII: pruning and quantisation (ASR %)", "",
           "Clean accuracy: " + ", ".join(f"{n} {100 * c['accuracy']:.2f}%" for n, c in accs.items() if c) + ".", "",
           markdown_table(["model"] + list(TABLE7), rows), ""]


def _adaptive(rep, figures_dir, dataset):
    """Beyond the paper: attacks that do not go through the softmax."""
    plan = rep.plan
    rows = []
    for name in rep.adaptive_models:
        paper_best = [asr(rep, name, c) for c in ("FGSM", "BIM", "MIM", "BPDA")]
        adaptive = [asr(rep, name, c) for c in ADAPTIVE]
        known = [v for v in paper_best + adaptive if v is not None]
        worst = _pct(max(known)) if known else "-"
        rows.append([name] + [_pct(v) for v in paper_best] + [_pct(v) for v in adaptive]
                    + [f">= {worst}" if known and None in adaptive else worst])  # a bound until every attack ran
    return ["## Beyond the paper: attacks that do not go through the softmax", "",
           f"Untargeted L-inf at eps {plan.eps:g}, the first {plan.bpda_images} test images (FGSM/BIM/MIM: "
           f"{plan.fast_images}): the paper's gradient attacks, PGD on the logit margin (100 steps), APGD-DLR "
           f"(100 steps) and the gradient-free Square attack ({plan.square_queries} queries). ASR %; a worst "
           "case '>= x' is over the computed cells of a row whose adaptive attacks have not all run.", "",
           markdown_table(["model", "FGSM", "BIM", "MIM", "BPDA (sigmoid)"] + list(ADAPTIVE) + ["worst case"], rows),
           ""]


def _scale(rep):
    p = rep.plan
    trained = []
    for name in (rep.original, rep.hash) + ((rep.adv,) if rep.adv else ()):
        spec, epochs = rep.models.entries[name]
        given = name in rep.models.existing
        trained.append(f"{name} ({spec.text}, {rep.models.training_epochs(name)} epochs" + (", given" if given else "")
                       + ")")
    return ("**Scale.** Models: " + "; ".join(trained) + f". Architecture: the paper's seven-layer model. L-inf eps "
            f"{p.eps:g} for FGSM / BIM / MIM / BPDA (the paper states none). FGSM / BIM / MIM on the first "
            f"{p.fast_images} test images (paper: the whole test set); DeepFool on {p.deepfool_images}; JSMA / C&W / EAD on "
            f"the correctly classified among the first {p.targeted_images} test images x 9 targets (paper: the first 100 "
            f"correct); C&W and EAD {p.cw_search_steps} x {p.cw_iterations} iterations; BPDA on {p.bpda_images} (paper "
            f"1000); sub-FGSM on {p.substitute_images}; ZOO untargeted on {p.zoo_images} images, targeted on the correct "
            f"among {p.zoo_targeted_images} x 9, at most {p.zoo_queries} queries per example (paper: 1000 and 100 x 9, "
            f"budget not stated); sub-C&W confidence {p.sub_cw_confidence:g}. ASR is judged on one pass; untargeted "
            "success counts every image whose prediction differs from its label.")


def _figure2(rep, figures_dir, dataset):
    cells = {name: rep.cells.stored("gradients", name) for name in [rep.original] + rep.gi}
    cells = {k: v for k, v in cells.items() if v}
    if not cells:
        return ["## Figure 2: gradient magnitudes", "", "Not computed yet.", ""]
    edges = robustness.HISTOGRAM_EDGES
    labels = ["[0, 1e-40]"] + [f"({lo:g}, {hi:g}]" for lo, hi in zip(edges[1:-1], edges[2:])]
    panels = {title: {name: cell[key] for name, cell in cells.items()}
              for title, key in (("|dL/dx|", "loss"), ("|dF/dx|", "probability"), ("|dZ/dx|", "logit"))}
    path = os.path.join(figures_dir, f"{dataset}_gradients.png")
    plots.grouped_bars(path, panels, labels, title="Input-gradient magnitudes (fraction of all input dimensions)")
    rows = [[name] + [f"{cell['means'][k]:.3g}" for k in ("loss", "probability", "logit")]
            + [f"{100 * cell['loss'][0]:.1f}%", f"{100 * cell['logit'][-2] + 100 * cell['logit'][-1]:.1f}%"]
            for name, cell in cells.items()]
    images = next(iter(cells.values()))["images"]
    return ["## Figure 2: gradient magnitudes of the original model and GI1-3", "",
            f"Every input dimension of the first {images} test images (paper: all 10,000), gradients at the true label. "
            "The paper: ~97-99% of |dL/dx| in [0, 1e-40] under GI (original: ~66% in (1e-20, 1e-10]); |dZ/dx| in (0.1, 1] "
            "rises from ~21% to 65-87%.", "",
            markdown_table(["model", "mean |dL/dx|", "mean |dF/dx|", "mean |dZ/dx|", "|dL/dx| in [0, 1e-40]",
                         "|dZ/dx| > 0.1"], rows), "",
            f"![gradient histograms](reproduce_hash/{os.path.basename(path)})", ""]


def _figures34(rep, figures_dir, dataset):
    """Figures 3-4 (FGSM against eps, BIM against its step) and, beside them, the same models under the attacks
    that do not go through the softmax: the paper compares hash + GI with PGD adversarial training on the first
    only."""
    p = rep.plan
    models = rep.figure_models
    fgsm = {name: (list(p.fgsm_grid), [asr(rep, name, "FGSM", eps=e, num_images=p.figure_images) for e in p.fgsm_grid])
            for name in models}
    bim = {name: (list(p.bim_alphas), [asr(rep, name, "BIM", eps_iter=a, num_images=p.figure_images)
                                       for a in p.bim_alphas]) for name in models}
    if not any(v is not None for _, ys in fgsm.values() for v in ys):
        return ["## Figures 3-4: FGSM against eps, BIM against alpha", "", "Not computed yet.", ""]
    clean = lambda series: {k: (xs, [np.nan if v is None else 100 * v for v in ys])  # noqa: E731
                            for k, (xs, ys) in series.items()}
    path = os.path.join(figures_dir, f"{dataset}_fgsm_bim.png")
    plots.plot_panels(path, {"FGSM (Figure 3)": clean(fgsm), f"BIM at eps {p.eps:g} (Figure 4)": clean(bim)},
                      "eps (FGSM) / step alpha (BIM)", "attack success rate (%)", ylim=(0, 100))
    header = ["model"] + [f"FGSM {e:g}" for e in p.fgsm_grid] + [f"BIM alpha {a:g}" for a in p.bim_alphas]
    rows = [[name] + [_pct(v) for v in fgsm[name][1]] + [_pct(v) for v in bim[name][1]] for name in models]
    note = "" if rep.adv else (" PGD adversarial training is not in this run (plan adv_epochs 0): its curves, the paper's "
                               "comparison, were not measured.")
    parts = ["## Figures 3-4: FGSM against eps and BIM against its step", "",
             f"Untargeted, the first {p.figure_images} test images; BIM at eps {p.eps:g}, 10 steps of alpha." + note,
             "", markdown_table(header, rows), "", f"![FGSM and BIM](reproduce_hash/{os.path.basename(path)})", ""]
    adaptive = {name: [asr(rep, name, c) for c in ADAPTIVE] for name in models}
    if any(v is not None for values in adaptive.values() for v in values):
        rows = []
        for name in models:
            cell = rep.cells.stored("accuracy", name)
            known = [v for v in adaptive[name] if v is not None]
            worst = _pct(max(known)) if known else "-"
            rows.append([name, "-" if cell is None else f"{100 * cell['accuracy']:.2f}"]
                        + [_pct(v) for v in adaptive[name]] + [f">= {worst}" if known and None in adaptive[name]
                                                               else worst])
        parts += [f"The same models against the attacks that do not go through the softmax (untargeted, L-inf eps "
                  f"{p.eps:g}, the first {p.bpda_images} test images; ASR %):", "",
                  markdown_table(["model", "clean accuracy (%)"] + list(ADAPTIVE) + ["worst case"], rows), ""]
    return parts
