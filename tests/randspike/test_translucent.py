"""The translucent-box evaluation (Random Spiking paper sections 3.2, 5.4, 5.5): the fleet roles, the 5/7 filter and
its rotations on hand-made cases, L2 buckets, 8-bit rounding and random targets of the examples, what is attacked for
a decider, and a whole tiny study: cells, results, resume after a kill, report, cells computed in another order."""

import dataclasses
import json
import os
import types

import keras
import numpy as np
import pytest

from hrs_tf.defenses import registry
from hrs_tf.defenses.dropout import with_defensive_dropout
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.execution import ordered
from randspike import decision
from randspike.translucent import examples, report, strategies, study
from tests.experiments import test_fleet

defenses = test_fleet.defenses  # the fixture registering test-only defenses (a copy of the registry)
CentroidDefense = test_fleet.CentroidDefense


class DroppedDefense(test_fleet.MarkedDefense):
    name = "fleet_test_dropped"
    summary = "the centroid model with dropout on its logits at test time: stochastic (tests/randspike)"

    def apply(self, args, model, seed=None):
        return with_defensive_dropout(model, 0.3, train_rate=0, seed=seed)


def stored(work, folder):
    """{relative path: JSON without its ``*seconds`` fields} of every JSON file under ``work/folder``."""
    out = {}
    for root, _, files in os.walk(os.path.join(work, folder)):
        for file in files:
            if file.endswith(".json"):
                path = os.path.join(root, file)
                out[os.path.relpath(path, work)] = {k: v for k, v in json.loads(open(path).read()).items()
                                                    if not k.endswith("seconds")}
    return out


def same_examples(work_a, work_b):
    """Whether two studies stored the same example files with equal arrays; the number of files."""
    files = sorted(os.listdir(os.path.join(work_a, "examples")))
    if files != sorted(os.listdir(os.path.join(work_b, "examples"))):
        return False, len(files)
    for file in files:
        with np.load(os.path.join(work_a, "examples", file)) as a, np.load(os.path.join(work_b, "examples", file)) as b:
            if a.files != b.files or not all(np.array_equal(a[k], b[k]) for k in a.files):
                return False, len(files)
    return True, len(files)


# -- roles and strategies -----------------------------------------------------------------------------------------
def test_paper_roles_split_sixteen_models():
    roles = strategies.Roles()
    assert roles.held_out == tuple(range(8, 16)) and roles.validators == 7
    assert roles.single_targets(0) == tuple(range(4, 16))  # "the remaining 12 target models"
    rotations = roles.rotations()
    assert len(rotations) == 8 and all(len(v) == 7 and t not in v for t, v in rotations)
    assert {t for t, _ in rotations} == set(range(8, 16))
    with pytest.raises(ConfigError, match="threshold of 8 exceeds the 7 validation models"):
        strategies.Roles(threshold=8)
    with pytest.raises(ConfigError, match="15 source models leave fewer than 2"):
        strategies.Roles(sources=15)
    with pytest.raises(ConfigError, match="not a Single source"):
        roles.single_targets(4)


def test_validation_keeps_what_fools_five_of_seven_and_rotates_the_target():
    # 8 held-out models (rows) x 4 examples (columns), all in one bucket.
    fooled = np.zeros((8, 4), bool)
    fooled[:, 0] = True  # fools all 8: passes every rotation, transfers every time
    fooled[:5, 1] = True  # fools models 0-4: with target in 0-4 only 4 validators fooled -> fails;
    #                       with target in 5-7 the 7 validators include all five -> passes, never transfers
    fooled[:6, 2] = True  # fools 0-5: target in 0-5 -> 5 validators fooled, passes and transfers;
    #                       target 6-7 -> 6 fooled, passes, does not transfer
    # so rotations 0-4 keep examples 0, 2 (both transfer); rotation 5 keeps 0, 1, 2 (0 and 2 transfer);
    # rotations 6, 7 keep 0, 1, 2 (only 0 transfers)
    fooled[:4, 3] = True  # fools 4: never 5 validators -> never passes
    l2 = np.full(4, 0.5)
    out = strategies.validated_by_bucket(fooled, l2, (0.0, 1.0), threshold=5)
    rotations = out["rotations"]
    assert [r["passed"][0] for r in rotations] == [2, 2, 2, 2, 2, 3, 3, 3]
    # per rotation, transfer rate of the passing examples to the target
    expected = [1.0] * 5 + [2 / 3, 1 / 3, 1 / 3]
    assert [r["transfer"][0] for r in rotations] == pytest.approx(expected)
    assert out["transfer"][0] == pytest.approx(np.mean(expected))
    assert out["passing"][0] == pytest.approx(np.mean([2 / 4] * 5 + [3 / 4] * 3))
    # a threshold of 7 keeps only example 0
    assert strategies.validated_by_bucket(fooled, l2, (0.0, 1.0), 7)["transfer"][0] == 1.0


