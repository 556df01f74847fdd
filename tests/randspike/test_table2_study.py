"""The Random Spiking study driver (Table 2 + stability, :mod:`randspike.experiments.table2`) on a tiny plan: cells equal
direct evaluation under each decision rule, mean / std over the models, the report beside the paper, resume."""

import dataclasses
import os
import re

import numpy as np
import pytest

import randspike  # noqa: F401
from hrs_tf.errors import ConfigError
from randspike import decision, schemes
from randspike.experiments import report, table2


@pytest.fixture(scope="module")
def small(real_mnist):
    return dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:1000], y_train=real_mnist.y_train[:1000],
                               x_test=real_mnist.x_test[:200], y_test=real_mnist.y_test[:200])


def test_study_cells_equal_direct_evaluation_and_the_report_sits_beside_the_paper(small, tmp_path):
    plan = table2.plan_for("mnist", schemes=("Standard", "RS-1", "region:0.4,20"), models=2, epochs=1, test_images=60,
                           passes=3, settings=(("train_images", 128),), stability_images=20, stability_draws=2,
                           gaussian_levels=(0.0, 3.0), jpeg_qualities=(50, 100))
    assert plan.schemes == ("rs_standard", "rs1", "region:0.4,20")
    work = tmp_path / "study"
    study = table2.SchemeStudy(small, plan, str(work), log=lambda *_: None)
    results = study.run()
    rows = {(r["scheme"], r["rule"]): r for r in results["table2"]}
    assert set(rows) == {("Standard", "single"), ("RS-1", "mc"), ("RS-1", "vote"), ("RS-1", "single"),
                         ("RC r=0.4 t=20", "vote")}
    # a cell is the direct evaluation of the same model with the same seed
    rs1 = study.classifier(1, schemes.spec_of("RS-1"))
    direct = 100 * np.mean(decision.labels(rs1, small.x_test[:60], "mc", 3, seed=plan.eval_seed) != small.y_test[:60])
    assert rows[("RS-1", "mc")]["errors"][1] == pytest.approx(direct)
    errors = rows[("RS-1", "mc")]["errors"]
    assert rows[("RS-1", "mc")]["mean"] == pytest.approx(np.mean(errors))
    assert rows[("RS-1", "mc")]["std"] == pytest.approx(np.std(errors, ddof=1))
    # RC is the Dropout model of the same seed voting over noisy copies (Dropout trained as its source)
    rc = study.classifier(0, schemes.spec_of("region:0.4,20"))
    assert isinstance(rc, decision.Decider) and rc.copies == 20
    assert os.path.exists(work / "model_0" / "models" / "dropout.h5")
    # stability: every model, both perturbations
    assert {c["scheme"] for c in results["stability"]["curves"]} == {"Standard", "RS-1", "RC r=0.4 t=20"}
    scale = study.scale_lines()  # read from the records the cells' processes wrote
    assert scale[0].startswith("Standard: RS MNIST CNN;") and scale[0].endswith("trained on 128 images (2 model(s))")
    page = report.write_report(study, results, str(tmp_path / "docs"), "python tools/reproduce_rs_schemes.py ...",
                               scale)
    text = open(page).read()
    assert "0.88 +- 0.09%" in text and "0.77 +- 0.05%" in text  # the paper's RS-1 (MC) and Standard rows
    # each scheme's row minus Standard's: ours from the models, the paper's from 16 models of mean +- std
    standard = rows[("Standard", "single")]["errors"]
    difference = np.mean(errors) - np.mean(standard)
    half = report.welch_difference(*[(np.mean(e), np.std(e, ddof=1), 2) for e in (standard, errors)])[2]
    assert f"| RS-1 | MC Avg. | {difference:+.2f} +- {half:.2f} |" in text
    assert "| +0.11 +- 0.05 | 0.03 |" in text  # paper: 0.88 - 0.77, SE sqrt((0.09^2 + 0.05^2) / 16)
    assert os.path.exists(tmp_path / "docs" / "rs_schemes" / "mnist_stability.png")
    assert text.startswith("# Random Spiking paper: Table 2 and stability on mnist") and "## Stability" in text
    # a page of the Table 2 experiment alone says so in its title and has no stability section
    only = open(report.write_report(study, {"table2": results["table2"]}, str(tmp_path / "docs2"), "python ...")).read()
    assert only.startswith("# Random Spiking paper: Table 2 on mnist") and "## Stability" not in only
    # the rejection note only where a row rejects clean images (MagNet)
    assert "rejection of a clean test image" not in text
    rejecting = [dict(row, rejected=0.2 if row["scheme"] == "RC r=0.4 t=20" else 0.0) for row in results["table2"]]
    noted = open(report.write_report(study, {"table2": rejecting}, str(tmp_path / "docs3"), "python ...")).read()
    assert "rejection of a clean test image (MagNet) counts as an error" in noted and "| 0.20% |" in noted
    # resume: a second study on the same folder trains and computes nothing
    lines = []
    again = table2.SchemeStudy(small, plan, str(work), log=lines.append).run()
    assert again["table2"] == results["table2"]
    assert not [line for line in lines if line.startswith(("training", "[table2]", "[stability]"))]
    # model by model: every cell of model 0 (training, table2, stability) before any of model 1, so a run stopped
    # early holds whole models of every scheme, and a study of fewer models reports them computing nothing
    cells = study.cell_plan()
    ks = [int(re.search(r"model=(\d+)", cell.name).group(1)) for cell in cells]
    assert ks == sorted(ks) and ks.count(0) == ks.count(1)
    assert {c.name for c in cells if c.kind == "table2" and ks[cells.index(c)] == 0} == {
        "Standard model=0", "RS-1 model=0", "RC r=0.4 t=20 model=0"}
    # the progress line estimates a scheme's stability cells of one perturbation by each other (RS-1's are slower)
    assert {c.estimate for c in cells if c.kind == "stability" and "RS-1 model=1" in c.name} == {
        "RS-1|clean", "RS-1|gaussian", "RS-1|jpeg"}
    # (--report_only: the stored cells of those models alone, stability.json reassembled from them)
    first = table2.SchemeStudy(small, dataclasses.replace(plan, models=1), str(work), log=lambda *_: None).collect()
    assert [r["errors"] for r in first["table2"]] == [r["errors"][:1] for r in results["table2"]]
    assert {row["model"] for row in first["stability"]["rows"]} == {
        "Standard model=0", "RS-1 model=0", "RC r=0.4 t=20 model=0"}
    assert first["stability"]["rows"] == [r for r in results["stability"]["rows"] if r["model"].endswith("=0")]
    more = table2.SchemeStudy(small, dataclasses.replace(plan, models=3), str(work), log=lambda *_: None)
    with pytest.raises(ConfigError, match=r"cell table2/Standard model=2 is not computed yet; run without"):
        more.collect()
    more = table2.SchemeStudy(small, dataclasses.replace(plan, models=3, experiments=("stability",)), str(work),
                              log=lambda *_: None)
    with pytest.raises(ConfigError, match=r"cell stability/Standard model=2\|clean is not computed yet"):
        more.collect()
    with pytest.raises(ConfigError, match="test_images"):
        table2.SchemeStudy(small, dataclasses.replace(plan, test_images=50), str(work), log=lambda *_: None).run()
    # a renamed work folder reports the same (the model records hold the paths as they were when trained)
    os.rename(work, tmp_path / "renamed")
    moved = table2.SchemeStudy(small, plan, str(tmp_path / "renamed"), log=lambda *_: None)
    assert moved.collect()["table2"] == results["table2"]
    assert moved.scale_lines() == scale


def test_welch_difference_matches_scipys_unequal_variance_t_test():
    """The difference and its standard error give scipy's Welch t statistic, and a difference of one 95% half-width has
    Welch's two-sided p-value 0.05."""
    from scipy import stats
    first, second = (0.77, 0.05, 16), (0.88, 0.09, 5)
    difference, se, half = report.welch_difference(first, second)
    test = stats.ttest_ind_from_stats(*second, *first, equal_var=False)
    assert difference == pytest.approx(0.11) and difference / se == pytest.approx(test.statistic)
    edge = stats.ttest_ind_from_stats(first[0] + half, *second[1:], *first, equal_var=False)
    assert edge.pvalue == pytest.approx(0.05)  # a difference of one half-width is just significant at 5%
    assert 2.0 * se < half < 3.0 * se  # few degrees of freedom: wider than the normal 1.96 SE
