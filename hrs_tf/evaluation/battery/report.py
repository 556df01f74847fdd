"""``docs/battery_<dataset>.md``: the leaderboard (defense, clean accuracy, robust accuracy under the battery per
threat, the decisive attack, PGD-CE alone beside it, the gradient-masking flags raised), robust accuracy per attack,
the flags with their numbers, the costs, and a plot (``docs/battery/<dataset>.png``); the same numbers as JSON for
scripts (``docs/battery/<dataset>.json``: per defense its target facts and, per threat, the summary and the flags).

A hand-written reading kept in ``docs/battery/<dataset>_reading.md`` is included as it is (so rewriting the page
from the cells never loses it)."""

import os

import numpy as np

from hrs_tf import fileio
from hrs_tf.evaluation.battery.attacks import ENTRIES
from hrs_tf.evaluation.battery.plan import UNBOUNDED_LINF
from hrs_tf.reporting import markdown_table, percent, plots

THREAT_TITLES = {"linf": "L-inf", "l2": "L2"}


def _threat_title(plan, threat):
    return f"{THREAT_TITLES[threat]} {plan.eps(threat):g}"


def leaderboard_rows(battery, results):
    """Rows sorted by the battery's robust accuracy under the first threat, then the next (best first)."""
    plan = battery.plan
    rows = []
    for label, r in results.items():
        row = [label, percent(r["clean"]["correct"].count(True) / len(r["clean"]["correct"]), 1)]
        key = []
        for threat in plan.threats:
            if threat not in r:
                row += ["-", "-", "-"]
                key.append(0.0)
                continue
            s = r[threat]["summary"]
            partial = f" (partial: {len(s['missing'])} attacks not run)" if s.get("missing") else ""
            row += [percent(s["robust_accuracy"], 1) + partial, ENTRIES[s["decisive"]].title if s["decisive"] else "-",
                    percent(s["per_attack"]["pgd_ce"], 1) if "pgd_ce" in s["per_attack"] else "-"]
            key.append(-s["robust_accuracy"])
        flags = sorted({name for threat in plan.threats if threat in r
                        for name, f in r[threat]["flags"].items() if f["raised"]})
        row.append(", ".join(flags) or "none")
        rows.append((key, row))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def write_report(battery, docs_dir, command):
    """Writes the page and its plot; returns the page's path."""
    plan, results = battery.plan, battery.results()
    name = plan.name()
    headers = ["defense", "clean"]
    for threat in plan.threats:
        t = _threat_title(plan, threat)
        headers += [f"robust {t}", f"decisive {t}", f"PGD-CE alone {t}"]
    headers.append("masking flags")
    lines = [f"# Adaptive-attack battery: {name}", "", "```", command, "```", "",
             f"Scale: the first {plan.images} test images; PGD {plan.steps} steps x {plan.restarts} restarts, "
             f"APGD {plan.steps} iterations x {plan.restarts} restarts, Square {plan.square_queries} queries, EOT grid "
             f"{', '.join(map(str, plan.eot_grid))}, BPDA with {plan.bpda_eot} EOT samples on stochastic models; "
             f"stochastic models decided by the '{plan.rule}' rule over {plan.passes} passes; a masking check counts a "
             f"difference of at least {plan.counts(plan.images)} images; seed {plan.seed}. Robust accuracy is the "
             "fraction of the images the defense decides correctly on the clean image and after every attack "
             "(the worst case per image); a rejection is never correct.", "",
             "## Leaderboard", "", markdown_table(headers, leaderboard_rows(battery, results)), "",
             f"![battery](battery/{name}.png)", ""]
    reading = os.path.join(docs_dir, "battery", f"{name}_reading.md")
    if os.path.exists(reading):
        with open(reading) as f:
            lines += [f.read().rstrip(), ""]
    for threat in plan.threats:
        lines += [f"## Robust accuracy per attack, {_threat_title(plan, threat)}", ""]
        names = [n for n in ENTRIES if any(n in r.get(threat, {}).get("summary", {}).get("per_attack", {})
                                           for r in results.values())]
        rows = []
        for label, r in results.items():
            s = r.get(threat, {}).get("summary")
            if s is None:
                continue
            rows.append([label] + [percent(s["per_attack"][n], 1) if n in s["per_attack"] else "n/a" for n in names]
                        + [percent(s["robust_accuracy"], 1)])
        lines += [markdown_table(["defense"] + [ENTRIES[n].title for n in names] + ["worst case"], rows), ""]
        lines += ["n/a: the attack does not apply (EOT and fixed randomness need a stochastic model, BPDA a layer "
                  "that declares a surrogate, transfer a --transfer_from model).", ""]
    lines += ["## Gradient-masking checks", "",
              f"Unbounded: PGD-margin at L-inf radius {UNBOUNDED_LINF:g} on the images the defense is correct on "
              "and could be moved off (another image gets another decision). See `hrs_tf/evaluation/battery/"
              "summary.py` for every check.", ""]
    rows = []
    for label, r in results.items():
        for threat in plan.threats:
            for flag, f in r.get(threat, {}).get("flags", {}).items():
                numbers = ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("raised", "text"))
                rows.append([label, THREAT_TITLES[threat], flag, "**raised**" if f["raised"] else "no", numbers])
    lines += [markdown_table(["defense", "threat", "check", "flag", "numbers"], rows), ""]
    lines += ["## Cost", "", "Mean gradient evaluations (or model queries) per image of each attack, and the "
              "compute time of the defense's cells.", ""]
    rows = []
    for label, r in results.items():
        seconds = sum(c.get("seconds", 0) for threat in plan.threats for c in r.get(threat, {}).get("attacks",
                                                                                                       {}).values())
        for threat in plan.threats:
            cost = r.get(threat, {}).get("summary", {}).get("cost", {})
            if cost:
                rows.append([label, THREAT_TITLES[threat],
                             ", ".join(f"{n} {c['per_image']:.0f}{' q' if c['kind'] == 'queries' else ''}"
                                       for n, c in cost.items()), f"{seconds / 60:.1f}"])
    lines += [markdown_table(["defense", "threat", "per attack (q: queries)", "minutes (all threats)"], rows), ""]
    path = os.path.join(docs_dir, f"battery_{name}.md")
    fileio.write_text(path, "\n".join(lines))
    fileio.write_json(os.path.join(docs_dir, "battery", f"{name}.json"), summary_json(battery, results))
    _plot(battery, results, os.path.join(docs_dir, "battery", f"{name}.png"))
    return path