def test_outcome_shares_split_judgements_into_target_rejected_and_other():
    labels = np.array([[3, -1, 5, 3], [-1, -1, 2, 7]])  # 2 target models x 4 examples; -1: rejected
    targets = np.array([3, 4, 2, 7])
    assert strategies.outcome_shares(labels, targets) == {"judgements": 8, "target": 3 / 8, "rejected": 3 / 8,
                                                          "other": 2 / 8}
    assert strategies.outcome_shares(np.zeros((2, 0)), np.zeros(0))["target"] is None
    # by L2 bucket: examples 0 and 2 in (0, 1], example 1 in (1, 2], example 3 (L2 5) in none
    shares = strategies.outcome_shares(labels, targets, l2=np.array([0.5, 1.5, 1.0, 5.0]), edges=(0.0, 1.0, 2.0))
    assert shares["judgements"] == 8 and shares["rejected"] == 3 / 8  # the whole is unchanged
    assert shares["by_bucket"] == [{"judgements": 4, "target": 2 / 4, "rejected": 1 / 4, "other": 1 / 4},
                                   {"judgements": 2, "target": 0.0, "rejected": 1.0, "other": 0.0}]


def test_the_rejection_section_lists_only_schemes_that_rejected():
    share = lambda t, r: {"judgements": 10, "target": t, "rejected": r, "other": 1 - t - r}  # noqa: E731
    results = {"schemes": ["Standard", "MagNet"],
               "outcomes": {"Standard": {"Standard": share(0.6, 0.0), "MagNet": share(0.2, 0.5)},
                            "MagNet": {"Standard": share(0.3, 0.0), "MagNet": share(0.8, 0.1)}}}
    names = report.titles(strategies.Roles())
    text = "\n".join(report.outcomes_section(results, names))
    assert "| Standard | Multi-8 | MagNet | 10 | 20.0% | 50.0% | 30.0% |" in text
    assert "| MagNet | Multi-8 | MagNet | 10 | 80.0% | 10.0% | 10.0% |" in text
    assert "| Standard | Multi-8 | Standard |" not in text and "| Standard | Single | Standard |" not in text
    assert "| MagNet | Multi-8 | Standard |" not in text and "| Single |" not in text  # Standard never rejects
    results["single_outcomes"] = {"Standard": share(0.9, 0.0), "MagNet": share(0.4, 0.25)}  # Single: own models
    text = "\n".join(report.outcomes_section(results, names))
    assert "| MagNet | Single | MagNet | 10 | 40.0% | 25.0% | 35.0% |" in text and text.count("| Single |") == 1
    results["outcomes"]["Standard"]["MagNet"]["rejected"] = results["outcomes"]["MagNet"]["MagNet"]["rejected"] = 0.0
    assert "| MagNet | Single | MagNet |" in "\n".join(report.outcomes_section(results, names))  # Single rejected
    assert "by the example's L2" not in text  # results written before the bucket counts: no bucket table
    results["edges"] = [0.0, 1.0, 2.0]
    for source, target in (("Standard", "MagNet"), ("MagNet", "MagNet")):
        results["outcomes"][source][target]["by_bucket"] = [share(0.5, 0.25), dict(share(0, 0), judgements=0)]
    results["single_outcomes"]["MagNet"]["by_bucket"] = [share(0.4, 0.1), share(0.4, 0.4)]
    text = "\n".join(report.outcomes_section(results, names))
    assert "| source | examples | target | L2 (0, 1] | L2 (1, 2] |" in text
    assert "| Standard | Multi-8 | MagNet | 25.0% (n=10) | - |" in text
    assert "| MagNet | Single | MagNet | 10.0% (n=10) | 40.0% (n=10) |" in text
    results["single_outcomes"]["MagNet"]["rejected"] = 0.0
    assert report.outcomes_section(results, names) == []
    assert report.outcomes_section({"schemes": ["Standard"]}, names) == []  # results written before the counts


