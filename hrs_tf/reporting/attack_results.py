"""A markdown table of ``tools/attack.py`` results (the JSON of :func:`hrs_tf.evaluation.evaluate_protocol`): one
row per result file, as the tables of ``docs/attacks.md``."""

import pathlib

from hrs_tf import fileio
from hrs_tf.errors import ConfigError
from hrs_tf.reporting import fmt, markdown_table, percent

HEADERS = ["result", "attack", "settings", "targets", "examples", "ASR", "L0 mean (% of input)", "L1 mean",
           "L2 mean +- std (median)",
           "L-inf mean", "rho = mean L2 / L2(x)", "queries mean / median / max", "craft time (s)"]


def read(path):
    """One result record; ConfigError naming the file when it is not a result of ``tools/attack.py``."""
    record = fileio.read_result(path)
    if not isinstance(record, dict) or "results" not in record or "attack" not in record:
        raise ConfigError(f"{path} is not a result of tools/attack.py (no 'attack' / 'results')")
    return record


def row(name, record):
    """The table row of one result record."""
    scores = record["results"]
    dist = scores.get("distortion_of_successful", {})
    settings = dict(record.get("attack_settings") or {})
    if record.get("setting") not in (None, "whitebox"):
        settings["setting"] = record["setting"] + (f"({record['eot_samples']})" if record.get("eot_samples") else "")
    l0, l0_fraction, l2 = dist.get("l0", {}), dist.get("l0_fraction", {}), dist.get("l2", {})
    queries = scores.get("queries")
    return [
        name, f"`{record['attack']}`", ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in settings.items()) or "defaults",
        record.get("targets", "-"), scores.get("num_examples", 0), percent(scores["asr"], 1) if "asr" in scores else "-",
        "-" if l0.get("mean") is None else f"{l0['mean']:.0f} ({100 * l0_fraction['mean']:.1f}%)",
        fmt(dist.get("l1", {}).get("mean"), 2),
        "-" if l2.get("mean") is None else f"{l2['mean']:.2f} +- {l2['std']:.2f} ({l2['median']:.2f})",
        fmt(dist.get("linf", {}).get("mean")), fmt(dist.get("l2_relative", {}).get("mean")),
        "-" if not queries else f"{queries['mean']:.0f} / {queries['median']:.0f} / {queries['max']}",
        fmt(record.get("craft_seconds"), 1),
    ]


def table(paths):
    """Markdown table of the result files ``paths`` (named by file stem), in the order given."""
    if not paths:
        raise ConfigError("no attack result files given")
    return markdown_table(HEADERS, [row(pathlib.Path(p).stem, read(p)) for p in paths])
