"""The Random Spiking paper's trained schemes (Table 2; appendix A.1) through the defense registry: training with the
paper's recipe on a tiny slice, resume, distillation's deployed logits, the adversarial schemes' added examples, and
bad input to ``tools/train_rs.py``."""

import dataclasses
import os

import numpy as np
import pytest

import randspike  # noqa: F401  (registers layers and defenses)
from hrs_tf.defenses import making, registry
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic
from randspike import schemes, training
from randspike.layers import RandomSpiking
from tests.tool_runner import run_script

QUICK = dict(train_images=256, augmentation="mnist")


@pytest.fixture(scope="module")
def small(real_mnist):
    return dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:1000], y_train=real_mnist.y_train[:1000],
                               x_test=real_mnist.x_test[:200], y_test=real_mnist.y_test[:200])


def test_paper_names_map_to_the_nine_registered_schemes():
    assert [schemes.spec_of(name).name for name in schemes.scheme_names()] == [
        "rs_standard", "rs_dropout", "distillation", "rs1", "rsd1", "rs1_adv", "magnet", "dropout_adv", "region"]
    assert schemes.spec_of("rsd-1").name == "rsd1" and schemes.spec_of("rs1:0.7").args["keep"] == 0.7
    with pytest.raises(ConfigError, match="unknown scheme 'RS-2'.*RS-1-Adv"):
        schemes.spec_of("RS-2")
    with pytest.raises(ConfigError, match=r"keep_prob=.1\.5. must be in \(0, 1\]"):
        registry.parse("rs1:1.5")


def test_recipes_are_table_7s_and_the_wrn_schedule_drops_at_the_right_iterations():
    mnist = training.recipe_for("rs_mnist", "mnist")
    assert (mnist.learning_rate, mnist.epochs, mnist.batch_size, mnist.augmentation) == (0.01, 50, 128, "mnist")
    wrn = training.recipe_for("wrn", "fashion_mnist")
    assert (wrn.learning_rate, wrn.epochs, wrn.drop_epochs) == (0.1, 200, (60, 120, 160))
    schedule = training.learning_rate(wrn, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 599, 601, 1201, 1601)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.02, 0.004, 0.0008], rtol=1e-6)
    with pytest.raises(ConfigError, match="augmentation|unknown"):
        training.recipe_for("rs_mnist", "mnist", augmentation="twirl=3")


def test_an_rs1_model_trains_resumes_and_records_its_recipe(small, tmp_path):
    output = tmp_path / "rs1.h5"
    model, record = making.make("rs1", small, output, epochs=1, seed=3, eval_repeats=1, verbose=0, log=lambda *_: None,
                                **QUICK)
    spiking = [layer for layer in stochastic.stochastic_layers(model) if isinstance(layer, RandomSpiking)]
    assert len(spiking) == 1 and spiking[0].keep_prob == 0.8
    assert record["train_images"] == 256 and "augmentation mnist" in record["recipe"] and record["epochs"] == 1
    assert os.path.exists(tmp_path / "rs1.checkpoint.h5")
    weights = [w.copy() for w in model.get_weights()]
    lines = []
    again, _ = making.make("rs1", small, output, epochs=1, seed=3, eval_repeats=1, verbose=0, log=lines.append,
                           **QUICK)
    assert any("resuming" in line for line in lines)  # the finished checkpoint is read, not retrained
    for a, b in zip(weights, again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="does not take the setting.*target_model"):
        making.make("rs1", small, tmp_path / "x.h5", epochs=1, target_model="t.h5", **QUICK)


def test_distillation_trains_a_teacher_and_deploys_the_students_logits_at_t1(small, tmp_path, monkeypatch):
    output = tmp_path / "distilled.h5"
    temperatures = {}
    original = training.train

    def spy(*args, what="", temperature=None, **kwargs):
        temperatures[what] = temperature
        return original(*args, what=what, temperature=temperature, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    model, record = making.make("distillation:20", small, output, epochs=1, seed=0, eval_repeats=1, verbose=0,
                                log=lambda *_: None, **QUICK)
    assert record["temperature"] == 20.0 and len(record["teacher_history"]) == 1
    # C&W's start model trains normally (T = 1); teacher and student at T
    assert temperatures == {"a distillation start model": None, "a distillation teacher": 20.0,
                            "a distillation student": 20.0}
    assert os.path.exists(tmp_path / "distilled_teacher.checkpoint.h5")
    # deployed at T = 1: the saved model's output is the student's last layer, no division by T
    assert model.layers[-1].name == "logits" and model.get_layer("logits").activation.__name__ == "linear"
    # the training loss is the cross-entropy of soft labels against softmax(z / T)
    z = np.array([[2.0, 0.0, -1.0]], np.float32)
    soft = np.array([[0.5, 0.3, 0.2]], np.float32)
    expected = -np.sum(soft * np.log(np.exp(z / 20) / np.exp(z / 20).sum()))
    assert float(training.distillation_loss(20.0)(soft, z)) == pytest.approx(expected, rel=1e-5)


def test_dropout_adv_adds_the_smallest_cw_examples_under_their_true_labels(small, tmp_path):
    spec = "dropout_adv:confidences=0;5,per_confidence=6,kept=8,cw_iterations=10,cw_search_steps=2"
    parsed = registry.parse(spec)
    assert parsed.args["confidences"] == (0.0, 5.0) and registry.parse(parsed.text) == parsed
    _, record = making.make(spec, small, tmp_path / "dadv.h5", epochs=1, seed=1, eval_repeats=1, verbose=0,
                            log=lambda *_: None, **QUICK)
    summary = record["adversarial_examples"]
    assert summary["generated"] == 12 and summary["kept"] <= 8
    assert record["train_images"] == 256 + summary["kept"]
    assert os.path.exists(tmp_path / "dadv_target.h5")  # the Dropout target was trained first
    # attacks too weak to succeed (one iteration at c = 1e-3 for a logit margin of 40): refused rather than training on no example
    weak = "dropout_adv:confidences=40;50,per_confidence=6,cw_iterations=1,cw_search_steps=1"
    with pytest.raises(ConfigError, match="none of the 12 C&W attacks .* succeeded"):
        making.make(weak, small, tmp_path / "weak.h5", epochs=1, seed=1, eval_repeats=1, verbose=0,
                    log=lambda *_: None, target_model=str(tmp_path / "dadv_target.h5"), **QUICK)
    assert not os.path.exists(tmp_path / "weak.h5")


def test_train_rs_tool_refuses_bad_input_without_writing(tmp_path):
    out = tmp_path / "m.h5"
    # one process (a TF start-up costs ~10 s here); the other refusals are pinned in-process above
    for args, message in ((("--scheme=RS-1", "--kept=5"), "no argument 'kept'"),):
        result = run_script("train_rs.py", *args, f"--output={out}", "--data_dir=/nonexistent")
        assert result.returncode != 0
        assert message in result.stderr.strip().splitlines()[-1], result.stderr[-500:]
        assert not out.exists()
