"""Defensive dropout: Algorithm 1's stopping rule, resumable result files, real rows and the tool."""

import json
import os
import shutil

import pytest

from hrs_tf.experiments.defensive_dropout import report as dd_report
from hrs_tf.experiments.defensive_dropout import row_cells
from hrs_tf.experiments.defensive_dropout import search as dd
from hrs_tf.models import serialization
from hrs_tf.errors import ConfigError, ModelError
from tests.attacks.helpers import trained_model
from tests.tool_runner import run_script, run_script_cases



class FakeEvaluator:
    """Rows with a given accuracy per test rate; counts the measurements."""

    def __init__(self, accuracy, train_rate=0.3, fail_after=None):
        self.accuracy, self.train_rate, self.fail_after, self.calls = accuracy, train_rate, fail_after, []

    def __call__(self, rate):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls.append(rate)
        return {"train_rate": self.train_rate, "test_rate": rate, "accuracy": self.accuracy(rate), "accuracy_std": 0.0,
                "asr": 1 - rate, "asr_majority": 1 - rate, "mean_l2": 1 + rate, "seconds": 0.0}


def test_algorithm1_stops_at_the_first_rate_below_the_threshold():
    accuracy = {0.0: 0.990, 0.1: 0.991, 0.2: 0.985, 0.3: 0.980, 0.4: 0.9799, 0.5: 0.95}
    fake = FakeEvaluator(lambda r: accuracy[r])
    rows, chosen, a_max = dd.algorithm1(fake, epsilon=0.01, step=0.1)
    # a_max = 0.990 at r' = 0; 0.980 = a_max - epsilon still meets it; 0.9799 stops the search (kept, failing).
    assert fake.calls == [0.0, 0.1, 0.2, 0.3, 0.4] and a_max == 0.990 and chosen == 0.3
    assert [r["meets_accuracy"] for r in rows] == [True, True, True, True, False]
    # A finished row is not measured again.
    fake2 = FakeEvaluator(lambda r: accuracy[r])
    rows2, chosen2, _ = dd.algorithm1(fake2, 0.01, 0.1, done={dd.rate_key(r["test_rate"]): dict(r) for r in rows[:3]})
    assert fake2.calls == [0.3, 0.4] and chosen2 == 0.3 and len(rows2) == 5
    # Nothing meets the requirement beyond r' = 0: chosen 0; the rates stop below 1.
    rows, chosen, _ = dd.algorithm1(FakeEvaluator(lambda r: 0.99 - r), 0.05, 0.25)
    assert [r["test_rate"] for r in rows] == [0.0, 0.25] and chosen == 0.0
    rows, chosen, _ = dd.algorithm1(FakeEvaluator(lambda r: 0.99), 0.01, 0.3)
    assert [r["test_rate"] for r in rows] == [0.0, 0.3, 0.6, 0.9] and chosen == 0.9
    with pytest.raises(ConfigError, match="step=0"):
        dd.algorithm1(fake, 0.01, 0)
    with pytest.raises(ConfigError, match="epsilon=1.5"):
        dd.algorithm1(fake, 1.5, 0.1)


def test_search_file_resumes_after_a_kill_and_refuses_other_settings(tmp_path):
    out = str(tmp_path / "search.json")
    accuracy = lambda r: 0.99 - r / 10  # noqa: E731  -- threshold 0.98 at epsilon 0.01: 0.1 meets it, 0.15 stops
    settings = {"attack": "fake", "seed": 1}
    with pytest.raises(KeyboardInterrupt):
        dd.run_search(FakeEvaluator(accuracy, fail_after=2), out, settings, 0.01, 0.05, log=lambda s: None)
    saved = json.load(open(out))
    assert not saved["finished"] and [r["test_rate"] for r in saved["rows"]] == [0.0, 0.05]
    lines = []
    fake = FakeEvaluator(accuracy)
    result = dd.run_search(fake, out, settings, 0.01, 0.05, log=lines.append)
    assert lines[0] == f"resuming: 2 finished row(s) in {out}"
    assert fake.calls == [0.1, 0.15]
    assert result["finished"] and result["chosen_test_rate"] == 0.1 and result["a_max"] == 0.99
    assert [r["meets_accuracy"] for r in result["rows"]] == [True, True, True, False]
    assert "**chosen r' = 0.1**" in dd_report.search_markdown(result)
    before = open(out).read()
    with pytest.raises(ConfigError, match="other settings .*seed: 1 there vs 2 now"):
        dd.run_search(FakeEvaluator(accuracy), out, dict(settings, seed=2), 0.01, 0.05, log=lambda s: None)
    with pytest.raises(ConfigError, match="epsilon: 0.01 there vs 0.02 now"):
        dd.run_search(FakeEvaluator(accuracy), out, settings, 0.02, 0.05, log=lambda s: None)
    assert open(out).read() == before


