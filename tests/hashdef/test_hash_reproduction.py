"""The hash paper's reproduction driver (cells, report) and its tools, on the session's small MNIST model."""

import json

import numpy as np
import pytest

import hashdef  # noqa: F401
from hashdef.experiments import reproduction
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import protocol
from hrs_tf.models import serialization
from tests.attacks.helpers import trained_model
from tests.tool_runner import run_script, run_script_cases


def test_reproduction_cells_equal_direct_evaluation_and_fill_the_report(real_mnist, tmp_path):
    model = trained_model(real_mnist)
    base = tmp_path / "base.h5"
    serialization.save_model(model, base)
    plan = reproduction.plan_for("mnist", fast_images=30, histogram_images=20)
    rep = reproduction.Reproduction(real_mnist, plan, str(tmp_path / "work"), {"Original": str(base)},
                                    log=lambda line: None)
    assert rep.models.entries["Hash + GI3"][0] == registry.parse("gi3:on=hash")
    cell = rep.attack("GI2", "FGSM")
    direct = protocol.evaluate_protocol(registry.parse("gi2").apply(model), real_mnist, "fgsm", 30, targets="none",
                                        passes=1, progress=False, eps=0.3)
    assert cell["results"]["asr"] == pytest.approx(direct["results"]["asr"])
    original = rep.attack("Original", "FGSM")
    assert cell["results"]["asr"] < original["results"]["asr"]  # GI2's saturated softmax stops FGSM (Table II)
    rep.accuracy("GI2")
    rep.histograms("GI2")
    # a hand-made C&W cell: the distortion table reads its ASR and the mean L2 of its successful examples
    rep.cells.cell("attacks", "C&W|GI2", lambda: {"results": {"asr": 0.5, "distortion_of_successful": {
        "l2": {"mean": 1.234, "median": 1.0, "std": 0.1}}}})
    text = rep.report(str(tmp_path / "docs"), "python tools/reproduce_hash.py --test")
    distortions = text.split("### Beyond the paper: the distortion C&W and EAD needed")[1]
    assert "| GI2 | 50.0 | 1.23 | - | - | - |" in distortions.splitlines()
    assert "| Original | - | - | - | - | - |" in distortions.splitlines()
    row = next(line for line in text.splitlines() if line.startswith("| GI2 |") and "(0.45)" in line)
    assert f"{100 * cell['results']['asr']:.1f} (0.45)" in row  # ours beside the paper's 0.45% (FGSM, GI2)
    fgsm = f"{100 * cell['results']['asr']:.1f}"  # the adaptive table: FGSM only, so the worst case is a lower bound
    assert f"| GI2 | {fgsm} | - | - | - | - | - | - | >= {fgsm} |" in text.splitlines()
    assert (tmp_path / "docs" / "reproduce_hash" / "mnist_gradients.png").exists()
    # a resumed reproduction with another scale on a content key is refused
    with pytest.raises(ConfigError):
        reproduction.Reproduction(real_mnist, reproduction.plan_for("mnist", fast_images=31), str(tmp_path / "work"),
                                  {"Original": str(base)}, log=lambda line: None)
    with pytest.raises(ConfigError, match="experiment"):
        reproduction.plan_for("mnist", experiments=("table9",))


