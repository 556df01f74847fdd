"""The adaptive-attack battery: per-image worst case, its checks on a masked and an honest toy defense, settings."""

import os

import numpy as np
import pytest

from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import battery
from hrs_tf.evaluation.battery import summary
from hrs_tf.models import serialization
from tests.evaluation import battery_toys

SMALL = dict(images=40, steps=10, restarts=2, square_queries=300, eot_grid=(1, 4), bpda_eot=2)


def test_worst_case_is_per_image():
    clean = np.array([1, 1, 1, 1, 0], bool)
    robust = {"pgd_ce": np.array([1, 0, 1, 1, 1], bool), "square": np.array([1, 1, 0, 1, 1], bool)}
    # each attack alone leaves 3 of the 5 images robust; per image the worst case leaves 2 (images 0 and 3)
    assert summary.worst_case(clean, robust).tolist() == [True, False, False, True, False]
    s = summary.summarize(clean, {n: {"robust": r, "cost": 1.0, "cost_kind": "gradients"} for n, r in robust.items()})
    assert s["robust_accuracy"] == pytest.approx(0.4)
    assert s["per_attack"] == {"pgd_ce": pytest.approx(0.6), "square": pytest.approx(0.6)}
    assert s["decisive"] == "pgd_ce"  # a tie goes to the first attack in the battery's order
    assert s["unique_breaks"] == {"pgd_ce": 1, "square": 1}


@pytest.fixture(scope="module")
def toys(real_mnist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("battery_toys")
    model = battery_toys.classifier(real_mnist)
    paths = {"plain": str(folder / "plain.h5"), "masked": str(folder / "masked.h5"),
             "ignores": str(folder / "ignores.h5")}
    serialization.save_model(model, paths["plain"])
    serialization.save_model(battery_toys.masked(model), paths["masked"])
    serialization.save_model(battery_toys.ignoring(real_mnist, label=1), paths["ignores"])
    return folder, paths


def run_battery(real_mnist, folder, paths, defenses, attacks=None, **settings):
    plan = battery.plan_for("mnist", threats=("linf",), **{**SMALL, **settings})
    run = battery.Battery(real_mnist, plan, battery.parse_defenses(defenses), str(folder / "work"),
                          transfer_from=paths["plain"], attacks=attacks, log=lambda line: None)
    run.run()
    return run, run.results()


def test_masked_toy_is_flagged_and_broken(real_mnist, toys):
    folder, paths = toys
    run, results = run_battery(real_mnist, folder, paths, [f"Masked=none={paths['masked']}"],
                               attacks=["pgd_ce", "pgd_margin", "apgd_ce", "one_step", "square", "transfer"])
    r = results["Masked"]["linf"]
    clean = r["summary"]["clean_accuracy"]
    assert clean >= 0.8
    # every gradient attack sees a zero gradient: only the random starts (uniform noise in the ball, 2 restarts)
    # break an image (5 of 40 at most here; bound: 8) ...
    for name in ("pgd_ce", "pgd_margin", "apgd_ce", "one_step"):
        assert r["summary"]["per_attack"][name] >= clean - 0.2, name
    assert r["summary"]["per_attack"]["one_step"] == pytest.approx(clean)  # no random start: nothing moves
    # ... while the battery's gradient-free attacks break nearly every image (tolerance: 15% of the images left)
    assert r["summary"]["robust_accuracy"] <= 0.15
    assert r["summary"]["decisive"] in ("square", "transfer")
    assert r["summary"]["missing"] == []  # every attack that applies was run
    flags = {name: f["raised"] for name, f in r["flags"].items()}
    assert flags["unbounded"] and flags["gradient_free_beats_white_box"] and flags["standard_attack_overstates"]
    assert not flags["hidden_randomness"]
    assert r["flags"]["unbounded"]["success"] == 0.0


def test_model_that_ignores_its_input_is_robust_and_not_flagged(real_mnist, toys):
    folder, paths = toys
    run, results = run_battery(real_mnist, folder, paths, [f"Constant=none={paths['ignores']}"])
    r = results["Constant"]["linf"]
    expected = float(np.mean(real_mnist.y_test[:SMALL["images"]] == 1))
    assert r["summary"]["clean_accuracy"] == pytest.approx(expected)
    assert r["summary"]["robust_accuracy"] == pytest.approx(expected)  # no attack can change its decision
    assert not any(f["raised"] for f in r["flags"].values()), r["flags"]
    assert r["flags"]["unbounded"]["reachable"] == 0


def test_battery_cells_resume_and_refuse_changed_settings(real_mnist, toys, tmp_path):
    _, paths = toys
    plan = battery.plan_for("mnist", threats=("linf",), **{**SMALL, "images": 10})
    defenses = battery.parse_defenses([f"Plain=none={paths['plain']}"])
    first = battery.Battery(real_mnist, plan, defenses, str(tmp_path), attacks=["pgd_ce", "one_step"],
                            log=lambda line: None)
    first.run()
    computed = []
    again = battery.Battery(real_mnist, plan, defenses, str(tmp_path), attacks=["pgd_ce", "one_step"],
                            log=computed.append)
    again.run()
    assert not [line for line in computed if line.startswith("[")]  # nothing computed again
    assert again.results() == first.results()
    os.remove(again.cells.path("attack", "Plain|linf|one_step"))  # as if the run had been stopped before it
    partial = battery.Battery(real_mnist, plan, defenses, str(tmp_path), attacks=["pgd_ce", "one_step"],
                              log=lambda line: None)
    assert partial.results()["Plain"]["linf"]["summary"]["missing"] == ["one_step"]
    with pytest.raises(ConfigError, match="steps"):
        battery.Battery(real_mnist, battery.plan_for("mnist", **{**SMALL, "images": 10, "steps": 11}), defenses,
                        str(tmp_path))
    with pytest.raises(ConfigError, match="linf"):  # another radius is another run
        battery.Battery(real_mnist, battery.plan_for("mnist", threats=("linf",), linf=0.1, **{**SMALL, "images": 10}),
                        defenses, str(tmp_path))


def test_a_radius_other_than_the_standard_one_is_attacked_and_names_the_run(real_mnist, toys, tmp_path):
    plan = battery.plan_for("mnist", linf=0.3, l2=1.5)
    assert (plan.eps("linf"), plan.eps("l2"), plan.name()) == (0.3, 1.5, "mnist_l21.5")  # 0.3 is the standard
    for bad, message in (({"linf": 1.5}, "exceeds 1"), ({"l2": 0}, "l2 radius"), ({"linf": -0.1}, "linf radius")):
        with pytest.raises(ConfigError, match=message):
            battery.plan_for("mnist", **bad)
    # the toy classifier at L-inf 0.02 keeps most images, at the standard 0.3 none: the radius is the one attacked
    _, paths = toys
    defenses = battery.parse_defenses([f"Plain=none={paths['plain']}"])
    robust = {}
    for linf in (0.02, 0.3):
        plan = battery.plan_for("mnist", threats=("linf",), linf=linf, **{**SMALL, "images": 20})
        run = battery.Battery(real_mnist, plan, defenses, str(tmp_path / plan.name()), attacks=["pgd_ce"],
                              log=lambda line: None)
        run.run()
        robust[linf] = run.results()["Plain"]["linf"]["summary"]["robust_accuracy"]
    assert robust[0.3] == 0.0 and robust[0.02] >= 0.5, robust


def test_settings_and_defense_items_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="eot_grid"):
        battery.plan_for("mnist", eot_grid=(4, 1))
    with pytest.raises(ConfigError, match="threat"):
        battery.plan_for("mnist", threats=("l1",))
    with pytest.raises(ConfigError, match="steps"):
        battery.plan_for("mnist", steps=0)
    model = tmp_path / "m.h5"
    model.write_text("")
    with pytest.raises(ConfigError, match="does not exist"):
        battery.parse_defenses([f"none={tmp_path / 'missing.h5'}"])
    with pytest.raises(ConfigError, match="twice"):
        battery.parse_defenses([f"A=none={model}", f"A=dropout:0.3={model}"])
    with pytest.raises(ConfigError, match="SPEC=PATH"):
        battery.parse_defenses(["none"])
    with pytest.raises(ConfigError, match="unknown defense"):
        battery.parse_defenses([f"A=nosuch={model}"])
    with pytest.raises(ConfigError, match="a LABEL has no '='"):
        battery.parse_defenses([f"RC (t=100)=region:0.4,100={model}"])
    specs = battery.parse_defenses([f"dropout:0.3={model}", f"My GI=gi3:0.2,layers=3={model}"])
    assert [(d.label, d.spec) for d in specs] == [("Dropout 0.3", "dropout:0.3"), ("My GI", "gi3:0.2")]


