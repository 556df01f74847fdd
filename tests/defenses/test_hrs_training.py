"""Bottom-up HRS training (Algorithm 1): frozen switching lower blocks, resume, published weights."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from hrs_tf import data
from hrs_tf.defenses import hrs
from hrs_tf.layers import stochastic
from hrs_tf.defenses.hrs import training as hrs_training
from hrs_tf.evaluation import metrics
from hrs_tf.models import serialization
from hrs_tf.errors import ConfigError, ModelError
from tests.keras2_files import write_keras2_weights
from tests.tool_runner import REPO, run_script, run_script_cases

SETTINGS = dict(channels=(2, 2), epochs=(1, 1), seed=0, eval_repeats=2)


@pytest.fixture(scope="module")
def tiny(tiny_mnist_dir):
    return data.load_dataset("mnist", tiny_mnist_dir)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("hrs") / "run"
    logs = []
    summary = hrs_training.train_hrs(tiny, str(out), verbose=0, log=logs.append, **SETTINGS)
    return out, summary, logs


def weights_of(path):
    with h5py.File(path) as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def test_run_outputs_and_summary(finished_run, tiny):
    out, summary, logs = finished_run
    assert sorted(os.listdir(out)) == ["channels", "hrs_model.h5", "progress.json", "run.json", "summary.json"]
    assert sorted(os.listdir(out / "channels")) == ["0_0.h5", "0_1.h5", "1_0.h5", "1_1.h5"]
    assert [(r["block"], r["channel"]) for r in summary["channel_records"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len({r["seed"] for r in summary["channel_records"]}) == 4  # every channel its own seed
    assert sum("training 1 epochs" in line for line in logs) == 4
    acc = summary["test_accuracy"]
    assert len(acc["runs"]) == 2 and acc["min"] <= acc["mean"] <= acc["max"]
    assert sorted(summary["path_test_accuracy"]) == ["0-0", "0-1", "1-0", "1-1"]
    # Sample-mode accuracy is an average over paths: it lies within the range of the path accuracies (+- noise).
    paths = summary["path_test_accuracy"].values()
    assert min(paths) - 0.05 <= acc["mean"] <= max(paths) + 0.05
    assert json.loads((out / "summary.json").read_text())["test_accuracy"] == acc

    model = keras.models.load_model(out / "hrs_model.h5", safe_mode=True)
    assert hrs.channel_counts(model) == [2, 2]
    for path, expected in summary["path_test_accuracy"].items():
        with stochastic.pinned(model, [int(c) for c in path.split("-")]):
            assert metrics.accuracy(model, tiny.x_test, tiny.y_test) == pytest.approx(expected, abs=1e-9)


def test_upper_channel_trains_on_frozen_lower_blocks_redrawn_every_batch(finished_run, tiny):
    out, summary, _ = finished_run
    run = json.loads((out / "run.json").read_text())
    keras.utils.set_random_seed(0)
    model, new_channel = hrs_training.build_channel_model(hrs_training.models.get_architecture("mnist"), run,
                                                          str(out), block=1, channel=0, seed=123)
    lower = hrs.switches(model)
    assert len(lower) == 1 and not lower[0].trainable and lower[0].granularity == "batch"
    before_lower = [w.numpy().copy() for w in lower[0].weights]
    before_new = [w.numpy().copy() for w in new_channel.weights]
    drawn = []

    class RecordPath(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            drawn.append(int(lower[0].last_channels[0]))

    hrs_training.training.fit(model, tiny.x_train, tiny.y_train, epochs=1, batch_size=64, seed=1, verbose=0,
                              callbacks=[RecordPath()])
    assert len(drawn) == 16 and set(drawn) == {0, 1}  # re-drawn per mini-batch; P(one channel only) = 2**-15
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before_lower, lower[0].weights))  # frozen
    assert not all(np.array_equal(a, w.numpy()) for a, w in zip(before_new, new_channel.weights))  # trained
    # Lower dropout stays active while the upper block trains (freezing does not switch it off).
    with stochastic.pinned(model, [0]):
        x = tiny.x_test[:8]
        assert not np.array_equal(np.asarray(model(x, training=True)), np.asarray(model(x, training=True)))


def test_rerun_of_a_finished_run_skips_every_channel(finished_run, tiny):
    out, summary, _ = finished_run
    before = {name: weights_of(out / "channels" / name) for name in os.listdir(out / "channels")}
    logs = []
    again = hrs_training.train_hrs(tiny, str(out), verbose=0, log=logs.append, **SETTINGS)
    assert sum("already trained" in line for line in logs) == 4 and again["resumed"]
    for name, arrays in before.items():
        for (n1, a1), (n2, a2) in zip(arrays, weights_of(out / "channels" / name)):
            assert n1 == n2 and np.array_equal(a1, a2)
    assert again["path_test_accuracy"] == summary["path_test_accuracy"]


def test_resume_with_other_settings_is_refused(finished_run, tiny):
    out, _, _ = finished_run
    with pytest.raises(ConfigError, match=r"channels: \[2, 2\] there vs \[3, 2\] now"):
        hrs_training.train_hrs(tiny, str(out), **{**SETTINGS, "channels": (3, 2)})
    other = dataclasses.replace(tiny, x_train=tiny.x_train[:500], y_train=tiny.y_train[:500])
    with pytest.raises(ConfigError, match="train_fingerprint"):
        hrs_training.train_hrs(other, str(out), **SETTINGS)
    with pytest.raises(ConfigError, match="epochs"):
        hrs_training.train_hrs(tiny, str(out), **{**SETTINGS, "epochs": (1, 2)})


def test_killed_run_resumes_to_the_same_model(tmp_path, tiny_mnist_dir, finished_run):
    reference, _, _ = finished_run
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(REPO, "tools", "train_hrs.py"), "--dataset=mnist",
               f"--data_dir={tiny_mnist_dir}", "--channels=2,2", "--epochs=1,1", "--eval_repeats=2", "--seed=0",
               f"--output_dir={out}"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
    finished = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            finished = len(json.loads((out / "progress.json").read_text())["channels"])
        except (OSError, ValueError):
            finished = 0
        if finished >= 2:
            proc.kill()  # SIGKILL in the middle of the third channel
            break
        time.sleep(0.05)
    proc.wait()
    assert finished >= 2 and not (out / "hrs_model.h5").exists(), "the run finished before it could be killed"

    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already trained") == finished
    for name in ["0_0.h5", "0_1.h5", "1_0.h5", "1_1.h5"]:
        for (n1, a1), (n2, a2) in zip(weights_of(reference / "channels" / name), weights_of(out / "channels" / name)):
            assert n1 == n2 and np.array_equal(a1, a2), name
    assert not [f for f in os.listdir(out / "channels") if f.endswith(".tmp.h5")]


def test_a_channel_killed_after_an_epoch_resumes_at_the_next_epoch_to_the_same_weights(tmp_path, tiny, monkeypatch):
    from hrs_tf.training import checkpoint

    settings = dict(channels=(1, 1), epochs=(2, 1), seed=3, eval_repeats=1, verbose=0)
    hrs_training.train_hrs(tiny, str(tmp_path / "straight"), log=lambda line: None, **settings)

    class Killed(Exception):
        pass

    real_save = checkpoint.save

    def save_then_die(path, state, groups):
        real_save(path, state, groups)
        raise Killed(path)

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        hrs_training.train_hrs(tiny, str(out), log=lambda line: None, **settings)
    assert os.listdir(out / "channels") == ["0_0.checkpoint.h5"]  # epoch 1 of the first channel, nothing else
    monkeypatch.setattr(checkpoint, "save", real_save)
    logs = []
    hrs_training.train_hrs(tiny, str(out), log=logs.append, **settings)
    resumed = [line for line in logs if line.startswith("resuming from")]
    assert resumed == [f"resuming from {out / 'channels' / '0_0.checkpoint.h5'} after epoch 1"]
    assert sum(line.startswith("epoch 2/2 of block 1 channel 1") for line in logs) == 1
    assert not any(line.startswith("epoch 1/2 of block 1 channel 1") for line in logs)  # epoch 1 not redone
    assert sorted(os.listdir(out / "channels")) == ["0_0.h5", "1_0.h5"]  # checkpoints gone with their channels
    for name in ["0_0.h5", "1_0.h5"]:
        pairs = zip(weights_of(tmp_path / "straight" / "channels" / name), weights_of(out / "channels" / name))
        assert all(n1 == n2 and np.array_equal(a1, a2) for (n1, a1), (n2, a2) in pairs), name


def test_a_run_made_before_epochs_were_reshuffled_is_not_resumed(finished_run, tiny, tmp_path):
    out, _, _ = finished_run
    old = tmp_path / "old"
    os.makedirs(old)
    run = json.loads((out / "run.json").read_text())
    del run["epoch_order"]  # run.json of a run made by one fit call per channel (the same order every epoch)
    (old / "run.json").write_text(json.dumps(run))
    with pytest.raises(ConfigError, match="epoch_order: None there vs 'reshuffled per epoch"):
        hrs_training.train_hrs(tiny, str(old), **SETTINGS)


def test_mismatched_resume_via_the_tool_fails_cleanly(finished_run, tiny_mnist_dir):
    out, _, _ = finished_run
    before = sorted(os.listdir(out))
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_hrs.py"), "--dataset=mnist",
                             f"--data_dir={tiny_mnist_dir}", "--channels=2,3", "--epochs=1", f"--output_dir={out}"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "other settings" in errors[0]
    assert sorted(os.listdir(out)) == before


def write_published_channel(path, channel):
    """One channel file as the published repo writes it: Keras 2 ``Sequential.save_weights`` with separate
    Activation layers, no file extension."""
    write_keras2_weights(path, channel, separate_activations=True)


def test_load_published_per_channel_files(tmp_path, finished_run, tiny):
    out, _, _ = finished_run
    trained = serialization.load_model(out / "hrs_model.h5")
    folder = tmp_path / "MNIST_models" / "test_hrs[2][2]"
    folder.mkdir(parents=True)
    for b, switch in enumerate(hrs.switches(trained)):
        for c, channel in enumerate(switch.channels):
            write_published_channel(folder / f"{b}_{c}", channel)  # no extension, as published
    loaded = hrs.load_published_hrs(str(folder), "mnist")
    assert hrs.channel_counts(loaded) == [2, 2]
    for path in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        with stochastic.pinned(trained, path), stochastic.pinned(loaded, path):
            np.testing.assert_array_equal(np.asarray(loaded(tiny.x_test[:20])), np.asarray(trained(tiny.x_test[:20])))
    os.remove(folder / "1_1")
    with pytest.raises(ModelError, match=r"channel file 1_1 .* is missing"):
        hrs.load_published_hrs(str(folder), "mnist")


def test_evaluate_accuracy_tool_on_saved_and_published_hrs(tmp_path, finished_run, tiny_mnist_dir):
    out, summary, _ = finished_run
    common = ["--dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--repeats=3", "--num_images=50"]
    saved_model = f"--model={out / 'hrs_model.h5'}"

    def tool(*args):
        return run_script("evaluate_accuracy.py", *common, *args)

    def digest(result):
        assert result.returncode == 0, result.stderr
        return result.stdout.split("logits sha256 ")[1].split()[0]

    first = tool(saved_model, "--path=1,0", f"--output={tmp_path / 'acc.json'}")
    record = json.loads((tmp_path / "acc.json").read_text())
    accuracy = record["accuracy"]
    assert len(accuracy["runs"]) == 3 and accuracy["std"] > 0  # per-image random paths: the runs differ
    # ... but the same command (same --seed, recorded) gives the same numbers (the draws within a run differ)
    again = tool(saved_model, "--path=1,0", f"--output={tmp_path / 'again.json'}")
    assert json.loads((tmp_path / "again.json").read_text())["accuracy"] == accuracy
    assert record["seed"] == 0 and record["logits_sha256"] == digest(first) == digest(again)
    paths = summary["path_test_accuracy"].values()
    assert min(paths) - 0.1 <= accuracy["mean"] <= max(paths) + 0.1  # 50 images: +-0.1 covers sampling noise

    folder = tmp_path / "test_hrs[2][2]"
    folder.mkdir()
    trained = serialization.load_model(out / "hrs_model.h5")
    for b, switch in enumerate(hrs.switches(trained)):
        for c, channel in enumerate(switch.channels):
            write_published_channel(folder / f"{b}_{c}", channel)
    # Fixed-randomness digests: a fresh process on the saved model, the published-layout weights and this
    # process all give bit-identical logits for the same path; another path gives other logits.
    # (one process runs the published layout first, then two bad inputs, see run_script_cases)
    published, both, bad_path = run_script_cases("evaluate_accuracy.py", [
        [*common, f"--hrs_weights_dir={folder}", "--path=1,0"], [*common, f"--hrs_weights_dir={folder}", saved_model],
        [*common, saved_model, "--path=1,x"]])
    assert "test accuracy" in published.stdout
    x = data.first_test_images(data.load_dataset("mnist", tiny_mnist_dir), 50)[0]
    assert digest(first) == digest(published) == metrics.logits_digest(trained, x, (1, 0))
    assert digest(first) != metrics.logits_digest(trained, x, (0, 0))  # the default path

    assert both.returncode != 0 and "exactly one of --model or --hrs_weights_dir" in both.stderr
    assert bad_path.returncode == 2 and bad_path.stderr.strip().splitlines()[-1] == \
        "error: --path='1,x' must be channel numbers such as 3,1"


@pytest.mark.parametrize("channels", [(2,), (1, 2, 1)])
def test_one_and_three_block_runs(tmp_path, tiny, channels):
    summary = hrs_training.train_hrs(tiny, str(tmp_path / "run"), channels, 2, batch_size=32, seed=1, eval_repeats=1,
                                     verbose=0, log=lambda _: None)
    assert summary["epochs"] == [2] * len(channels) and len(summary["channel_records"]) == sum(channels)
    model = keras.models.load_model(tmp_path / "run" / "hrs_model.h5", safe_mode=True)
    assert hrs.channel_counts(model) == list(channels)
    first_layers = [s.channels[0].layers[0].name for s in hrs.switches(model)]
    assert first_layers == (["conv1"] if len(channels) == 1 else ["conv1", "fc1", "fc2"])
    assert len(summary["path_test_accuracy"]) == int(np.prod(channels))
    # Every path learned (chance is 0.1): measured 0.577 / 0.510 for (2,), 0.757 / 0.747 for (1, 2, 1).
    assert all(acc > 0.35 for acc in summary["path_test_accuracy"].values()), summary["path_test_accuracy"]


def test_block0_channels_reused_from_a_smaller_run_equal_fresh_training(tmp_path, finished_run, tiny):
    source, _, _ = finished_run  # channels (2, 2), epochs (1, 1), seed 0
    logs = []
    hrs_training.train_hrs(tiny, str(tmp_path / "reused"), (3, 1), (1, 1), seed=0, eval_repeats=1, verbose=0,
                           log=logs.append, reuse_block0_from=str(source))
    assert sum("reused from" in line for line in logs) == 2 and sum("training 1 epochs" in line for line in logs) == 2
    hrs_training.train_hrs(tiny, str(tmp_path / "fresh"), (3, 1), (1, 1), seed=0, eval_repeats=1, verbose=0,
                           log=lambda _: None)
    for name in ["0_0.h5", "0_1.h5", "0_2.h5", "1_0.h5"]:  # a block-0 channel does not depend on the channel count
        for (n1, a1), (n2, a2) in zip(weights_of(tmp_path / "fresh" / "channels" / name),
                                      weights_of(tmp_path / "reused" / "channels" / name)):
            assert n1 == n2 and np.array_equal(a1, a2), name
    with pytest.raises(ConfigError, match="seed differ"):
        hrs_training.train_hrs(tiny, str(tmp_path / "other"), (3, 1), (1, 1), seed=1, reuse_block0_from=str(source))
    with pytest.raises(ConfigError, match="block-0 epochs differ"):
        hrs_training.train_hrs(tiny, str(tmp_path / "other2"), (3, 1), (2, 1), seed=0, reuse_block0_from=str(source))
    assert not (tmp_path / "other").exists() and not (tmp_path / "other2").exists()  # refused before writing


def test_the_registry_trains_hrs_into_a_run_folder_beside_the_model_file(finished_run, tiny):
    from hrs_tf.defenses import making

    out, summary, _ = finished_run
    logs = []
    model, record = making.make("hrs:2x2", tiny, str(out) + ".h5", epochs=1, seed=0, eval_repeats=2, verbose=0,
                                log=logs.append)
    # The run folder is the output's stem: the finished run is resumed (nothing retrained) and copied to the file.
    assert sum("already trained" in line for line in logs) == 4 and not any("training 1 epochs" in line for line in logs)
    assert record["defense"] == "hrs:2x2" and record["label"] == "HRS 2x2" and record["run_folder"] == str(out)
    assert record["channel_records"] == summary["channel_records"]
    assert record["attacker_view"]["discrete_realisations"] == {"switch0": 2, "switch1": 2}
    with stochastic.pinned(model, (1, 0)):
        expected = metrics.accuracy(model, tiny.x_test, tiny.y_test)
    assert summary["path_test_accuracy"]["1-0"] == pytest.approx(expected, abs=1e-9)
    assert json.load(open(str(out) + ".json"))["clean_accuracy"] == record["clean_accuracy"]