def test_figures_3_4_set_adversarial_training_beside_an_adaptive_attacker(real_mnist, tmp_path):
    model = trained_model(real_mnist)
    base = tmp_path / "base.h5"
    serialization.save_model(model, base)
    plan = reproduction.plan_for("mnist", adv_epochs=1, adv_steps=2, figure_images=10, bpda_images=10,
                                 experiments=("figures34", "adaptive"))
    rep = reproduction.Reproduction(real_mnist, plan, str(tmp_path / "work"), {"Original": str(base)},
                                    log=lambda line: None)
    keys = [entry[:2] for entry in rep.results()]
    assert len(keys) == len(set(keys))  # the adaptive cells both experiments use are planned once
    assert rep.figure_models == ["Original", "Hash + GI1", "Hash + GI2", "PGD adv. training"]
    for name in rep.figure_models:
        assert ("accuracy", name) in keys
        assert {("attacks", reproduction.cell_name(name, c)) for c in reproduction.ADAPTIVE} <= set(keys)
    assert rep.adaptive_models[-1] == "PGD adv. training"
    only_figures = reproduction.Reproduction(real_mnist, plan, str(tmp_path / "work"), {"Original": str(base)},
                                             log=lambda line: None, experiments=("figures34",))
    assert {entry[:2] for entry in only_figures.results()} >= {("attacks", reproduction.cell_name(
        name, "Square")) for name in rep.figure_models}  # figures34 alone plans them too
    # the report: the figure's models beside their adaptive ASR, what is not computed yet as "-"
    rep.accuracy("Original")
    rep.attack("Original", "FGSM", eps=0.05, num_images=10)
    margin = rep.attack("Original", "PGD margin")["results"]["asr"]
    text = rep.report(str(tmp_path / "docs"), "python tools/reproduce_hash.py --test")
    accuracy = 100 * rep.cells.stored("accuracy", "Original")["accuracy"]
    lines = text.splitlines()
    assert f"| Original | {accuracy:.2f} | {100 * margin:.1f} | - | - | >= {100 * margin:.1f} |" in lines
    assert "| PGD adv. training | - | - | - | - | - |" in lines  # the figures' table
    assert "| PGD adv. training | - | - | - | - | - | - | - | - |" in lines  # the adaptive table has its row too
    assert "## Figures 3-4" in text and "## Beyond the paper" in text and "## Table I" not in text


def test_train_hash_tool_refuses_bad_rates_without_writing(tmp_path):
    out = tmp_path / "hash.h5"
    result = run_script("train_hash.py", "--base_model=nowhere.h5", "--cr1=1.5", f"--output={out}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "compression_rate" in last and "1.5" in last and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_reproduce_hash_report_only_writes_an_empty_report(tmp_path):
    # the whole page, then a run of one experiment (one process runs both, see run_script_cases)
    common = ["--dataset=mnist", "--data_dir=../shared/data", "--report_only", f"--work_dir={tmp_path / 'work'}",
              "--fast_images=10"]
    result, only = run_script_cases("reproduce_hash.py", [[*common, f"--docs_dir={tmp_path / 'docs'}"],
                                                          [*common, f"--docs_dir={tmp_path / 'only'}", "--experiments=figures34"]])
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "docs" / "reproduce_hash_mnist.md").read_text()
    assert "| Original | - (0.0863) | - (72.8)" in text  # every cell missing, the paper's numbers beside
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    assert plan["fast_images"] == 10 and np.isclose(plan["eps"], 0.3)
    headings = [line.split(":")[0] for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Table I", "## Table II", "## Table III", "## Table IV", "## Table VII",
                        "## Beyond the paper", "## Figure 2", "## Figures 3-4"]
    # a run of one experiment gets a page of its section only
    assert only.returncode == 0, only.stderr[-2000:]
    text = (tmp_path / "only" / "reproduce_hash_mnist.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## Figures 3-4: FGSM against eps, BIM "
                                                                              "against alpha"]


def test_adversarial_training_of_figures_3_4_takes_its_pgd_steps_from_the_plan(real_mnist, tmp_path):
    make = lambda where, **scale: reproduction.Reproduction(  # noqa: E731
        real_mnist, reproduction.plan_for("mnist", **scale), str(tmp_path / where), log=lambda line: None)
    assert make("none").adv is None  # adv_epochs 0: not in the plan
    default, cheap = make("default", adv_epochs=2), make("cheap", adv_epochs=2, adv_steps=7)
    assert default.models.entries[default.adv] == (registry.parse("adv"), 2)
    assert cheap.models.entries[cheap.adv] == (registry.parse("adv:steps=7"), 2)
    assert registry.parse("adv:steps=7") != registry.parse("adv")
    warm = make("warm", adv_epochs=2, adv_steps=5, adv_warmup=3)
    assert warm.models.entries[warm.adv] == (registry.parse("adv:steps=5,warmup=3"), 2)
    assert make("warm only", adv_epochs=2, adv_warmup=3).models.entries[warm.adv][0].text == "adv:warmup=3"
    with pytest.raises(ConfigError, match="steps"):
        make("bad", adv_epochs=1, adv_steps=0)
    with pytest.raises(ConfigError, match="PGD adv. training"):  # the same folder, another adversarial model: refused
        make("cheap", adv_epochs=2, adv_steps=10)
