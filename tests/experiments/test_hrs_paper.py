"""The HRS-paper reproduction pipeline on a minimal plan: cells, resume, mismatch refusal, report."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from hrs_tf import data
from hrs_tf.defenses import hrs
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import des
from hrs_tf.experiments import hrs_paper as reproduction
from hrs_tf.layers import stochastic
from tests.tool_runner import run_script, run_script_cases

PLAN = dict(num_images=1, eot_samples=2, passes=2, accuracy_repeats=1, deviation_images=1, deviation_samples=3,
            epochs=(("none", 1), ("hrs", 1)), ablation_epochs=1, eps_grid=(0.25,), fgsm_grid=(0.25,),
            cw_confidences=(0.0,), des_eps=0.25, des_specs=("dropout:0.5", "hrs:2x2"), defenses=("none", "hrs:2x2"),
            experiments=("accuracy", "attacks", "des"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_mnist_dir):
    dataset = data.load_dataset("mnist", tiny_mnist_dir)
    work = tmp_path_factory.mktemp("reproduce") / "work"
    logs = []
    rep = reproduction.Reproduction(dataset, reproduction.plan_for("mnist", **PLAN), str(work), log=logs.append)
    rep.run()
    return dataset, work, rep, logs


def test_cells_are_computed_once_and_deterministic_models_only_white_box(finished):
    dataset, work, rep, logs = finished
    attacks = sorted(os.listdir(work / "cells" / "attacks"))
    # Base: white-box only (EOT / fixed change nothing on a deterministic model); 2 attacks x 1 eps.
    assert sum(name.endswith("_Base.json") for name in attacks) == 2 + 1  # + FGSM at the DES eps
    assert sum("eot" in name and name.endswith("HRS_2x2.json") for name in attacks) == 2
    cell = json.loads((work / "cells" / "attacks" / "hrs_pgd_eot_eps=0.25_HRS_2x2.json").read_text())
    assert cell["setting"] == "eot" and cell["eot_samples"] == 2 and cell["results"]["num_examples"] == 9
    assert cell["cell"] == "hrs_pgd|eot|eps=0.25|HRS 2x2" and cell["stochastic_layers"] == ["switch0", "switch1"]
    hits = cell["results"]["asr"] * 9 * 2  # 9 (image, target) pairs x 2 judging passes
    assert abs(hits - round(hits)) < 1e-9 and cell["results"]["asr_first_pass"] * 9 == round(cell["results"]["asr_first_pass"] * 9)
    assert any("training Base" in line for line in logs) and any("training HRS 2x2" in line for line in logs)

    again = []
    rerun = reproduction.Reproduction(dataset, reproduction.plan_for("mnist", **PLAN), str(work), log=again.append)
    rerun.run()
    assert again == []  # nothing recomputed, nothing retrained


def test_changed_content_settings_are_refused(finished):
    dataset, work, _, _ = finished
    with pytest.raises(ConfigError, match=r"num_images: 1 there vs 2 now"):
        reproduction.Reproduction(dataset, reproduction.plan_for("mnist", **{**PLAN, "num_images": 2}), str(work))
    with pytest.raises(ConfigError, match="unknown defense 'magic'"):
        reproduction.plan_for("mnist", defenses=("none", "magic"))
    # The same model name with other epochs would read cells made with the old ones: refused.
    with pytest.raises(ConfigError, match=r"HRS 2x2: \['hrs:2x2', 1\] there vs \['hrs:2x2', 2\] now"):
        reproduction.Reproduction(dataset, reproduction.plan_for("mnist", **{**PLAN, "epochs": (("none", 1), ("hrs", 2))}),
                                  str(work))


def test_report_has_our_numbers_beside_the_papers(finished, tmp_path):
    _, work, rep, _ = finished
    text = rep.report(str(tmp_path), "python tools/reproduce_hrs.py --dataset=mnist")
    assert text.startswith("# HRS paper reproduced on mnist") and "python tools/reproduce_hrs.py --dataset=mnist" in text
    base_acc = json.loads((work / "cells" / "accuracy" / "Base.json").read_text())["accuracy"]["mean"]
    assert f"| Base | {100 * base_acc:.2f}% +- 0.00 | 99.04% |" in text  # Table A2 beside the paper
    # The closing line totals the compute time of the cells the report shows: here every cell the run made.
    made = [json.loads(path.read_text()) for path in (work / "cells").glob("*/*.json")]
    assert f"*The {len(made)} result cells this report reads took {sum(c['seconds'] for c in made) / 60:.0f} min" in text
    # Single-setting DES of HRS 2x2 against PGD, recomputed from its cells with eq. 3 (eta 0.002).
    def cell(experiment, name):
        return json.loads((work / "cells" / experiment / f"{name}.json").read_text())
    acc = cell("accuracy", "HRS_2x2")["accuracy"]["mean"]
    asr, base_asr = (cell("attacks", f"hrs_pgd_whitebox_eps=0.25_{d}")["results"]["asr"] for d in ("HRS_2x2", "Base"))
    expected = ((1 - asr) - (1 - base_asr)) / ((base_acc - acc) + 0.002)
    row = next(line for line in text.splitlines() if line.startswith(f"| HRS 2x2 | {100 * (base_acc - acc):.2f} |"))
    assert row.split(" | ")[3] == f"{expected:.2f} ({100 * (base_asr - asr):+.1f} pt)"
    # Each trained model with the epochs its own training record states (here 1, and 1 + 1 per block).
    assert f"| Base | `{work / 'models' / 'base.h5'}` | 1 |" in text
    assert f"| HRS 2x2 | `{work / 'models' / 'hrs_2x2'}` | 1 + 1 (per block) |" in text
    assert "| HRS | " in text and "| 74.90 |" in text  # mean DES row with the paper's CW-PGD value
    # Each strength setting of the DES sweeps with its accuracy drop and ASRs, from its cells.
    dropout_acc = cell("accuracy", "Dropout_0.5")["accuracy"]["mean"]
    dropout_pgd = cell("attacks", "hrs_pgd_whitebox_eps=0.25_Dropout_0.5")["results"]["asr"]
    row = next(line for line in text.splitlines() if line.startswith("| Dropout 0.5 | ") and line.count("|") == 7)
    assert row.split(" | ")[1:3] == [f"{100 * dropout_acc:.2f}%", f"{100 * (base_acc - dropout_acc):.2f}"]
    assert row.split(" | ")[4] == f"{100 * dropout_pgd:.1f}%"
    assert "Fixed randomness vs white-box on HRS 2x2" in text
    for png in ("pgd.png", "cw-pgd.png", "des_pgd.png"):
        assert (tmp_path / "reproduce_hrs_mnist" / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "reproduce_hrs_mnist.md").read_text() == text


def test_des_sweeps_come_from_the_swept_defenses_and_bad_plans_are_refused(tmp_path, tiny_mnist_dir):
    def labels(**changes):
        plan = reproduction.plan_for("mnist", **{**PLAN, "des_specs": None, **changes})
        return [s.label for s in plan.sweep_specs()], plan.des_sweeps

    # Default: every evaluated defense with a strength sweep; the HRS sweep stops at the largest HRS model (2x2).
    assert labels() == (["HRS 2x2"], ("hrs",))
    assert labels(des_sweeps=("dropout", "hrs")) == ([f"Dropout {r / 10:g}" for r in range(1, 10)] + ["HRS 2x2"],
                                                     ("dropout", "hrs"))
    # With two HRS models the sweep takes subsets of the larger one, named after it, so their cells never
    # collide with a trained model's (a trained "HRS 2x2" is a different model from "HRS 2x2 of 3x3").
    assert labels(defenses=("none", "hrs:2x2", "hrs:3x3")) == (["HRS 2x2 of 3x3", "HRS 3x3"], ("hrs",))
    default = reproduction.plan_for("mnist")  # the paper's defenses, each as its module declares it
    assert [s.label for s in default.specs()] == ["Base", "SAP", "SAP (HRS variant)", "Dropout 0.1", "Dropout 0.3",
                                                  "Gaussian", "Adv. training", "HRS 5x5", "HRS 10x10"]
    assert default.des_sweeps == ("dropout", "gaussian", "hrs") and len(default.sweep_specs()) == 9 + 3 + 7
    with pytest.raises(ConfigError, match="unknown defense 'noise'"):
        reproduction.plan_for("mnist", des_sweeps=("noise",))
    with pytest.raises(ConfigError, match="repeat a model"):
        reproduction.plan_for("mnist", defenses=("hrs:5x5", "hrs:5x5"))
    with pytest.raises(ConfigError, match="models \\['HRS 9x9'\\] were given but this plan has no such model"):
        reproduction.Reproduction(data.load_dataset("mnist", tiny_mnist_dir), reproduction.plan_for("mnist", **PLAN),
                                  str(tmp_path), existing={"HRS 9x9": "x"})


BAD_FLAGS = [
    (["--defenses=hrs:5by5"], "channels '5by5' is not a list of channel counts like 5,5"),
    (["--epochs=hrs"], "--epochs='hrs' must be NAME:EPOCHS"),
    (["--use_model=Base"], "--use_model='Base' must be NAME=PATH"),
]


def test_tool_rejects_bad_flags_in_one_line(tmp_path, tiny_mnist_dir):
    results = run_script_cases("reproduce_hrs.py", [[f"--data_dir={tiny_mnist_dir}", *args, f"--work_dir={tmp_path / 'w'}",
                                                     f"--docs_dir={tmp_path / 'd'}"] for args, _ in BAD_FLAGS])
    for (args, message), result in zip(BAD_FLAGS, results):
        assert result.returncode == 2, result.stderr
        assert message in result.stderr.strip().splitlines()[-1], (args, result.stderr)
    assert not (tmp_path / "w").exists() and not (tmp_path / "d").exists()


def test_report_of_an_empty_work_dir_says_what_was_not_run(tmp_path, tiny_mnist_dir):
    dataset = data.load_dataset("mnist", tiny_mnist_dir)
    rep = reproduction.Reproduction(dataset, reproduction.plan_for("mnist", **PLAN), str(tmp_path / "work"))
    text = rep.report(str(tmp_path / "docs"), "python tools/reproduce_hrs.py --report_only")
    for experiment in ("fgsm_cw", "des", "ablation"):
        assert f"the `{experiment}` experiment has not been computed" in text
    assert "| Base | - | 99.04% |" in text  # the paper's number stands beside an empty cell
    assert "*The 0 result cells this report reads took 0 min to compute" in text
    assert (tmp_path / "docs" / "reproduce_hrs_mnist" / "pgd.png").read_bytes()[:4] == b"\x89PNG"  # empty panels


def test_sweep_member_is_the_first_channels_of_the_named_hrs_model(finished):
    _, _, rep, _ = finished
    rep.models.add("HRS 1x1 of 2x2", "hrs:1x1,of=2x2")
    member = rep.models.get("HRS 1x1 of 2x2")  # made from the trained HRS 2x2, not trained
    assert hrs.channel_counts(member) == [1, 1] and rep.models.file("HRS 1x1 of 2x2") is None
    with stochastic.pinned(member, (0, 0)), stochastic.pinned(rep.models.get("HRS 2x2"), (0, 0)):
        x = np.zeros((2, 28, 28, 1), np.float32)
        np.testing.assert_array_equal(member(x).numpy(), rep.models.get("HRS 2x2")(x).numpy())
    with pytest.raises(ConfigError, match="unknown model 'HRS 3x3'"):  # not a model of this plan
        rep.models.get("HRS 3x3")


def test_derandomized_cells_are_crafted_and_judged_without_randomness(finished):
    from hrs_tf import attacks

    dataset, work, rep, _ = finished
    cell = json.loads((work / "cells" / "attacks" / "hrs_pgd_derandomized_eps=0.25_HRS_2x2.json").read_text())
    assert cell["setting"] == "derandomized" and cell["judged_in"] == "off"
    # The same pairs attacked and predicted by hand on the model with randomness off (path (0, 0)).
    model = rep.models.get("HRS 2x2")
    x, y = dataset.x_test[:1], dataset.y_test[:1]
    targets = np.array([t for t in range(10) if t != y[0]])
    with stochastic.randomness(model, stochastic.OFF):
        adv = attacks.hrs_pgd(model, np.repeat(x, 9, axis=0), targets, eps=0.25)
        expected = float(np.mean(np.argmax(np.asarray(model(adv)), axis=1) == targets))
    assert cell["results"]["asr"] == expected and cell["results"]["asr_std_over_passes"] == 0.0
    assert json.loads((work / "cells" / "attacks" / "hrs_pgd_whitebox_eps=0.25_HRS_2x2.json").read_text())[
        "judged_in"] == "random"


def test_report_shows_only_what_its_plan_computes(finished, tmp_path):
    # Cells and a model of an ablation run made with another command share the work dir; a report whose plan
    # has no ablation must not show them as its own results.
    _, work, rep, _ = finished
    stray = work / "cells" / "accuracy" / "Ablation_1_blocks.json"
    stray.write_text(json.dumps({"accuracy": {"mean": 0.5, "std": 0.0}}))
    rep.models.provenance["Ablation 1 blocks"] = {"path": "runs/elsewhere", "spec": "hrs:5", "stochastic": True}
    try:
        text = rep.report(str(tmp_path), "cmd")
    finally:
        stray.unlink()
        del rep.models.provenance["Ablation 1 blocks"]
    assert "the `ablation` experiment has not been computed" in text and "50.00%" not in text
    assert "runs/elsewhere" not in text and "| Base | `" in text


def test_settings_name_only_the_models_the_command_trains(tmp_path, tiny_mnist_dir):
    dataset = data.load_dataset("mnist", tiny_mnist_dir)
    plan = reproduction.plan_for("mnist", **{**PLAN, "defenses": ("none", "adv:steps=10", "hrs:2x2")})
    rep = reproduction.Reproduction(dataset, plan, str(tmp_path / "a"))
    assert rep.trained_here() == "Base 1, Adv. training 20, HRS 2x2 1 per block"
    given = reproduction.Reproduction(dataset, plan, str(tmp_path / "b"),
                                      existing={"Base": "b.h5", "HRS 2x2": "h", "Adv. training": "a.h5"})
    assert given.trained_here() == "none: every model was given"
    ablation = reproduction.Reproduction(dataset, dataclasses.replace(plan, experiments=("ablation",)), str(tmp_path / "c"),
                                         existing={"Base": "b.h5", "HRS 2x2": "h"})
    assert ablation.trained_here() == ("Adv. training 20, Ablation 1 blocks 1 per block, Ablation 2 blocks 1 per block, "
                                       "Ablation 3 blocks 1 per block")


def test_two_block_ablation_is_the_hrs_model_of_the_same_shape_and_epochs(finished, tmp_path):
    dataset, work, _, _ = finished

    def ablation(**changes):
        plan = reproduction.plan_for("mnist", **{**PLAN, "experiments": ("ablation",), **changes})
        return reproduction.Reproduction(dataset, plan, str(tmp_path / "work"))

    assert ablation().ablation == ["Ablation 1 blocks", "Ablation 2 blocks", "Ablation 3 blocks"]  # 5 per block: no 5x5
    shutil.rmtree(tmp_path / "work")
    assert ablation(ablation_channels=2, ablation_epochs=2).ablation[1] == "Ablation 2 blocks"  # other epochs: trained anew
    shutil.rmtree(tmp_path / "work")
    assert ablation(ablation_channels=2).ablation == ["Ablation 1 blocks", "HRS 2x2", "Ablation 3 blocks"]
    # The report's 2-block row is the HRS 2x2 model's own accuracy and CW-PGD cells (no second measurement).
    shutil.rmtree(tmp_path / "work")
    shutil.copytree(work / "cells", tmp_path / "work" / "cells")
    rep = ablation(ablation_channels=2)
    text = rep.report(str(tmp_path / "docs"), "cmd")
    accuracy = rep.stored("accuracy", "HRS 2x2")["accuracy"]["mean"]
    asr = rep.stored("attacks", "hrs_cw_pgd|whitebox|eps=0.25|HRS 2x2")["results"]["asr"]
    assert f"| 2 (2x2) | {100 * accuracy:.2f}% | {100 * asr:.1f}% |" in text
    assert "| 1 (2) | - | - |" in text and "the 2-block model is the HRS 2x2 model above" in text


def test_gradient_histograms_sample_the_stochastic_model_at_the_base_models_steepest_pixels(finished, tmp_path):
    dataset, work, _, _ = finished
    shutil.copytree(work, tmp_path / "work")  # cells and trained models; the shared fixture stays as it was
    rep = reproduction.Reproduction(dataset, reproduction.plan_for("mnist", **{**PLAN, "experiments": ("deviation",)}),
                                    str(tmp_path / "work"), log=lambda line: None)
    rep.run()
    assert rep.stored("gradients", "Base") is None  # deterministic: a single spike, not plotted
    cell = rep.stored("gradients", "HRS 2x2")
    x, target = dataset.x_test[:1], (dataset.y_test[:1] + 1) % 10
    base = des.gradient_samples(rep.models.get("Base"), x, target, samples=2)[0, 0].ravel()
    assert cell["pixels"] == [int(p) for p in np.argsort(-np.abs(base), kind="stable")[:3]]
    samples = np.array(cell["samples"])
    assert samples.shape == (PLAN["deviation_samples"], 3)
    # Every sample is the gradient of one of the 4 switching paths at those pixels (Figure 1's sampling).
    model = rep.models.get("HRS 2x2")
    paths = []
    for path in np.ndindex(2, 2):
        with stochastic.pinned(model, path):
            paths.append(des.gradient_samples(model, x, target, samples=2)[0, 0].ravel()[cell["pixels"]])
    for sample in samples:
        assert min(np.abs(sample - p).max() for p in paths) < 1e-5
    text = rep.report(str(tmp_path / "docs"), "cmd")
    assert "![gradient histograms](reproduce_hrs_mnist/gradient_histograms.png)" in text
    assert os.path.getsize(tmp_path / "docs" / "reproduce_hrs_mnist" / "gradient_histograms.png") > 1000


def test_figures_redrawn_from_the_page_show_the_numbers_the_report_drew(finished, tmp_path, monkeypatch):
    """A committed page whose cells are gone: its ASR, FGSM / C&W and DES figures are redrawn from its tables, with
    the values the report plotted from the cells (to the page's printed precision: 0.1 pt ASR, 0.01 pt drops)."""
    from hrs_tf.experiments.hrs_paper import page_figures
    from hrs_tf.reporting import plots

    drawn = {}
    monkeypatch.setattr(plots, "plot_panels", lambda path, panels, *a, **k: drawn.__setitem__(str(path), panels))
    monkeypatch.setattr(plots, "plot_des", lambda path, points, title: drawn.__setitem__(str(path), (points, title)))
    _, _, rep, _ = finished
    rep.report(str(tmp_path), "python tools/reproduce_hrs.py --dataset=mnist")
    from_cells, drawn = drawn, {}
    written = page_figures.redraw_figures(str(tmp_path / "reproduce_hrs_mnist.md"))
    assert sorted(written) == sorted(os.path.relpath(p, tmp_path) for p in from_cells) == sorted(
        f"reproduce_hrs_mnist/{name}.png" for name in ("pgd", "cw-pgd", "fgsm_cw", "des_fgsm", "des_pgd", "des_cw-pgd"))
    assert drawn.keys() == from_cells.keys()
    for path, figure in from_cells.items():
        if path.split("/")[-1].startswith("des_"):
            (points, title), (again, again_title) = figure, drawn[path]
            assert title == again_title and again.keys() == points.keys() == {"Dropout", "HRS"}
            for family, family_points in points.items():
                assert [p["strength"] for p in again[family]] == [p["strength"] for p in family_points]
                for p, q in zip(family_points, again[family]):
                    assert abs(p["accuracy_drop"] - q["accuracy_drop"]) <= 0.5e-4 + 1e-12
                    assert abs(p["defense_gain"] - q["defense_gain"]) <= 1e-3 + 1e-12  # two ASRs at 0.1 pt
            continue
        assert drawn[path].keys() == figure.keys() and sum(map(len, figure.values())) >= 2
        for panel, series in figure.items():
            assert series.keys() == drawn[path][panel].keys()
            for label, (xs, ys) in series.items():
                xs_again, ys_again = drawn[path][panel][label]
                assert np.allclose(np.multiply(xs, 1.0), xs_again)
                assert np.abs(np.subtract(ys, ys_again)).max() <= 0.5e-3 + 1e-12


def test_redrawing_refuses_a_missing_page_or_one_that_is_not_an_hrs_report(tmp_path):
    from hrs_tf.experiments.hrs_paper import page_figures

    with pytest.raises(ConfigError, match="report page .*nope.md does not exist"):
        page_figures.redraw_figures(str(tmp_path / "nope.md"))
    (tmp_path / "other.md").write_text("# a page\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    with pytest.raises(ConfigError, match="has no test-accuracy table: not an HRS reproduction report"):
        page_figures.redraw_figures(str(tmp_path / "other.md"))
    assert sorted(os.listdir(tmp_path)) == ["other.md"]


def test_the_tool_redraws_a_pages_figures_without_its_cells(finished, tmp_path):
    _, _, rep, _ = finished
    text = rep.report(str(tmp_path), "python tools/reproduce_hrs.py --dataset=mnist")
    figures = tmp_path / "reproduce_hrs_mnist"
    shutil.rmtree(figures)
    result = run_script("reproduce_hrs.py", "--dataset=mnist", "--redraw_from_page", f"--docs_dir={tmp_path}",
                        "--data_dir=/nonexistent")  # nothing is loaded or computed
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(figures)) == ["cw-pgd.png", "des_cw-pgd.png", "des_fgsm.png", "des_pgd.png", "fgsm_cw.png",
                                           "pgd.png"]
    assert result.stdout.count("redrew ") == 6 and (tmp_path / "reproduce_hrs_mnist.md").read_text() == text
    missing = run_script("reproduce_hrs.py", "--dataset=fashion_mnist", "--redraw_from_page", f"--docs_dir={tmp_path}")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].endswith(
        f"report page {tmp_path / 'reproduce_hrs_fashion_mnist.md'} does not exist")
