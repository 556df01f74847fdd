"""Redraws the figures of an HRS-paper report from the numbers its page prints, for a committed page whose result
cells are gone (the runs that made ``docs/reproduce_hrs_<dataset>.md`` are not kept in the repository).

The page's tables hold every plotted value (ASR to 0.1 pt, accuracy drops to 0.01 pt), so the redrawn Figures 4 /
A8 / A9 (ASR against eps), A6 / A7 (FGSM, C&W-L2) and 2 (DES) show the run's numbers at that precision, drawn by
the same functions as :func:`.report.write_report`. The gradient histograms (Figure 1) need the raw gradient
samples, which the page does not print: they are not redrawn."""

import os
import re

from hrs_tf import reporting
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import des
from hrs_tf.experiments.hrs_paper.report import draw_asr_figure, draw_des_figure, draw_fgsm_cw_figure
from hrs_tf.experiments.hrs_paper.run import DES_ATTACKS, GRADIENT_ATTACKS


def _value(cell):
    """'21.1%' -> 0.211, '73.3% (4.94)' -> 0.733, '-' -> None."""
    match = re.match(r"^(-?[0-9.]+)%", cell)
    return None if match is None else float(match.group(1)) / 100


def _eps(header):
    """'48/255' or 'FGSM 48/255' -> 48.0 (eps x 255)."""
    match = re.search(r"([0-9.]+)/255$", header)
    if match is None:
        raise ConfigError(f"the page's column {header!r} is not an eps like 48/255")
    return float(match.group(1))


def _series(rows, xs):
    """{row label: (xs, ys)} of the rows (label, value, ...) whose values are all printed ('-' rows are left out, as
    in the report)."""
    series = {}
    for row in rows:
        ys = [_value(cell) for cell in row[1:]]
        if ys and all(y is not None for y in ys):
            series[row[0]] = (xs, ys)
    return series


def _table(tables, heading, first_header):
    """The rows of the first table under ``heading`` whose first column is ``first_header``."""
    for table_heading, headers, rows in tables:
        if table_heading == heading and headers[0] == first_header:
            return headers, rows
    return None, None


def asr_panels(tables, label):
    """{"<label>, <setting>": {defense: (eps x 255, ASR)}} from the page's ``### <label>`` table."""
    headers, rows = _table(tables, label, "defense")
    if headers is None:
        return None
    xs = [_eps(h) for h in headers[2:]]
    panels = {}
    for setting in dict.fromkeys(row[1] for row in rows):
        panels[f"{label}, {setting}"] = _series([[r[0]] + r[2:] for r in rows if r[1] == setting], xs)
    return panels


def fgsm_cw_series(tables):
    """({defense: (eps x 255, FGSM ASR)}, {defense: (kappa, C&W ASR)}) from the FGSM and C&W-L2 section."""
    fgsm, cw = {}, {}
    for heading, headers, rows in tables:
        if not heading.startswith("FGSM and C&W-L2") or headers[0] != "defense":
            continue
        if headers[1].startswith("FGSM"):
            fgsm = _series(rows, [_eps(h) for h in headers[1:]])
        elif headers[1].startswith("CW kappa="):
            kappas = [float(re.match(r"CW kappa=([0-9.]+)", h).group(1)) for h in headers[1:]]
            cw = _series(rows, kappas)
    return fgsm, cw


def des_panels(tables, base):
    """({attack label: {family: DES points}}, eps x 255) from the DES section's strength-settings table: a setting
    belongs to the family whose name begins its label (families from the mean-DES table); the defense-rate gain is
    measured against ``base``'s white-box ASR at the DES eps, read from the ASR and FGSM tables."""
    section = next((t for t in tables if t[0].startswith("Defense efficiency at eps")), None)
    if section is None:
        return {}, None
    eps = _eps(section[0].split(" (")[0])
    _, summary = _table(tables, section[0], "attack")
    headers, settings = _table(tables, section[0], "setting")
    if not summary or not settings:
        return {}, eps
    families = list(dict.fromkeys(row[1] for row in summary))
    base_series = {"FGSM": fgsm_cw_series(tables)[0].get(base)}
    for label in GRADIENT_ATTACKS:
        base_series[label] = (asr_panels(tables, label) or {}).get(f"{label}, whitebox", {}).get(base)
    panels = {}
    for label, _ in DES_ATTACKS:
        series = base_series.get(label)
        base_asr = dict(zip(*series)).get(eps) if series else None
        if base_asr is None or label not in headers or "accuracy drop (pt)" not in headers:
            continue
        column, drop = headers.index(label), headers.index("accuracy drop (pt)")
        panel = {}
        for family in families:
            rows = [row for row in settings if row[0].startswith(family) and _value(row[column]) is not None]
            points = [{"strength": row[0], "accuracy": 1.0 - float(row[drop]) / 100,
                       "defense_rate": 1.0 - _value(row[column])} for row in rows]
            if points:
                panel[family] = des.des_points(points, {"accuracy": 1.0, "defense_rate": 1.0 - base_asr})
        if panel:
            panels[label] = panel
    return panels, eps


def redraw_figures(page_path, docs_dir=None):
    """Redraws the ASR, FGSM / C&W and DES figures of the report page ``page_path`` from its tables into the
    figure folder the page links (``<docs_dir>/reproduce_hrs_<dataset>/``); returns the paths written (relative to
    ``docs_dir``). The page itself is not changed. The base model is the first row of the page's accuracy table."""
    if not os.path.isfile(page_path):
        raise ConfigError(f"report page {page_path} does not exist")
    docs_dir = docs_dir or os.path.dirname(page_path)
    rel = os.path.splitext(os.path.basename(page_path))[0]
    with open(page_path) as f:
        tables = reporting.read_markdown_tables(f.read())
    accuracy = next((rows for heading, headers, rows in tables if heading.startswith("Test accuracy") and rows), None)
    if accuracy is None:
        raise ConfigError(f"{page_path} has no test-accuracy table: not an HRS reproduction report")
    written = []
    for label in GRADIENT_ATTACKS:
        panels = asr_panels(tables, label)
        if panels:
            written.append(draw_asr_figure(docs_dir, rel, label, panels))
    fgsm, cw = fgsm_cw_series(tables)
    if fgsm or cw:
        written.append(draw_fgsm_cw_figure(docs_dir, rel, fgsm, cw))
    panels, eps = des_panels(tables, base=accuracy[0][0])
    for label, panel in panels.items():
        written.append(draw_des_figure(docs_dir, rel, label, eps / 255, panel))
    return written