def test_the_held_out_section_shows_each_model_s_share_so_a_failed_member_stands_out():
    results = {"schemes": ["Standard", "RS-1-Adv"],
               "held_out": {"Standard": {"8": {"fooled": 40, "judged": 50}, "10": {"fooled": 41, "judged": 50}},
                            "RS-1-Adv": {"8": {"fooled": 39, "judged": 50}, "10": {"fooled": 9, "judged": 50}}}}
    text = "\n".join(report.held_out_section(results, report.titles(strategies.Roles())))
    assert "| target scheme | model 8 | model 10 |" in text  # models in numeric order
    assert "| Standard | 80.0% (n=50) | 82.0% (n=50) |" in text
    assert "| RS-1-Adv | 78.0% (n=50) | 18.0% (n=50) |" in text
    assert report.held_out_section({"schemes": ["Standard"]}, {}) == []  # results written before the counts
    counts = strategies.count_by_model({}, [8, 10], [[1, 1, 0], [0, 0, 0]])  # summed over the sources' cells
    assert strategies.count_by_model(counts, [8, 10], [[1, 0], [0, 1]]) == {"8": {"fooled": 3, "judged": 5},
                                                                            "10": {"fooled": 1, "judged": 5}}


def test_buckets_and_transfer_rates_by_bucket():
    edges = strategies.default_edges("mnist")
    assert edges == (0.0, 0.75, 1.5, 2.25, 3.0)
    l2 = np.array([0.0, 0.75, 0.76, 2.9, 3.0, 3.01])
    assert strategies.bucket_of(l2, edges).tolist() == [0, 0, 1, 3, 3, -1]  # (a, b]; above the cut-off: none
    fooled = np.array([[1, 0, 1, 1, 0, 1], [1, 1, 0, 1, 0, 1]], bool)  # 2 targets
    assert strategies.transfer_by_bucket(fooled, l2, edges) == [0.75, 0.5, None, 0.5]
    assert strategies.counts_by_bucket(l2, edges) == [2, 1, 0, 2]
    with pytest.raises(ConfigError, match="increasing"):
        strategies.check_edges((0.0, 1.0, 1.0))


