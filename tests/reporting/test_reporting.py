import os

import numpy as np

from hrs_tf import reporting
from hrs_tf.reporting.training_report import training_report


def base_record(dataset, acc, epochs=3):
    history = [{"epoch": e, "seconds": 10.0 + e, "loss": 1.0 / e, "accuracy": 0.9, "val_accuracy": acc - 0.01 / e}
               for e in (1, 2, 3)]
    return {"dataset": dataset, "architecture": "mnist", "epochs": epochs, "seed": 0, "test_accuracy": acc,
            "train_seconds": 36.0, "history": history}


def hrs_summary(dataset):
    records = [{"block": b, "channel": c, "seed": 10 * b + c, "epochs": 3, "train_accuracy": 0.99, "test_accuracy": 0.985,
                "seconds": 60.0} for b in (0, 1) for c in (0, 1)]
    return {"dataset": dataset, "channels": [2, 2], "epochs": [3, 3], "train_seconds": 240.0,
            "test_accuracy": {"mean": 0.9875, "std": 0.0005, "min": 0.987, "max": 0.988, "runs": [0.987, 0.988]},
            "path_test_accuracy": {"0-0": 0.986, "0-1": 0.99, "1-0": 0.985, "1-1": 0.989}, "channel_records": records}


def test_training_report_tables_and_plots(tmp_path, monkeypatch):
    from hrs_tf.reporting import training_report as module

    drawn, original = {}, module.plot_lines

    def recording(path, series, *args, **kwargs):
        drawn[os.path.basename(path)] = series
        return original(path, series, *args, **kwargs)

    monkeypatch.setattr(module, "plot_lines", recording)
    bases = [base_record("mnist", 0.995, epochs=40), base_record("mnist", 0.992), base_record("mnist", 0.991)]
    text = training_report(bases, [hrs_summary("mnist"), hrs_summary("mnist")], str(tmp_path),
                                     "python tools/report_training.py --base=x", "base 1.00x")
    # one series per run, also where runs share a data set (a dict keyed by data set had kept only the last one)
    assert list(drawn["base_test_accuracy.png"]) == ["mnist, 40 epochs", "mnist, 3 epochs", "mnist, 3 epochs (2)"]
    assert drawn["base_test_accuracy.png"]["mnist, 40 epochs"][1] == [0.995 - 0.01 / e for e in (1, 2, 3)]
    assert list(drawn["hrs_path_accuracy.png"]) == ["mnist HRS 2x2, 3,3 epochs", "mnist HRS 2x2, 3,3 epochs (2)"]
    assert "python tools/report_training.py --base=x" in text
    assert "| mnist | mnist | 3 | 0 | 99.20% | 99.04% | 0.6 min | 11 / 12 s |" in text
    assert "| mnist | 2x2 | 3,3 | 98.75% +- 0.05% (2 passes) | 98.50% / 99.00% | 99.20% (3 epochs) | -0.45 pt | 4 min |" in text  # the base with equal epochs
    assert text.count("| 0 | 1 | 1 | 3 | 99.00% | 98.50% | 1.0 min |") == 2
    for png in ("base_test_accuracy.png", "hrs_path_accuracy.png"):
        with open(tmp_path / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "base 1.00x" in text and not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_every_series_has_a_marker_and_line_style_of_its_own(tmp_path):
    from hrs_tf.reporting import plots

    labels = [f"defense {i}" for i in range(32)]
    styles = plots.series_styles(labels + labels[:3])  # a label seen again keeps its style
    assert list(styles) == labels
    assert len({(s["marker"], s["linestyle"]) for s in styles.values()}) == 32  # not colour alone
    assert len({s["marker"] for s in list(styles.values())[:8]}) == 8
    assert [s["markerfacecolor"] for s in list(styles.values())[:2]] == [None, "none"]
    # The same label is drawn alike in every panel, and the figure gets a legend beside the panels.
    import matplotlib

    matplotlib.use("Agg")
    drawn = []
    original = plots.save_png
    plots.save_png = lambda fig, path: drawn.append(fig) or original(fig, path)
    try:
        plots.plot_panels(tmp_path / "p.png", {"a": {"x": ([0, 1], [0, 1]), "y": ([0, 1], [1, 0])},
                                               "b": {"y": ([0, 1], [1, 1])}}, "eps", "ASR")
    finally:
        plots.save_png = original
    fig = drawn[0]
    y_lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "y"]
    assert len(y_lines) == 2 and len({(line.get_marker(), line.get_linestyle()) for line in y_lines}) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["x", "y"] and (tmp_path / "p.png").stat().st_size > 0