def test_grid_cells_tables_and_resume(tmp_path):
    out = str(tmp_path / "grid.json")
    evaluators = [FakeEvaluator(lambda r: 0.99 - r / 10, 0.3), FakeEvaluator(lambda r: 0.98 - r / 20, 0.7)]
    result = dd.run_grid(evaluators, [0.5, 0, 0.1], out, {"attack": "fake"}, log=lambda s: None)
    assert [(c["train_rate"], c["test_rate"]) for c in result["rows"]] == [
        (0.3, 0.0), (0.3, 0.1), (0.3, 0.5), (0.7, 0.0), (0.7, 0.1), (0.7, 0.5)]
    tables = dd_report.grid_tables(result)
    assert "| dropout rate | test 0 | test 0.1 | test 0.5 |" in tables
    assert "| train 0.7 | 100.00% | 90.00% | 50.00% |" in tables  # ASR row of the fake
    again = [FakeEvaluator(lambda r: 0.0, 0.3), FakeEvaluator(lambda r: 0.0, 0.7)]
    assert dd.run_grid(again, [0, 0.1, 0.5], out, {"attack": "fake"}, log=lambda s: None)["rows"] == result["rows"]
    assert again[0].calls == [] and again[1].calls == []
    # A model or a test rate added to a finished grid: only the new cells are measured, the old ones kept.
    models = [{"train_rate": 0.3, "sha1": "a"}, {"train_rate": 0.7, "sha1": "b"}]
    out2 = str(tmp_path / "grown.json")
    dd.run_grid(evaluators, [0, 0.5], out2, {"attack": "fake", "models": models}, log=lambda s: None)
    grown = [FakeEvaluator(lambda r: 0.0, 0.3), FakeEvaluator(lambda r: 0.0, 0.5), FakeEvaluator(lambda r: 0.0, 0.7)]
    bigger = dd.run_grid(grown, [0, 0.1, 0.5], out2, {"attack": "fake", "models": models + [{"train_rate": 0.5, "sha1": "c"}]},
                         log=lambda s: None)
    assert grown[0].calls == [0.1] and grown[1].calls == [0.0, 0.1, 0.5] and grown[2].calls == [0.1]
    assert [c["accuracy"] for c in bigger["rows"] if c["train_rate"] == 0.3] == [0.99, 0.0, 0.94]  # old, new, old
    before = open(out2).read()
    changed = [models[0], {"train_rate": 0.7, "sha1": "d"}, {"train_rate": 0.5, "sha1": "c"}]  # r = 0.7 retrained
    with pytest.raises(ConfigError, match=r"holds results for models \[\{'sha1': 'b', 'train_rate': 0.7\}\] that"):
        dd.run_grid(grown, [0, 0.1, 0.5], out2, {"attack": "fake", "models": changed}, log=lambda s: None)
    with pytest.raises(ConfigError, match=r"holds results for test_rates \[0.1\]"):
        dd.run_grid(grown, [0, 0.5], out2, {"attack": "fake", "models": bigger["settings"]["models"]}, log=lambda s: None)
    assert open(out2).read() == before
    assert dd.parse_models("r0.3:a.h5,r0:b.h5") == [(0.3, "a.h5"), (0.0, "b.h5")]
    for bad, message in (("0.3:a.h5", "must be written r<train rate>:<path>"), ("rx:a.h5", "'x' is not a train rate"),
                         ("r1.2:a.h5", r"train rate=1.2 must be in \[0, 1\)"), ("r0.3:a,r0.3:b", "repeat a train rate")):
        with pytest.raises(ConfigError, match=message):
            dd.parse_models(bad)