# -- examples ---------------------------------------------------------------------------------------------------------
def test_random_targets_are_seeded_and_never_the_true_label():
    labels = np.arange(1000) % 10
    targets = examples.random_targets(labels, 10, seed=3)
    assert np.all(targets != labels) and np.array_equal(targets, examples.random_targets(labels, 10, seed=3))
    assert not np.array_equal(targets, examples.random_targets(labels, 10, seed=4))
    counts = np.bincount((targets - labels) % 10, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 80  # ~111 each of the 9 other labels (binomial sd ~10)


def test_generated_examples_are_8_bit_and_measured_after_rounding(real_mnist):
    from tests.randspike.helpers import linear_mnist_model

    model = linear_mnist_model(real_mnist, epochs=1, images=1000)
    x, y = real_mnist.x_test[:8], real_mnist.y_test[:8]
    targets = examples.random_targets(y, 10, seed=0)
    made = examples.generate([model, model], x, targets, 0.0, max_iterations=50, binary_search_steps=2,
                             learning_rate=0.1, initial_const=10.0)
    assert made["adv"].dtype == np.uint8 and made["found"].sum() >= 6
    rounded = examples.as_float(made["adv"])
    assert np.allclose(made["l2"], np.sqrt(np.sum((rounded - x) ** 2, axis=(1, 2, 3))))
    assert np.all(made["l2"][~made["found"]] == 0.0)
    assert np.array_equal(np.round(rounded * 255) / 255, rounded)
    predicted = np.argmax(np.asarray(model(rounded)), axis=-1)
    assert np.mean(predicted[made["found"]] == targets[made["found"]]) >= 0.6  # rounding may undo a few (K = 0)


def test_rounding_to_8_bits_happens_before_the_l2_is_measured(monkeypatch, real_mnist):
    x = real_mnist.x_test[:3]  # on the 8-bit grid
    monkeypatch.setattr(examples, "cw_l2", lambda model, x, *a, **k: np.minimum(x + 0.6 / 255, 1.0))
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    made = examples.generate([model], x, np.zeros(3, np.int64), 0.0)
    below_one = np.sum(x < 1.0, axis=(1, 2, 3))
    # x + 0.6/255 rounds to x + 1/255 wherever x < 1: L2 = sqrt(count) / 255, not 0.6 * sqrt(count) / 255
    assert np.allclose(made["l2"], np.sqrt(below_one) / 255) and made["found"].all()
    assert np.array_equal(made["adv"].astype(int) - np.round(x * 255).astype(int), (x < 1.0).astype(int))


def test_attack_view_of_a_decider():
    class WithAttackModel(decision.Decider):
        model = "composite"

        def attack_model(self):
            return "composite + rejection logit"

    class Plain(decision.Decider):
        model = "noise + classifier"

    assert examples.attack_view(WithAttackModel()) == "composite + rejection logit"
    assert examples.attack_view(Plain()) == "noise + classifier"
    assert examples.attack_view("keras model") == "keras model"


# -- a whole tiny study -------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_study(tmp_path, real_mnist, defenses):
    dataset = dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:400], y_train=real_mnist.y_train[:400],
                                  x_test=real_mnist.x_test[:50], y_test=real_mnist.y_test[:50])
    plan = study.plan_for("mnist", schemes=(CentroidDefense.name,), models=4, sources=2, single_sources=1,
                          threshold=1, epochs=1, images=6, attack_batch=4, confidences=(0, 2), cw_iterations=20,
                          cw_search_steps=2, cw_learning_rate=0.1, cw_initial_const=10.0, edges=(0.0, 2.0, 6.0))
    return lambda: study.TranslucentStudy(dataset, plan, str(tmp_path / "work"), log=lambda line: None)


