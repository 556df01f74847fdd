import os

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