def test_rows_are_cells_and_earlier_result_files_are_accepted(tmp_path):
    """Every row is a file of its own beside the result; result files of runs before cells (finished or cut short)
    still count as measured rows; a cells folder of other settings is refused even without its result file."""
    quiet = lambda line: None  # noqa: E731
    fakes = lambda: [FakeEvaluator(lambda r: 0.99 - r / 10, 0.3),  # noqa: E731
                     FakeEvaluator(lambda r: 0.98 - r / 20, 0.7)]
    out = tmp_path / "grid.json"
    result = dd.run_grid(fakes(), [0.5, 0, 0.1], str(out), {"attack": "fake"}, log=quiet)
    cells = tmp_path / "grid_cells"
    assert sorted(os.listdir(cells)) == sorted(["settings.json"] + [f"train{r}_test{t}.json" for r in (0.3, 0.7)
                                                                    for t in (0, 0.1, 0.5)])
    assert json.loads((cells / "train0.7_test0.1.json").read_text()) == result["rows"][4]
    # A result file written before rows were cells (no cells folder): taken as it is, nothing measured again.
    shutil.rmtree(cells)
    again = fakes()
    assert dd.run_grid(again, [0, 0.1, 0.5], str(out), {"attack": "fake"}, log=quiet) == result
    assert again[0].calls == again[1].calls == []
    # One cut short after two rows: only the four missing rows are measured, in the local order.
    shutil.rmtree(cells)
    out.write_text(json.dumps(dict(result, rows=result["rows"][:2], finished=False)))
    again = fakes()
    lines = []
    assert dd.run_grid(again, [0, 0.1, 0.5], str(out), {"attack": "fake"}, log=lines.append)["rows"] == result["rows"]
    assert again[0].calls == [0.5] and again[1].calls == [0.0, 0.1, 0.5]
    assert lines[0] == f"resuming: 2 finished cell(s) in {out}" and "[3/6] train 0.3, test 0.5: measuring" in lines
    # The result file removed, the cells kept: other settings are still refused, nothing is written.
    out.unlink()
    with pytest.raises(ConfigError, match=r"grid_cells/settings.json' holds results with other settings \(attack: "
                                          r"'fake' there vs 'other' now\)"):
        dd.run_grid(fakes(), [0, 0.1, 0.5], str(out), {"attack": "other"}, log=quiet)
    assert not out.exists()
    # A search cut short, its cells lost: it resumes from the rows its result file holds.
    search = tmp_path / "search.json"
    accuracy = lambda r: 0.99 - r / 10  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        dd.run_search(FakeEvaluator(accuracy, fail_after=2), str(search), {}, 0.01, 0.05, log=quiet)
    shutil.rmtree(tmp_path / "search_cells")
    fake, lines = FakeEvaluator(accuracy), []
    finished = dd.run_search(fake, str(search), {}, 0.01, 0.05, log=lines.append)
    assert fake.calls == [0.1, 0.15] and finished["chosen_test_rate"] == 0.1
    # Algorithm 1 lists one step per round: each round computes the one next rate.
    assert [line.split(" done")[0] for line in lines if line.startswith("cells:")] == ["cells: 1/1", "cells: 2/2"]
    with pytest.raises(ConfigError, match="evaluator objects run on the local executor only"):
        row_cells.DropoutRows([fake], str(search), {}, epsilon=0.01, step=0.05).recipe()


@pytest.fixture(scope="module")
def small_model(real_mnist):
    return trained_model(real_mnist)


def test_real_rows_are_seeded_and_sane(small_model, real_mnist):
    evaluator = dd.Evaluator(small_model, real_mnist, "fgsm", dd.attack_settings("fgsm"), num_images=10,
                             accuracy_images=500, repeats=3, passes=5, seed=3, progress=None)
    assert evaluator.train_rate == pytest.approx(0.3)
    base = evaluator(0.0)
    assert base["accuracy_std"] == 0 and base["num_examples"] == 90 and base["asr"] == base["asr_majority"]
    high = evaluator(0.6)
    assert high["accuracy_std"] > 0 and high["accuracy"] < base["accuracy"]
    # FGSM moves every pixel by at most 0.25: L2 <= 0.25 * 28.
    assert 0 < base["mean_l2"] <= 7.0
    # The single-pass ASR is the mean over 5 passes x 90 pairs, and the first pass alone counts whole pairs.
    assert high["num_successful_first_pass"] == round(high["asr_first_pass"] * 90)
    assert abs(high["asr"] * 450 - round(high["asr"] * 450)) < 1e-9
    # Targeted FGSM at 0.25 on the 2-epoch model: measured 31% at r' = 0, 22% at r' = 0.6 (crafted on fresh masks).
    assert 0.1 < high["asr"] < base["asr"] < 0.6
    again = evaluator(0.6)  # the row's seed depends only on (seed, rates): a rerun measures the same
    assert {k: v for k, v in again.items() if "seconds" not in k} == {k: v for k, v in high.items() if "seconds" not in k}
    import keras

    plain = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="flatten"),
                              keras.layers.Dense(10, name="fc1")], name="nodropout")
    with pytest.raises(ModelError, match="model 'nodropout' has no Dropout layer after 'fc1'"):
        dd.Evaluator(plain, real_mnist, "fgsm", {}, 2)
    with pytest.raises(ConfigError, match="trained with dropout 0.3, not 0.7"):
        dd.Evaluator(small_model, real_mnist, "fgsm", {}, 2, train_rate=0.7)
    with pytest.raises(ConfigError, match="attack 'pgd' is not one of the paper's attacks"):
        dd.attack_settings("pgd")