def test_tiny_study_cells_results_resume_and_report(tiny_study, tmp_path, monkeypatch):
    evaluation = tiny_study()
    results = evaluation.run()
    label = CentroidDefense.name
    # 2 groups x 2 K x 2 chunks generate cells; judge: same count (one target scheme)
    assert len(os.listdir(tmp_path / "work" / "cells" / "generate")) == 8
    assert len(os.listdir(tmp_path / "work" / "cells" / "judge")) == 8
    tables = results["tables"][label]
    assert tables["multi"]["attacked"] == 6 and 0 < tables["multi"]["found"] <= 6
    assert tables["single"]["attacked"] == 6
    # Multi-2 examples fool both sources; the held-out models (2, 3) are judged: rates are fractions
    figure = results["figure3"][label]
    assert all(r is None or 0.0 <= r <= 1.0 for s in strategies.STRATEGIES for r in figure[s])
    assert results["figure4"][label][label]["passing"] is not None
    # judge cells hold the labels of exactly the found examples, from the held-out models
    cell = evaluation.cells.stored("judge", f"{label} multi K=0 images=0-4 on {label}")
    _, made = evaluation.generated(evaluation.specs[0], "multi", 0.0, (0, 4))
    assert cell["examples"] == np.flatnonzero(made["found"]).tolist() and set(cell["labels"]) == {"2", "3"}
    # outcomes: every found Multi-2 example on both held-out models; the centroid scheme never rejects
    hits, judged, in_buckets = 0, 0, [0, 0]
    for k in (0, 2):
        for chunk in ((0, 4), (4, 6)):
            judge = evaluation.cells.stored("judge", f"{label} multi K={k} images={chunk[0]}-{chunk[1]} on {label}")
            _, made = evaluation.generated(evaluation.specs[0], "multi", float(k), chunk)
            targets = made["targets"][judge["examples"]]
            hits += sum(int(np.sum(np.asarray(judge["labels"][m]) == targets)) for m in ("2", "3"))
            judged += 2 * len(judge["examples"])
            for b, (low, high) in enumerate(((0.0, 2.0), (2.0, 6.0))):
                l2 = made["l2"][judge["examples"]]
                in_buckets[b] += 2 * int(np.sum((l2 > low) & (l2 <= high)))
    outcome = results["outcomes"][label][label]
    assert outcome["judgements"] == judged > 0 and outcome["rejected"] == 0.0
    assert [b["judgements"] for b in outcome["by_bucket"]] == in_buckets and sum(in_buckets) > 0
    held_out = results["held_out"][label]  # the same judgements, model by model
    assert set(held_out) == {"2", "3"} and sum(c["judged"] for c in held_out.values()) == judged
    assert sum(c["fooled"] for c in held_out.values()) == hits
    assert outcome["target"] == pytest.approx(hits / judged) and outcome["other"] == pytest.approx(1 - hits / judged)
    # Single outcomes: every Single source's found examples on the models other than the Single sources
    hits, judged = 0, 0
    for group in evaluation.groups()[1:]:
        for k in (0, 2):
            for chunk in ((0, 4), (4, 6)):
                name = f"{label} {group} K={k} images={chunk[0]}-{chunk[1]} on {label}"
                judge = evaluation.cells.stored("judge", name)
                _, made = evaluation.generated(evaluation.specs[0], group, float(k), chunk)
                targets = made["targets"][judge["examples"]]
                hits += sum(int(np.sum(np.asarray(labels) == targets)) for labels in judge["labels"].values())
                judged += sum(len(labels) for labels in judge["labels"].values())
    single = results["single_outcomes"][label]
    assert single["judgements"] == judged > 0 and single["target"] == pytest.approx(hits / judged)
    assert single["rejected"] == 0.0

    # a rerun computes nothing; a killed cell (its JSON missing) is the only one redone
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a finished cell")

    with monkeypatch.context() as patch:
        patch.setattr(examples, "generate", refuse)
        assert tiny_study().run() == results
    found = [(c, k) for k in (0, 2) for c in ((0, 4), (4, 6))
             if evaluation.cells.stored("generate", f"{label} single0 K={k} images={c[0]}-{c[1]}")["found"]]
    chunk, k = found[-1]
    os.remove(evaluation.cells.path("judge", f"{label} single0 K={k} images={chunk[0]}-{chunk[1]} on {label}"))
    calls = []
    original = decision.labels
    with monkeypatch.context() as patch:
        patch.setattr(decision, "labels", lambda *a, **k: calls.append(1) or original(*a, **k))
        patch.setattr(examples, "generate", refuse)
        again = tiny_study().run()
    assert len(calls) == 3  # the single source's 3 target models, one cell
    assert again["figure3"] == results["figure3"]

    path = report.write_report(evaluation, results, str(tmp_path / "docs"), "python tools/reproduce_rs.py ...",
                               report.fleet_lines(evaluation))
    text = open(path).read()
    assert "Table 4" in text and "Figure 4" in text and "set with --l2_edges; Table 3's cut-off is 3" in text
    assert "## Rejections" not in text  # no scheme of this study rejects
    assert "## Held-out models one by one" in text and f"| {label} | " in text.split("## Held-out models")[1]
    assert os.path.exists(tmp_path / "docs" / "reproduce_rs" / "mnist_figure4.png")
    assert (tmp_path / "docs" / "reproduce_rs" / "mnist_figure4.csv").read_text().count("\n") == 1 + 2


@pytest.mark.parametrize("schemes", [["Standard"], ["Standard", "RS-1"], [f"scheme {i}" for i in range(9)]])
def test_figure4_title_and_panels_fit_in_the_figure(schemes):
    """The title was cut at the figure's edge over two schemes (the Fashion-MNIST page's figure)."""
    edges = [0.0, 1.0, 2.0]
    results = {"schemes": schemes, "edges": edges,
               "figure4": {s: {t: {"passing": [0.5, None]} for t in schemes} for s in schemes}}
    fig = report.figure4_figure(results)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    for artist in [fig.axes[0].title] + list(fig.axes):
        box = artist.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1, artist
    assert len(fig.axes) == len(edges) - 1
    # the reports' font sizes: cell values and scheme names at 9 points or more (they were 7)
    assert min(t.get_fontsize() for t in fig.axes[0].texts + fig.axes[-1].get_xticklabels()) >= 9
    report.plots.pyplot().close(fig)