def test_markdown_tables_read_back_what_markdown_table_wrote():
    first = reporting.markdown_table(["defense", "8/255"], [["Base", "0.0%"], ["HRS", "-"]])
    second = reporting.markdown_table(["a", "b", "c"], [["-", "-", "-"], ["x / y", "1", "2"]])
    text = f"# Title\n\nintro\n\n## PGD\n\n{first}\nnot a table line\n{second}\n\n### Other\n\n| not | closed\n"
    assert reporting.read_markdown_tables(text) == [
        ("PGD", ["defense", "8/255"], [["Base", "0.0%"], ["HRS", "-"]]),
        ("PGD", ["a", "b", "c"], [["-", "-", "-"], ["x / y", "1", "2"]])]  # a row of dashes is data, not a separator
    assert reporting.read_markdown_tables("no tables") == []


def test_many_panels_wrap_into_rows_of_two(tmp_path):
    from hrs_tf.reporting import plots

    assert [plots.panel_grid(n) for n in (1, 2, 3, 4, 5, 6)] == [(1, 1), (1, 2), (1, 3), (2, 2), (3, 2), (3, 2)]
    import matplotlib

    matplotlib.use("Agg")
    drawn = []
    original = plots.save_png
    plots.save_png = lambda fig, path: drawn.append(fig) or original(fig, path)
    try:
        plots.plot_panels(tmp_path / "p.png", {f"panel {i}": {"x": ([0, 1], [i, 1])} for i in range(5)}, "eps", "ASR")
    finally:
        plots.save_png = original
    visible = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [f"panel {i}" for i in range(5)] and len(drawn[0].axes) == 6
    assert [ax.get_ylabel() for ax in visible] == ["ASR", "", "ASR", "", "ASR"]  # the first panel of each row
    assert drawn[0].get_size_inches()[0] < 11  # two panels and the legend wide, not five


def test_gradient_histograms_tell_pixels_apart_without_colour_with_the_legend_beside(monkeypatch, tmp_path):
    from hrs_tf.reporting import plots

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    rng = np.random.default_rng(0)
    samples = {f"defense {i}": rng.normal(size=(50, 3)) + np.arange(3) for i in range(5)}
    plots.plot_gradient_histograms(tmp_path / "h.png", samples, dim_names=["p0", "p1", "p2"])
    (fig,) = figures
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(samples) and len(fig.axes) == 6  # rows of two
    outlines = [patch for patch in visible[0].patches if not patch.get_fill()]
    assert len(outlines) == 3 and len({patch.get_linestyle() for patch in outlines}) == 3  # not colour alone
    # one set of bins per panel, so the three pixels' bars line up
    assert len({tuple(np.round(patch.get_path().vertices[[0, -1], 0], 9)) for patch in outlines}) == 1
    fig.canvas.draw()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["p0", "p1", "p2"]
    assert legend.get_window_extent().x0 >= max(ax.get_window_extent().x1 for ax in visible)
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9 and visible[0].title.get_fontsize() >= 10
    assert visible[0].get_xlabel() and visible[0].get_ylabel() == "passes"


def test_grouped_bars_stack_the_panels_with_hatches_and_the_legend_beside(monkeypatch, tmp_path):
    from hrs_tf.reporting import plots

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    bins = ["[0, 1]", "(1, 2]", "(2, 3]"]
    panels = {"|dL/dx|": {"Original": [0.5, 0.3, 0.2], "GI1": [0.9, 0.1, 0.0]}, "|dZ/dx|": {"GI1": [0.1, 0.2, 0.7]}}
    plots.grouped_bars(tmp_path / "b.png", panels, bins, title="t")
    (fig,) = figures
    top, bottom = fig.axes
    assert top.get_window_extent().y0 > bottom.get_window_extent().y1  # one above the other, bins shared
    hatch = {bar.get_label(): (bar.patches[0].get_hatch(), bar.patches[0].get_facecolor()) for bar in top.containers}
    assert hatch["Original"] != hatch["GI1"] and hatch["Original"][0] != hatch["GI1"][0]  # not colour alone
    first = bottom.containers[0].patches[0]
    assert (first.get_hatch(), first.get_facecolor()) == hatch["GI1"]  # a series looks alike in every panel
    assert [t.get_text() for t in bottom.get_xticklabels()] == bins
    fig.canvas.draw()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["Original", "GI1"]
    assert legend.get_window_extent().x0 >= top.get_window_extent().x1
    assert min(t.get_fontsize() for t in legend.get_texts() + bottom.get_xticklabels()) >= 9


def test_heat_map_writes_each_value_in_the_reports_fonts(monkeypatch, tmp_path):
    from hrs_tf.reporting import plots

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    plots.heatmap([[0.5, np.nan], [1.0, 0.25]], ["a", "b"], ["x", "y"], tmp_path / "m.png", "R", "CR2", "CR1")
    ax = figures[0].axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0.25", "0.50", "1.00"]  # NaN left blank
    assert min(t.get_fontsize() for t in ax.texts + ax.get_xticklabels() + ax.get_yticklabels()) >= 9