def _cell(robust, **trace):
    return {"robust": np.asarray(robust, bool), "cost": 1.0, "cost_kind": "gradients", "trace": trace}


def test_masking_flags_count_differences_at_the_stated_tolerance():
    plan = battery.plan_for("mnist", images=100)  # tolerance: 2% of 100 images = 2 images
    correct = np.ones(100, bool)
    clean = {"correct": correct.tolist(), "stochastic": False, "output_spread": 0.0}
    robust = lambda broken: np.arange(100) >= broken  # noqa: E731  (the first `broken` images broken)
    results = {"pgd_ce": _cell(robust(10), broken_after=[9, 10]), "one_step": _cell(robust(11)),
               "square": _cell(robust(12))}
    flags = summary.masking_flags(clean, None, results, plan)
    assert not flags["one_step_beats_many"]["raised"]  # 11 vs 10 broken: 1 image, under the tolerance
    assert flags["gradient_free_beats_white_box"]["images"] == 1 and not flags["gradient_free_beats_white_box"]["raised"]
    assert not flags["not_converged"]["raised"] and not flags["standard_attack_overstates"]["raised"]
    results = {"pgd_ce": _cell(robust(10), broken_after=[8, 10]), "one_step": _cell(robust(12)),
               "square": _cell(robust(19))}
    flags = summary.masking_flags(clean, None, results, plan)
    assert flags["one_step_beats_many"]["raised"] and flags["not_converged"]["raised"]
    assert flags["gradient_free_beats_white_box"]["images"] == 7
    assert flags["standard_attack_overstates"]["raised"] is False  # 9 images; the bar is 10% of the 100 images
    results["square"] = _cell(robust(20))
    assert summary.masking_flags(clean, None, results, plan)["standard_attack_overstates"]["raised"]
    assert not summary.masking_flags({**clean, "output_spread": 0.01}, None, results, plan,
                                     first_threat=False).get("hidden_randomness")
    assert summary.masking_flags({**clean, "output_spread": 0.01}, None, results, plan)["hidden_randomness"]["raised"]