def test_plan_checks():
    with pytest.raises(ConfigError, match="train_fraction=1.5"):
        study.plan_for("mnist", train_fraction=1.5)
    with pytest.raises(ConfigError, match="distinct"):
        study.plan_for("mnist", confidences=(0, 0))
    with pytest.raises(ConfigError, match="unknown plan setting"):
        study.plan_for("mnist", bogus=1)
    plan = study.plan_for("fashion_mnist")
    assert plan.confidences == (0.0, 10.0, 20.0, 30.0) and plan.edges == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(plan.schemes) == 9
    assert (plan.epochs, plan.magnet_epochs) == (200, 400)  # Table 7: WRN 200 epochs; MagNet's autoencoders 400
    plan = study.plan_for("fashion_mnist", settings=(("arch", "rs_mnist"),))
    assert plan.epochs == 50 and study.plan_for("mnist").magnet_epochs == 100


def test_the_tool_refuses_impossible_roles_before_writing_anything(tmp_path):
    from tests.tool_runner import run_script

    result = run_script("reproduce_rs.py", "--dataset=mnist", "--data_dir=../shared/data", "--threshold=8",
                        f"--work_dir={tmp_path / 'work'}", f"--docs_dir={tmp_path / 'docs'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: a passing threshold of 8 exceeds the 7 validation models "
                                                      "(16 models, 8 sources)")
    assert not os.path.exists(tmp_path / "work") and not os.path.exists(tmp_path / "docs")


def test_a_cell_draws_the_same_whatever_was_computed_before_it(defenses, real_mnist, tmp_path):
    """A stochastic scheme (C&W with EOT over its dropout, MC judgement): its cells computed in the reverse order (as
    another process would meet them) give the files of a run in the plan's order."""
    registry.register(DroppedDefense)
    dataset = dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:300], y_train=real_mnist.y_train[:300],
                                  x_test=real_mnist.x_test[:20], y_test=real_mnist.y_test[:20])
    plan = study.plan_for("mnist", schemes=(DroppedDefense.name,), models=3, sources=1, single_sources=1, threshold=1,
                          epochs=1, images=4, attack_batch=4, confidences=(0,), cw_iterations=20, cw_search_steps=2,
                          cw_learning_rate=0.2, cw_initial_const=100.0, eot=2, passes=3, edges=(0.0, 2.0, 6.0))
    in_order = study.TranslucentStudy(dataset, plan, str(tmp_path / "in_order"), log=lambda line: None).run()
    other = study.TranslucentStudy(dataset, plan, str(tmp_path / "reversed"), log=lambda line: None)
    cells = ordered(other.cell_plan()[::-1], set())
    assert [c.kind for c in cells] == ["fleet"] * 3 + ["generate", "judge"] * 2
    assert cells[3].name.endswith("single0 K=0 images=0-4")  # the last generate cell first, then its judgement
    for cell in cells:
        other.compute(cell)
    assert other.results() == in_order
    judged = stored(tmp_path / "in_order", "cells")
    assert judged == stored(tmp_path / "reversed", "cells") and len(judged) == 4
    assert any(cell.get("examples") for cell in judged.values())  # examples were found and judged by MC passes
    assert same_examples(tmp_path / "in_order", tmp_path / "reversed") == (True, 2)


def test_wrapped_and_installed_schemes_take_their_sources_from_the_study_s_dropout_fleet(real_mnist, tmp_path):
    """RC's and MagNet's member k is made from the Dropout model k: the study's Dropout fleet's, not a copy (the same
    seed and half would train the very same weights again)."""
    plan = study.plan_for("mnist", schemes=("RC", "MagNet", "Dropout", "RS-1"), models=4, sources=2, single_sources=1,
                          threshold=1, epochs=1, magnet_epochs=1, images=10, attack_batch=10, confidences=(0,))
    run = study.TranslucentStudy(real_mnist, plan, str(tmp_path / "work"), log=lambda line: None)
    dropout = run.fleets["Dropout"]
    labels = list(run.fleets)
    assert labels == [study.schemes.spec_of(s).label for s in plan.schemes]  # the plan's order, sources made first
    for label in labels:
        expected = dropout if label in (labels[0], labels[1]) else None
        assert run.fleets[label].source_fleet is expected
    members = [c for c in run.cell_plan() if c.kind == "fleet"]
    assert {c.name: c.after for c in members if c.name.startswith(labels[0])} == \
        {f"{labels[0]} model {k}": (dropout.cell_key(k),) for k in range(4)}
    assert all(c.after == () for c in members if c.name.startswith(("Dropout", "RS-1")))
    local_order = [c.key for c in ordered(members, set())]
    assert local_order.index(members[0].key) > local_order.index(dropout.cell_key(0))


