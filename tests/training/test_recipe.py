import json
import os

import keras
import numpy as np
import pytest

from hrs_tf import data, models, training
from hrs_tf.evaluation import metrics
from hrs_tf.models import serialization
from hrs_tf.errors import ConfigError
from tests.tool_runner import run_script, run_script_cases



def test_reference_optimizer_matches_keras2_sgd_with_decay():
    opt = training.reference_optimizer()
    assert opt.momentum == pytest.approx(0.9) and opt.nesterov
    schedule = opt._learning_rate
    assert float(schedule(0)) == pytest.approx(0.01)
    # Keras 2: lr / (1 + decay * iterations), decay 1e-6.
    assert float(schedule(18760)) == pytest.approx(0.01 / (1 + 1e-6 * 18760), rel=1e-6)


def test_training_learns_real_mnist(real_mnist):
    keras.utils.set_random_seed(0)
    model = models.build_base_model("mnist")
    history = training.fit(model, real_mnist.x_train[:4000], real_mnist.y_train[:4000], epochs=4, seed=0,
                           monitor=(real_mnist.x_test[:1000], real_mnist.y_test[:1000]), verbose=0)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    acc = metrics.accuracy(model, real_mnist.x_test[:1000], real_mnist.y_test[:1000])
    assert acc == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
    assert acc > 0.88  # 4 epochs on 4k images; measured 0.920 (seed 0) and 0.931 (seed 1) here


def test_training_is_deterministic_under_a_seed(real_mnist):
    x, y = real_mnist.x_train[:512], real_mnist.y_train[:512]

    def run(seed):
        keras.utils.set_random_seed(seed)
        model = models.build_base_model("mnist")
        training.fit(model, x, y, epochs=1, seed=seed, verbose=0)
        return model.get_weights()

    a, b, c = run(4), run(4), run(5)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def test_a_killed_base_run_resumes_to_the_weights_of_an_uninterrupted_one(real_mnist, tmp_path):
    """Gaussian noise layers and dropout draw at random while training: the resumed run must draw as the straight
    one (its seed generators restarted per epoch), and its optimizer continue (momentum, decay's step count)."""
    from hrs_tf.defenses import gaussian

    small = data.Dataset("mnist", real_mnist.x_train[:512], real_mnist.y_train[:512], real_mnist.x_test[:100],
                         real_mnist.y_test[:100], source="slice")

    def build(architecture, dropout_rate=None):
        return gaussian.build_gaussian_noise_model(architecture, 0.1, 0.1, dropout_rate, seed=2)

    settings = dict(epochs=3, seed=2, batch_size=64, verbose=0, build_model=build, log=lambda line: None,
                    identity={"init_std": 0.1})
    straight, straight_record = training.train_base_model(small, **settings)
    killed = tmp_path / "killed.checkpoint.h5"
    training.train_base_model(small, **dict(settings, epochs=1, checkpoint=killed))  # the kill: after epoch 1
    with pytest.raises(ConfigError, match="other settings .*seed: 2 there vs 3 now"):
        training.train_base_model(small, **dict(settings, seed=3, checkpoint=killed))
    with pytest.raises(ConfigError, match="other settings .*init_std: 0.1 there vs 0.2 now"):
        training.train_base_model(small, **dict(settings, checkpoint=killed, identity={"init_std": 0.2}))
    lines = []
    resumed, record = training.train_base_model(small, **dict(settings, checkpoint=killed, log=lines.append))
    assert lines[0] == f"resuming from {killed} after epoch 1" and len(lines) == 3  # epochs 2 and 3 only
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["test_accuracy"] == straight_record["test_accuracy"]
    assert record["train_seconds"] == round(sum(h["seconds"] for h in record["history"]), 1)  # epoch 1's counted too
    # the draws did matter: another seed gives other weights
    other, _ = training.train_base_model(small, **dict(settings, seed=5))
    assert not np.array_equal(other.get_weights()[0], straight.get_weights()[0])


def test_every_epoch_sees_its_own_order_of_the_training_images():
    """One Keras ``fit`` over all epochs under a global seed replays the first epoch's order (TensorFlow's shuffle
    restarts with each epoch's iterator); the recipe reshuffles per epoch, the same way for the same seed."""

    class LastBatch(keras.layers.Layer):
        def build(self, input_shape):
            self.order = self.add_weight(shape=(10,), initializer="zeros", trainable=False, name="order")

        def call(self, x, training=None):
            if training:
                self.order.assign(x[:, 0])
            return x

    def orders(seed):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((1,))
        seen = LastBatch()
        model = keras.Model(inputs, keras.layers.Dense(10)(seen(inputs)))
        epochs = []
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: epochs.append(seen.order.numpy().tolist()))
        x = np.arange(10, dtype=np.float32)[:, None]
        training.fit(model, x, np.arange(10) % 10, epochs=3, batch_size=10, seed=seed, verbose=0, callbacks=[record])
        return epochs

    first = orders(seed=1)
    assert all(sorted(order) == list(range(10)) for order in first)  # each epoch one whole permutation
    assert len({tuple(order) for order in first}) == 3  # three epochs, three orders (P(a repeat) ~ 1e-6)
    assert orders(seed=1) == first and orders(seed=2) != first


def test_invalid_training_settings():
    with pytest.raises(ConfigError, match="epochs=0"):
        training.check_training_settings(0, 128, 0.01)
    with pytest.raises(ConfigError, match="batch_size=0"):
        training.check_training_settings(1, 0, 0.01)
    with pytest.raises(ConfigError, match="learning_rate=-1"):
        training.check_training_settings(1, 128, -1)


