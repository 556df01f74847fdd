"""Small PNG plots for the reports under ``docs/`` (matplotlib with the file-only Agg backend, written atomically).

Every series of a line or scatter plot has a marker and a line style of its own besides its colour
(:func:`series_styles`: overlapping series stay distinguishable, also in grey print), fonts are readable at the
width the markdown shows a figure, and the legend sits beside the data (right of the panels), not below them.
"""

import os

import numpy as np

from hrs_tf.evaluation import des
from hrs_tf.fileio import atomic_path


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")
FONT = {"title": 11, "label": 10, "ticks": 9, "legend": 9}


def series_styles(labels):
    """{label: matplotlib keyword styles} for ``labels`` in order: colour, marker and line style, every label a
    (marker, line style) pair of its own (32 before one repeats); every second marker hollow, so that a series hidden
    under another still shows its points."""
    styles = {}
    for i, label in enumerate(dict.fromkeys(labels)):
        styles[label] = {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)],
                         "linestyle": LINE_STYLES[(i // len(MARKERS) + i) % len(LINE_STYLES)],
                         "markerfacecolor": "none" if i % 2 else None, "markersize": 6}
    return styles


def pyplot():
    """``matplotlib.pyplot`` with the file-only Agg backend (imported on first use: plotting is optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path):
    """Writes ``fig`` to ``path`` as PNG atomically (folders created) and closes it."""
    plt = pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_lines(path, series, xlabel, ylabel, title, ylim=None):
    """Writes a line plot of ``series`` = {label: (xs, ys)} to ``path`` (PNG, atomically), legend beside it."""
    plot_panels(path, {title: series}, xlabel, ylabel, ylim=ylim)


def panel_grid(count):
    """(rows, columns) of a figure of ``count`` panels: one row up to three, else rows of two (a figure stays about
    as wide as the markdown shows it, so that its fonts stay readable)."""
    columns = count if count <= 3 else 2
    return -(-count // columns), columns


def plot_panels(path, panels, xlabel, ylabel, title=None, ylim=None, xticks=None, bands=None, inverted=()):
    """Line plots of ``panels`` = {panel title: {label: (xs, ys)}} (:func:`panel_grid`), each label styled alike in
    every panel (:func:`series_styles`), one legend right of the panels (PNG). ``xlabel``: one text, or {panel:
    text}; ``bands``: {panel: {label: (low, high)}} shaded around a line; ``inverted``: panels whose x axis falls to
    the right."""
    plt = pyplot()

    styles = series_styles(label for series in panels.values() for label in series)
    rows, columns = panel_grid(len(panels))
    width = 4.2 * columns + (2.2 if styles else 0)
    fig, axes = plt.subplots(rows, columns, figsize=(width, 3.4 * rows + 0.4), dpi=100, squeeze=False, sharey=True,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    handles = {}
    for ax, (panel, series) in zip(axes.flat, panels.items()):
        for label, (xs, ys) in series.items():
            style = dict(styles[label])
            if len(xs) >= 60:  # a dense curve: the line alone
                style.pop("marker"), style.pop("markerfacecolor")
            (line,) = ax.plot(xs, ys, label=label, lw=1.4, **style)
            handles.setdefault(label, line)
            if label in (bands or {}).get(panel, {}):
                ax.fill_between(xs, *bands[panel][label], color=line.get_color(), alpha=0.15, lw=0)
        if panel in inverted:
            ax.invert_xaxis()
        ax.set_title(panel, fontsize=FONT["title"])
        ax.set_xlabel(xlabel[panel] if isinstance(xlabel, dict) else xlabel, fontsize=FONT["label"])
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=FONT["ticks"])
        if xticks is not None:
            ax.set_xticks(xticks[0], xticks[1], fontsize=FONT["ticks"])
        if ylim:
            ax.set_ylim(*ylim)
    for row in axes:
        row[0].set_ylabel(ylabel, fontsize=FONT["label"])
    if handles:  # (a figure of empty panels has no legend)
        fig.legend(list(handles.values()), list(handles), fontsize=FONT["legend"], loc="outside right center")
    if title:
        fig.suptitle(title, fontsize=FONT["title"])
    save_png(fig, path)


def plot_gradient_histograms(path, samples_by_defense, dimensions=3, seed=0, bins=30, dim_names=None,
                             xlabel="input gradient (C&W margin)"):
    """Figure 1 / defensive-dropout Figure 4: histograms of sampled gradients on a few input dimensions.

    ``samples_by_defense``: {name: array (samples, ...) of one image's gradients}; the same randomly
    chosen dimensions are shown for every defense, one panel per defense (:func:`panel_grid`). With ``dim_names``
    the arrays are (samples, k) columns already chosen, all shown under those names. Each dimension is an outline
    of its own colour and line style over a light fill (overlaps stay readable), one legend right of the panels.
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    names = list(samples_by_defense)
    size = int(np.prod(np.asarray(samples_by_defense[names[0]]).shape[1:]))
    if dim_names is None:
        dims = np.random.default_rng(seed).choice(size, size=min(dimensions, size), replace=False)
        dim_names = [f"dim {d}" for d in dims]
    else:
        dims = range(size)
    styles = series_styles(dim_names)
    rows, columns = panel_grid(len(names))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns + 2.2, 3.0 * rows + 0.5), dpi=100, squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        flat = np.asarray(samples_by_defense[name]).reshape(len(samples_by_defense[name]), -1)
        edges = np.histogram_bin_edges(flat[:, list(dims)], bins=bins)  # one set of bins per panel: comparable bars
        for d, label in zip(dims, dim_names):
            color, linestyle = styles[label]["color"], styles[label]["linestyle"]
            ax.hist(flat[:, d], bins=edges, histtype="stepfilled", color=color, alpha=0.12)
            ax.hist(flat[:, d], bins=edges, histtype="step", color=color, linestyle=linestyle, lw=1.6)
        ax.set_title(name, fontsize=FONT["title"])
        ax.set_xlabel(xlabel, fontsize=FONT["label"])
        ax.tick_params(labelsize=FONT["ticks"])
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("passes", fontsize=FONT["label"])
    handles = [Line2D([], [], color=styles[label]["color"], linestyle=styles[label]["linestyle"], lw=1.6)
               for label in dim_names]
    fig.legend(handles, dim_names, fontsize=FONT["legend"], loc="outside right center")
    fig.suptitle("input-gradient samples (one image)", fontsize=FONT["title"])
    save_png(fig, path)


def plot_des(path, points_by_defense, title):
    """Figure 2: defense-rate gain against accuracy drop per defense (a marker each), with each defense's linear
    fit in its colour and line style; legend beside the data."""
    plt = pyplot()

    styles = series_styles(points_by_defense)
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100, layout="constrained")
    for name, points in points_by_defense.items():
        xs = [p["accuracy_drop"] for p in points]
        ys = [p["defense_gain"] for p in points]
        style = styles[name]
        ax.plot(xs, ys, linestyle="none", marker=style["marker"], color=style["color"],
                markerfacecolor=style["markerfacecolor"], label=name)
        if len(set(xs)) >= 2:
            fit = des.linear_fit(xs, ys)
            grid = np.linspace(min(xs), max(xs), 20)
            ax.plot(grid, fit["slope"] * grid + fit["intercept"], color=style["color"], linestyle=style["linestyle"],
                    lw=1.2)
    ax.set_xlabel("test accuracy drop", fontsize=FONT["label"])
    ax.set_ylabel("defense rate gain", fontsize=FONT["label"])
    ax.set_title(title, fontsize=FONT["title"])
    ax.tick_params(labelsize=FONT["ticks"])
    ax.grid(alpha=0.3)
    if points_by_defense:
        fig.legend(fontsize=FONT["legend"], loc="outside right center")
    save_png(fig, path)