def test_adaptive_settings_reach_the_attack(small_model, real_mnist, monkeypatch):
    common = dict(num_images=5, accuracy_images=200, repeats=1, passes=3, seed=1, progress=None)
    rows = {setting: dd.Evaluator(small_model, real_mnist, "fgsm", dd.attack_settings("fgsm"), setting=setting,
                                  eot_samples=3, **common)(0.0) for setting in ("whitebox", "eot", "fixed")}
    # At r' = 0 the model is deterministic: EOT averages equal gradients and "fixed" is the same model.
    for setting in ("eot", "fixed"):
        assert rows[setting]["asr"] == rows["whitebox"]["asr"]
        assert rows[setting]["mean_l2"] == pytest.approx(rows["whitebox"]["mean_l2"], abs=1e-6)
    calls = []
    original = dd.evaluation.run_attack

    def spy(*args, **kwargs):
        calls.append((kwargs["setting"], kwargs["eot_samples"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(dd.evaluation, "run_attack", spy)
    dd.Evaluator(small_model, real_mnist, "fgsm", dd.attack_settings("fgsm"), setting="eot", eot_samples=4, **common)(0.5)
    assert calls == [("eot", 4)]


def run_tool(*args):
    return run_script("defensive_dropout.py", *args)


def test_defensive_dropout_tool(tmp_path, small_model, tiny_mnist_dir):
    model_path = tmp_path / "small.h5"
    serialization.save_model(small_model, model_path)
    out = tmp_path / "out" / "search.json"
    args = [f"--model={model_path}", "--attack=fgsm", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--num_images=3",
            "--accuracy_images=300", "--repeats=2", "--passes=3", "--step=0.3", "--epsilon=0.02", f"--output={out}"]
    result = run_tool(*args)
    assert result.returncode == 0, result.stderr
    assert "r' = 0: measuring (train rate 0.3)" in result.stdout and "[fgsm whitebox] batch 1/1: 27/27 examples" in result.stdout
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert record["finished"] and record["settings"]["attack_settings"] == {"eps": 0.25}
    assert [r["test_rate"] for r in rows][:2] == [0.0, 0.3] and rows[0]["accuracy_std"] == 0
    assert all(r["meets_accuracy"] for r in rows[:-1])
    assert rows[-1]["meets_accuracy"] == (rows[-1]["accuracy"] >= rows[0]["accuracy"] - 0.02)
    assert record["chosen_test_rate"] == max(r["test_rate"] for r in rows if r["meets_accuracy"])
    assert f"chosen r' = {record['chosen_test_rate']:g}" in (tmp_path / "out" / "search.md").read_text()
    assert (tmp_path / "out" / "search.png").stat().st_size > 1000
    # Rerun: every row skipped.
    again = run_tool(*args)
    assert again.returncode == 0 and f"resuming: {len(rows)} finished row(s)" in again.stdout and "measuring" not in again.stdout
    # Other settings: refused, file untouched; bad inputs: one error line, no output file. A flag that would do
    # nothing here is refused, not ignored. An EOT run is a different experiment: refused against the white-box
    # results in the same file. (One process runs these cases, see run_script_cases.)
    before = out.read_text()
    fresh = tmp_path / "new" / "x.json"
    elsewhere = [a for a in args if not a.startswith("--output")]
    refused, bad_attack, bad_setting, idle_flag, refused_eot = run_script_cases("defensive_dropout.py", [
        [a.replace("--num_images=3", "--num_images=4") for a in args],
        [*elsewhere, "--attack=pgd", f"--output={fresh}"], [*elsewhere, "--setting=magic", f"--output={fresh}"],
        [*elsewhere, "--test_rates=0.5", f"--output={fresh}"], [*args, "--setting=eot", "--eot_samples=2"]])
    assert refused.returncode == 2 and "num_images: 3 there vs 4 now" in refused.stderr
    assert bad_attack.returncode == 2, bad_attack.stderr
    assert bad_attack.stderr.strip().splitlines()[-1] == \
        "error: --attack='pgd' is not one of the paper's attacks fgsm, jsma_f, jsma_z, cw_l2"
    assert bad_setting.returncode == 2 and bad_setting.stderr.strip().splitlines()[-1] == \
        "error: --setting='magic' is not one of whitebox, eot, fixed"
    assert idle_flag.returncode == 2 and "--test_rates applies to --grid and --histograms" in idle_flag.stderr
    assert refused_eot.returncode == 2 and "setting: None there vs 'eot' now" in refused_eot.stderr
    assert out.read_text() == before and not fresh.parent.exists()


def test_gradient_histograms_widen_with_the_test_rate(tmp_path, small_model, real_mnist, tiny_mnist_dir):
    import numpy as np

    x, target = real_mnist.x_test[:1], (real_mnist.y_test[:1] + 1) % 10
    result = dd.gradient_histograms(small_model, x, target, [0.0, 0.1, 0.7], samples=30, seed=0)
    assert [p["label"] for p in result["panels"]] == ["dropout r' = 0", "dropout r' = 0.1", "dropout r' = 0.7", "SAP"]
    assert result["pixels"] == dd.des.steepest_pixels(small_model, x, target, 3) and result["image_shape"] == [28, 28, 1]
    std = {p["label"]: np.asarray(p["samples"]).std(axis=0) for p in result["panels"]}
    assert all(np.asarray(p["samples"]).shape == (30, 3) for p in result["panels"])
    assert std["dropout r' = 0"].max() < 1e-6  # r' = 0: no test-time randomness, one gradient
    # Figure 4: "shorter and fatter" with r'. The spread at r' = 0.7 exceeds r' = 0.1's at every pixel (measured
    # 3.4-3.8x here; with 30 samples a std estimate is within about +-25%, so 1.5x is not a sampling accident).
    assert (std["dropout r' = 0.7"] > 1.5 * std["dropout r' = 0.1"]).all() and std["SAP"].max() > 0
    # Tool: JSON + PNG.
    model_path = tmp_path / "small.h5"
    serialization.save_model(small_model, model_path)
    out = tmp_path / "h" / "gradients.json"
    done = run_tool("--histograms", f"--model={model_path}", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}",
                    "--test_rates=0.1,0.5", "--gradient_samples=5", f"--output={out}")
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["samples"] == 5 and [p["label"] for p in record["panels"]] == ["dropout r' = 0.1", "dropout r' = 0.5", "SAP"]
    assert (tmp_path / "h" / "gradients.png").stat().st_size > 1000
    # The same command again redraws the figure from the record (no sampling); other settings are refused; without
    # --model a one-line error and no output (one process runs the three, see run_script_cases).
    before = out.read_text()
    (tmp_path / "h" / "gradients.png").unlink()
    common = ["--histograms", f"--model={model_path}", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}",
              "--test_rates=0.1,0.5", "--gradient_samples=5", f"--output={out}"]
    again, other, failed = run_script_cases("defensive_dropout.py", [
        common, [*common, "--seed=1"], ["--histograms", "--dataset=mnist", f"--output={tmp_path / 'none' / 'g.json'}"]])
    assert again.returncode == 0 and "holds these histograms already" in again.stdout, again.stderr
    assert other.returncode == 2 and other.stderr.strip().splitlines()[-1].endswith(
        "holds a result made with other settings (seed: 0 there vs 1 now): remove it or choose another --output")
    assert out.read_text() == before and (tmp_path / "h" / "gradients.png").stat().st_size > 1000
    assert failed.returncode == 2 and failed.stderr.strip().splitlines()[-1] == \
        "error: --histograms takes one --model (not --grid / --models)"
    assert not (tmp_path / "none").exists()