def run_tool(*args):
    return run_script("train_base.py", *args)


def test_train_base_tool_writes_model_and_sidecar(tmp_path, tiny_mnist_dir, real_mnist):
    out = tmp_path / "out" / "base.h5"
    result = run_tool("--dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--epochs=2", "--seed=3", f"--output={out}")
    assert result.returncode == 0, result.stderr
    # one line per epoch, counted out of the run's epochs (not Keras's "Epoch 2/2" of a one-epoch fit call)
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == [f"epoch {k}/2 of a base-model run" for k in (1, 2)]
    assert all("training accuracy" in line and "test accuracy" in line for line in epoch_lines)
    assert "Epoch " not in result.stdout + result.stderr
    record = json.loads((tmp_path / "out" / "base.json").read_text())
    assert record["epochs"] == 2 and record["seed"] == 3 and record["dataset"] == "mnist"
    assert record["architecture"] == "mnist" and record["num_params"] == 312202
    assert len(record["history"]) == 2 and {"loss", "accuracy", "test_accuracy"} <= set(record["history"][0])
    assert {"tensorflow", "keras", "numpy", "h5py", "python"} <= set(record["versions"])
    model = serialization.load_model(out)
    x, y = real_mnist.x_test[:300], real_mnist.y_test[:300]
    assert metrics.accuracy(model, x, y) == pytest.approx(record["test_accuracy"], abs=1e-9)
    # no temporary files left; the per-epoch checkpoint stays, so the same command again does no training
    assert sorted(os.listdir(tmp_path / "out")) == ["base.checkpoint.h5", "base.h5", "base.json"]
    again = run_tool("--dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--epochs=2", "--seed=3", f"--output={out}")
    assert again.returncode == 0 and "resuming from" in again.stdout and "after epoch 2" in again.stdout
    assert "epoch 1/2" not in again.stdout
    assert json.loads((tmp_path / "out" / "base.json").read_text())["test_accuracy"] == record["test_accuracy"]


BAD_INPUTS = [
    (["--dataset=imagenet"], "unknown data set 'imagenet'"),
    (["--epochs=0"], "epochs=0 must be at least 1"),
    (["--learning_rate=0"], "learning_rate=0.0 must be a positive number"),
    (["--arch=cifar10"], "architecture 'cifar10' takes inputs (32, 32, 3)"),
]


def test_train_base_tool_bad_input_fails_cleanly(tmp_path, tiny_mnist_dir):
    out, elsewhere = tmp_path / "out" / "base.h5", tmp_path / "out" / "m.h5"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [[f"--data_dir={tiny_mnist_dir}", f"--output={out}", "--epochs=1", *args] for args, _ in BAD_INPUTS]
    *bad, missing_data, bad_output = run_script_cases("train_base.py", [
        *cases, ["--dataset=mnist", f"--data_dir={empty}", f"--output={elsewhere}"],
        ["--dataset=mnist", f"--output={tmp_path / 'out' / 'm.txt'}"]])
    for (args, message), result in zip(BAD_INPUTS, bad):
        assert result.returncode != 0, args
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
    assert missing_data.returncode != 0 and "mnist not found" in missing_data.stderr
    assert bad_output.returncode != 0 and "must end in .h5" in bad_output.stderr
    assert not (tmp_path / "out").exists()


def test_progress_lines_inside_an_epoch_give_steps_rate_and_time_left(capsys):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(10)(inputs))
    x = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    y = np.arange(40) % 10
    training.fit(model, x, y, epochs=2, batch_size=10, seed=0, verbose=2, progress_seconds=0.0)
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("  epoch ")]
    # every step of both epochs after the first reports (interval 0 s), with the steps done of 4, a rate, time left
    assert [line.split(":")[0] for line in lines] == ["  epoch 1/2"] * 3 + ["  epoch 2/2"] * 3
    assert [line.split(": ")[1].split(" ")[0] for line in lines[:3]] == ["2/4", "3/4", "4/4"]
    assert all("steps/s" in line and "s left in the epoch" in line for line in lines)
    # each epoch ends with one line of its metrics, counted out of the run's epochs; no Keras "Epoch 2/2" header
    ends = [line for line in out if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in ends] == ["epoch 1/2", "epoch 2/2"]
    assert all(" loss " in line for line in ends) and not any(line.startswith("Epoch") for line in out)
    training.fit(model, x, y, epochs=1, batch_size=10, seed=0, verbose=0, progress_seconds=0.0)
    assert "epoch " not in capsys.readouterr().out  # quiet runs stay quiet


def test_progress_rate_leaves_out_a_slow_first_step(monkeypatch):
    """An epoch whose set-up and first step take 100 s, then 1 s per step: 1.0 steps/s and 7 s left after step 3 of
    10, not the 0.03 steps/s and hours left a rate from the epoch's start would give."""
    from hrs_tf.training import recipe

    clock = iter([0.0, 100.0, 101.0, 102.0])
    monkeypatch.setattr(recipe.time, "time", lambda: next(clock))
    lines = []
    progress = recipe.StepProgress(every_seconds=0.0, out=lines.append, total_epochs=3)
    progress.set_params({"steps": 10, "epochs": 3})
    progress.on_epoch_begin(0)
    for batch in range(3):
        progress.on_train_batch_end(batch)
    assert lines == ["  epoch 1/3: 2/10 steps, 1.0 steps/s, about 8 s left in the epoch",
                     "  epoch 1/3: 3/10 steps, 1.0 steps/s, about 7 s left in the epoch"]