def heatmap(values, row_labels, column_labels, path, title, xlabel, ylabel, fmt="{:.2f}", cmap="viridis"):
    """A heat map of the 2-D array ``values`` (NaN: blank) with each cell's value written in it (PNG), in the
    reports' font sizes."""
    plt = pyplot()

    values = np.asarray(values, np.float64)
    fig, ax = plt.subplots(figsize=(2.4 + 0.9 * values.shape[1], 1.6 + 0.55 * values.shape[0]), dpi=100,
                           layout="constrained")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(column_labels)), column_labels, fontsize=FONT["ticks"], rotation=40, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=FONT["ticks"])
    for (r, c), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=FONT["ticks"],
                    color="white" if value < np.nanmean(values) else "black")
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.set_title(title, fontsize=FONT["title"])
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.ax.tick_params(labelsize=FONT["ticks"])
    save_png(fig, path)


HATCHES = ("", "//", "..", "xx", "\\\\", "--", "++", "oo")


def grouped_bars(path, panels, bin_labels, title=None, ylabel="fraction"):
    """Panels of grouped bars one above the other (shared bins, labelled under the last): ``panels`` = {panel title:
    {series label: [value per bin]}} (PNG); each series its colour and hatch in every panel, one legend right of
    the panels; e.g. gradient-magnitude histograms over log bins (hash paper Figure 2)."""
    plt = pyplot()

    fig, axes = plt.subplots(len(panels), 1, figsize=(0.75 * len(bin_labels) + 3.4, 2.3 * len(panels) + 1.2),
                             dpi=100, squeeze=False, sharex=True, sharey=True, layout="constrained")
    order = list(dict.fromkeys(label for series in panels.values() for label in series))
    handles = {}
    for ax, (panel, series) in zip(axes[:, 0], panels.items()):
        width = 0.8 / max(len(series), 1)
        for k, (label, values) in enumerate(series.items()):
            xs = np.arange(len(bin_labels)) + (k - (len(series) - 1) / 2) * width
            index = order.index(label)
            bars = ax.bar(xs, values, width, label=label, color=f"C{index % 10}", hatch=HATCHES[index % len(HATCHES)],
                          edgecolor="black", lw=0.4)
            handles.setdefault(label, bars)
        ax.set_title(panel, fontsize=FONT["title"])
        ax.set_ylabel(ylabel, fontsize=FONT["label"])
        ax.tick_params(labelsize=FONT["ticks"])
        ax.grid(alpha=0.3, axis="y")
    axes[-1, 0].set_xticks(range(len(bin_labels)), bin_labels, fontsize=FONT["ticks"], rotation=40, ha="right",
                           rotation_mode="anchor")
    fig.legend(list(handles.values()), list(handles), fontsize=FONT["legend"], loc="outside right center")
    if title:
        fig.suptitle(title, fontsize=FONT["title"])
    save_png(fig, path)