def test_fleet_lines_give_magnet_s_errors_rejections_and_a_magnet_that_is_not_one(tmp_path):
    """MagNet's records: errors count rejections, and members whose autoencoders never beat the mean image are called
    out (such a composite predicts about one class: its rows say nothing about MagNet). Adversarially trained members:
    how many C&W examples each added to its training set."""
    records = {0: {"test_accuracy_single": 0.93, "test_rejection_rate": 0.005, "unlearned_autoencoders": []},
               1: {"test_accuracy_single": 0.0972, "test_rejection_rate": 0.0012,
                   "unlearned_autoencoders": ["reformer"]},
               2: {"test_error_single": 0.05},
               3: {"test_error_single": 0.04, "adversarial_examples": {"generated": 500, "kept": 177, "l2_cutoff": 3.0,
                                                                        "l2_mean_kept": 1.97}},
               4: {"test_error_single": 0.03, "adversarial_examples": {"generated": 500, "kept": 231, "l2_cutoff": 3.0,
                                                                        "l2_mean_kept": 2.07}},
               5: {"test_error_single": 0.8383}, 6: {"test_error_single": 0.0351}, 7: {"test_error_single": 0.1209}}
    for k in records:
        (tmp_path / f"m{k}.h5").write_text("")

    class Spec:
        def __init__(self, label, members):
            self.label, self.text, self.members = label, label.lower(), members
            self.defense = types.SimpleNamespace(record=lambda path: records[int(os.path.basename(path)[1])])

    class Fleet:
        def __init__(self, members, epochs):
            self._manifest = {"epochs": epochs, "members": [{"model": k, "train_images": 5000} for k in members]}

        def manifest(self):
            return self._manifest

        def file(self, k):
            return str(tmp_path / f"m{k}.h5")

    specs = [Spec("MagNet", [0, 1]), Spec("Standard", [2]), Spec("RS-1-Adv", [3, 4])]
    fake = types.SimpleNamespace(specs=specs, plan=types.SimpleNamespace(models=2),
                                 fleets={"MagNet": Fleet([0, 1], 10), "Standard": Fleet([2], 3),
                                         "RS-1-Adv": Fleet([3, 4], 3)})
    magnet_line, standard_line, adversarial_line = report.fleet_lines(fake)
    assert adversarial_line.endswith("test error 3.00-4.00% (from the training records: single prediction, or one "
                                     "stochastic pass); C&W examples added to each model's training set: 177-231 (of "
                                     "500 crafted, kept under L2 3), mean L2 of the added 1.97-2.07")
    assert "C&W" not in magnet_line + standard_line and "failed" not in adversarial_line
    # a member far worse than its fleet is named; 12% against a 3.5% median is not (5x and 20%)
    failing_line, = report.fleet_lines(types.SimpleNamespace(specs=[Spec("RS-1-Adv", [5, 6, 7])], plan=fake.plan,
                                                             fleets={"RS-1-Adv": Fleet([5, 6, 7], 3)}))
    assert failing_line.endswith("; **model 5 failed to train (83.83% test error, the fleet's median 12.09%)**")
    assert failing_line.count("failed") == 1
    assert magnet_line.startswith("MagNet (`magnet`): 2 of 2 models trained, 10 epochs on 5000 images each; test error "
                                  "7.00-90.28%")
    assert "0.12-0.50% of the clean test images rejected (counted as errors)" in magnet_line
    assert ("**1 of 2 models have autoencoders no better than the mean training image: not a working MagNet"
            in magnet_line)
    assert "test error 5.00-5.00%" in standard_line
    assert "rejected" not in standard_line and "MagNet" not in standard_line