def summary_json(battery, results):
    """The report's numbers without per-image arrays: {"plan" (with the radius of each threat), "defenses": {label:
    {"target", threat: {"summary", "flags"}}}}."""
    import dataclasses

    out = {}
    for label, r in results.items():
        target = {k: v for k, v in r["clean"].items() if k not in ("labels", "correct", "cell")}
        out[label] = {"target": target, **{t: {"summary": r[t]["summary"], "flags": r[t]["flags"]}
                                           for t in battery.plan.threats if t in r}}
    plan = {**dataclasses.asdict(battery.plan), "radii": {t: battery.plan.eps(t) for t in battery.plan.threats}}
    return {"plan": plan, "defenses": out}


def _plot(battery, results, path):
    """Horizontal bars per defense (rows, in the leaderboard's order) and threat (panels): clean accuracy, PGD-CE
    alone, the battery's worst case; hatched so that the three stay apart in grey print."""
    plan = battery.plan
    order = [row[0] for row in leaderboard_rows(battery, results)]
    if not order:
        return
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(plan.threats), figsize=(5.2 * len(plan.threats), 1.2 + 0.32 * len(order)),
                             dpi=100, squeeze=False, sharey=True)
    series = (("clean", "", lambda r, s: r["clean"]["correct"].count(True) / len(r["clean"]["correct"])),
              ("PGD-CE alone", "//", lambda r, s: s["per_attack"].get("pgd_ce", 0.0) if s else 0.0),
              ("battery (worst case)", "..", lambda r, s: s["robust_accuracy"] if s else 0.0))
    ys = np.arange(len(order))
    for ax, threat in zip(axes[0], plan.threats):
        for k, (name, hatch, value) in enumerate(series):
            values = [value(results[label], results[label].get(threat, {}).get("summary")) for label in order]
            ax.barh(ys + (k - 1) * 0.27, values, 0.27, label=name, hatch=hatch, color=f"C{k}", edgecolor="black",
                    lw=0.4)
        ax.set_yticks(ys, order, fontsize=plots.FONT["ticks"])
        ax.set_xlim(0, 1)
        ax.set_xlabel("accuracy", fontsize=plots.FONT["label"])
        ax.set_title(_threat_title(plan, threat), fontsize=plots.FONT["title"])
        ax.tick_params(labelsize=plots.FONT["ticks"])
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].invert_yaxis()  # the best defense on top (the panels share the axis: invert it once)
    axes[0][-1].legend(fontsize=plots.FONT["legend"], loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{battery.dataset.name}: robust accuracy under the battery", fontsize=plots.FONT["title"])
    fig.tight_layout()
    plots.save_png(fig, path)


__all__ = ["leaderboard_rows", "summary_json", "write_report"]
