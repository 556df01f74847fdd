"""The attack-budget check of Table 4 (randspike.translucent.budget, tools/cw_budget.py): what it counts on a
hand-made case, that every budget attacks the same images and targets, and the tool's bad input."""

import os

import numpy as np
import pytest

from randspike import decision
from randspike.translucent import budget, examples


def test_summarise_counts_l2_over_found_and_targets_reached_only_among_found(monkeypatch):
    made = {"found": np.array([True, True, False, True]), "l2": np.array([1.0, 3.0, 0.0, 2.0]),
            "adv": np.zeros((4, 28, 28, 1), np.uint8)}
    targets = np.array([1, 2, 3, 4])
    # the source labels image 0 and 3 as their targets, image 1 as 0 and image 2 (not found) as its target
    monkeypatch.setattr(decision, "labels", lambda model, x, rule=None, **k: np.array([1, 0, 3, 4]))
    monkeypatch.setattr(decision, "rule_or_error", lambda rule, model: rule)
    row = budget.summarise(object(), made, targets)
    assert row == {"examples": 4, "found": 3, "l2_mean": pytest.approx(2.0), "l2_std": pytest.approx(np.sqrt(2 / 3)),
                   "reach_target_after_rounding": 2}


def test_a_rejection_never_counts_as_reaching_the_target(monkeypatch):
    made = {"found": np.array([True, True]), "l2": np.array([1.0, 1.0]), "adv": np.zeros((2, 28, 28, 1), np.uint8)}
    monkeypatch.setattr(decision, "labels", lambda model, x, rule=None, **k: np.array([decision.REJECTED, 5]))
    monkeypatch.setattr(decision, "rule_or_error", lambda rule, model: rule)
    assert budget.summarise(object(), made, np.array([3, 5]))["reach_target_after_rounding"] == 1


def test_every_budget_attacks_the_same_images_and_targets(monkeypatch, real_mnist):
    from tests.randspike.helpers import linear_mnist_model

    model = linear_mnist_model(real_mnist, epochs=1, images=1000)
    x, y = real_mnist.x_test[:6], real_mnist.y_test[:6]
    calls = []
    generate = examples.generate

    def recording(surrogates, x_in, targets, confidence, **settings):
        calls.append((x_in, targets, confidence, settings))
        return generate(surrogates, x_in, targets, confidence, **settings)

    monkeypatch.setattr(examples, "generate", recording)
    cheap = {"max_iterations": 20, "binary_search_steps": 2, "learning_rate": 0.1, "initial_const": 10.0}
    rows = budget.compare(model, x, y, 10, {"a": cheap, "b": dict(cheap, max_iterations=60)}, confidence=0.0, seed=5)
    assert list(rows) == ["a", "b"] and len(calls) == 2
    assert np.array_equal(calls[0][0], calls[1][0]) and np.array_equal(calls[0][1], calls[1][1])
    assert np.array_equal(calls[0][1], examples.random_targets(y, 10, 5))
    assert calls[1][3]["max_iterations"] == 60 and rows["b"]["settings"]["max_iterations"] == 60
    # the row is what the protocol's own generate gives for the same call (C&W on a deterministic model repeats)
    made = generate([model], x, calls[0][1], 0.0, **cheap)
    assert rows["a"]["found"] == int(made["found"].sum()) >= 4
    assert rows["a"]["l2_mean"] == pytest.approx(float(made["l2"][made["found"]].mean()), rel=1e-6)
    assert 0 < rows["a"]["reach_target_after_rounding"] <= rows["a"]["found"]


def test_the_paper_budget_is_section_5_4_s():
    assert budget.PAPER == {"max_iterations": 1000, "binary_search_steps": 9, "learning_rate": 0.01,
                            "initial_const": 0.001}


def test_the_tool_names_an_unknown_budget_and_writes_nothing(tmp_path):
    from tests.tool_runner import run_script

    out = tmp_path / "budget.json"
    result = run_script("cw_budget.py", "--model=missing.h5", "--budgets=pages,huge", f"--output={out}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: budget='huge' is not one of pages, paper"
    assert not os.path.exists(out)


def test_the_tool_writes_the_budgets_rows_with_settings_and_versions(tmp_path, real_mnist, shared_data_dir):
    import json

    from tests.randspike.helpers import linear_mnist_model
    from tests.tool_runner import run_script

    path = tmp_path / "linear.h5"
    linear_mnist_model(real_mnist, epochs=1, images=1000).save(path)
    out = tmp_path / "budget.json"
    result = run_script("cw_budget.py", f"--model={path}", "--dataset=mnist", f"--data_dir={shared_data_dir}",
                        "--images=4", "--budgets=pages", f"--output={out}")
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    row = written["budgets"]["pages"]
    assert list(written["budgets"]) == ["pages"] and row["settings"] == budget.PAGES and row["examples"] == 4
    assert 0 <= row["reach_target_after_rounding"] <= row["found"] <= 4 and "tensorflow" in written["versions"]
