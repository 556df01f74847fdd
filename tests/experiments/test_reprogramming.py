import json
import os

import keras
import numpy as np
import pytest

from hrs_tf import cli, data, models, training
from hrs_tf.defenses import hrs
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.evaluation import metrics
from hrs_tf.experiments.reprogramming import report
from hrs_tf.experiments.reprogramming import train as reprogramming
from hrs_tf.experiments.reprogramming import transform as transforms
from hrs_tf.layers import stochastic
from hrs_tf.layers.locally_connected import LocallyConnected2D
from hrs_tf.models import serialization
from hrs_tf.training import checkpoint
from tests.tool_runner import run_script, run_script_cases

L = keras.layers


def small_cnn(input_shape=(28, 28, 1), outputs=10, dropout=None):
    layers = [keras.Input(input_shape), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2),
              L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dense(64, activation="relu")]
    if dropout:
        layers.append(L.Dropout(dropout))
    return keras.Sequential(layers + [L.Dense(outputs)], name="small_cnn")


@pytest.fixture(scope="module")
def fashion_target(shared_data_dir):
    """A small CNN trained on 10k Fashion-MNIST images (4 epochs, Adam): 83.0% on the first 1000 test images."""
    fashion = data.load_dataset("fashion_mnist", shared_data_dir)
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(fashion.x_train[:10000], fashion.y_train[:10000], epochs=4, batch_size=64, verbose=0)
    assert metrics.accuracy(model, fashion.x_test[:1000], fashion.y_test[:1000]) > 0.78
    return model


def mnist_slice(real_mnist, n_train, n_test):
    return data.Dataset("mnist", real_mnist.x_train[:n_train], real_mnist.y_train[:n_train],
                        real_mnist.x_test[:n_test], real_mnist.y_test[:n_test], source="real MNIST slice")


# --- the input transform ---------------------------------------------------------------------------


def _transform_output(transform, x, weight_scale=None):
    if weight_scale:
        rng = np.random.default_rng(0)
        transform.set_weights([weight_scale * rng.normal(size=w.shape).astype(np.float32) for w in transform.weights])
    return np.asarray(transform(x))


def test_transform_mnist_to_cifar_shape_and_range(real_mnist):
    transform = transforms.build_input_transform((28, 28, 1), (32, 32, 3))
    assert [type(layer).__name__ for layer in transform.layers] == ["ZeroPadding2D", "LocallyConnected2D", "Activation"]
    assert transform.get_layer("padding").padding == ((3, 3), (3, 3))  # the reference's ZeroPadding2D(3)
    assert transform.output_shape == (None, 32, 32, 3)
    assert transform.count_params() == 32 * 32 * (3 * 3 * 3 + 3) == 30720
    out = _transform_output(transform, real_mnist.x_test[:64])
    assert out.shape == (64, 32, 32, 3) and out.min() == 0.0 and 0.0 < out.max() < 0.5  # small initial weights
    # Large random weights: tanh(relu(.)) saturates at 1.0 (float32) but stays in the targets' [0, 1] range.
    out = _transform_output(transform, real_mnist.x_test[:64], 5.0)
    assert out.min() == 0.0 and out.max() == 1.0 and (out == 0).mean() > 0.2 and ((out > 0) & (out < 1)).mean() > 0.05


def test_transform_mnist_to_fashion_and_even_kernels(real_mnist):
    transform = transforms.build_input_transform((28, 28, 1), (28, 28, 1))
    assert transform.get_layer("padding").padding == ((1, 1), (1, 1))
    assert transform.output_shape == (None, 28, 28, 1) and transform.count_params() == 28 * 28 * 10 == 7840
    out = _transform_output(transform, real_mnist.x_test[:16], 5.0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # A 2x2 kernel onto CIFAR needs 5 rows of padding: the extra one goes at the bottom / right.
    assert transforms.transform_padding((28, 28, 1), (32, 32, 3), 2) == ((2, 3), (2, 3))
    two = transforms.build_input_transform((28, 28, 1), (32, 32, 3), kernel_size=2)
    assert two.output_shape == (None, 32, 32, 3) and two.count_params() == 32 * 32 * (2 * 2 * 3 + 3)
    assert transforms.transform_padding((32, 32, 3), (28, 28, 1), 5) == ((0, 0), (0, 0))


def test_transform_settings_errors():
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="kernel_size"):
            transforms.build_input_transform((28, 28, 1), (32, 32, 3), kernel_size=bad)
    with pytest.raises(ConfigError, match=r"padding would be -2 along height \(needs kernel_size >= 5\)"):
        transforms.build_input_transform((32, 32, 3), (28, 28, 1), kernel_size=3)
    with pytest.raises(ConfigError, match="not an image shape"):
        transforms.build_input_transform((784,), (28, 28, 1))


def test_reprogram_checks_the_target():
    transform = transforms.build_input_transform((28, 28, 1), (28, 28, 1))
    with pytest.raises(ModelError, match=r"outputs \(None, 5\); .* needs 10 logits"):
        transforms.reprogram(small_cnn(outputs=5), transform)
    with pytest.raises(ModelError, match=r"outputs \(28, 28, 1\), target model .* takes \(32, 32, 3\)"):
        transforms.reprogram(small_cnn(input_shape=(32, 32, 3)), transform)
    with pytest.raises(ModelError, match="built Keras model"):
        transforms.reprogram(L.Dense(10), transform)


# --- training --------------------------------------------------------------------------------------


def test_target_frozen_and_only_the_transform_trains(fashion_target, real_mnist):
    before = [w.copy() for w in fashion_target.get_weights()]
    source = mnist_slice(real_mnist, 1000, 200)
    transform, record = reprogramming.train_reprogramming(fashion_target, source, epochs=1, seed=5, verbose=0)
    after = fashion_target.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    keras.utils.set_random_seed(5)  # the transform's initial weights under the run seed
    initial = transforms.build_input_transform((28, 28, 1), (28, 28, 1)).get_weights()
    assert np.abs(transform.get_weights()[0] - initial[0]).max() > 1e-3
    assert record["target_fingerprint"] == checkpoint.weights_fingerprint(fashion_target)
    model = transforms.reprogram(fashion_target, transform)
    assert {id(v) for v in model.trainable_weights} == {id(v) for v in transform.trainable_weights}
    assert len(model.trainable_weights) == 2 and fashion_target.trainable_weights == []


def test_reprogramming_a_trained_target_beats_chance(fashion_target, real_mnist):
    source = mnist_slice(real_mnist, 4000, 1000)
    transform, record = reprogramming.train_reprogramming(fashion_target, source, epochs=3, seed=0, verbose=0)
    curve = [h["test_accuracy"] for h in record["history"]]
    # Measured here: 0.087 before training, then 0.258 / 0.390 / 0.430 (seeds 1 and 2 end at 0.405 and 0.434;
    # chance: 0.10; the most frequent digit of these 1000 test images: 0.126).
    assert record["initial_test_accuracy"] < 0.13
    assert curve[-1] > 0.33 and curve[-1] > curve[0]
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]
    assert record["num_train"] == 4000 and record["num_test"] == 1000 and record["kernel_size"] == 3
    assert record["padding"] == [[1, 1], [1, 1]] and record["transform_params"] == 7840
    assert record["output_mapping"] == "identity" and record["realisation_counts"] == []
    model = transforms.reprogram(fashion_target, transform)
    assert metrics.accuracy(model, source.x_test, source.y_test) == pytest.approx(record["test_accuracy"], abs=1e-9)
    json.dumps(record)  # JSON-ready


def test_train_step_runs_the_target_in_inference_mode(real_mnist):
    """The target's train-time Dropout is off while the transform trains (the reference's learning phase 0)."""
    keras.utils.set_random_seed(2)
    target = small_cnn(dropout=0.5)
    transform = transforms.build_input_transform((28, 28, 1), (28, 28, 1))
    model = transforms.reprogram(target, transform)
    optimizer = training.reference_optimizer(learning_rate=1e-9)
    optimizer.build(transform.trainable_variables)
    step = reprogramming._train_step_function(model, transform.trainable_variables, optimizer)
    x, y = real_mnist.x_train[:64], real_mnist.y_train[:64].astype(np.int64)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = float(loss_fn(y, model(x, training=False)))
    assert float(loss_fn(y, model(x, training=True))) != pytest.approx(expected, abs=1e-4)  # dropout would change it
    for _ in range(3):
        assert float(step(x, y)[0]) == pytest.approx(expected, abs=1e-5)


def test_hrs_target_stays_random_and_is_evaluated_per_image(real_mnist):
    keras.utils.set_random_seed(3)
    target = hrs.build_hrs_model("mnist", [2, 2], seed=3)
    stochastic.pin(target, [1, 0])
    before = [w.copy() for w in target.get_weights()]
    transform = transforms.build_input_transform((28, 28, 1), (28, 28, 1))
    model = transforms.reprogram(target, transform)
    assert [layer.randomness for layer in stochastic.stochastic_layers(target)] == ["random", "random"]
    paths = set()
    for _ in range(12):
        model(real_mnist.x_test[:8], training=False)
        paths.add(tuple(int(p[0]) for p in hrs.last_path(target)))
    assert len(paths) >= 3  # one path per batch, redrawn on every call
    with stochastic.per_example(target):  # how accuracy is measured: every image its own path
        model(real_mnist.x_test[:64], training=False)
        assert len(set(hrs.last_path(target)[0].tolist())) == 2
    assert len(hrs.last_path(target)[0]) == 64
    model(real_mnist.x_test[:64], training=False)
    assert len(hrs.last_path(target)[0]) == 1  # back to one path per batch
    source = mnist_slice(real_mnist, 512, 200)
    _, record = reprogramming.train_reprogramming(target, source, epochs=1, seed=0, verbose=0)
    assert record["realisation_counts"] == [2, 2] and record["evaluation"] == "each test image its own randomness"
    assert record["stochastic_layers"] == ["RandomSwitch"]
    assert all(np.array_equal(a, b) for a, b in zip(before, target.get_weights()))


def test_resume_reproduces_an_uninterrupted_run(fashion_target, real_mnist, tmp_path, capsys):
    source = mnist_slice(real_mnist, 1000, 300)
    settings = dict(seed=7, verbose=1)
    straight, record_a = reprogramming.train_reprogramming(fashion_target, source, 2, checkpoint_path=tmp_path / "a.h5",
                                                           **settings)
    reprogramming.train_reprogramming(fashion_target, source, 1, checkpoint_path=tmp_path / "b.h5", **settings)
    resumed, record_b = reprogramming.train_reprogramming(fashion_target, source, 2, checkpoint_path=tmp_path / "b.h5",
                                                          **settings)
    assert "resuming from" in capsys.readouterr().out
    assert record_b["resumed_from_epoch"] == 1 and record_a["resumed_from_epoch"] == 0
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(record_b["history"]) == strip(record_a["history"])
    assert all(np.array_equal(a, b) for a, b in zip(straight.get_weights(), resumed.get_weights()))
    state, arrays = checkpoint.read(tmp_path / "b.h5")
    assert state["epoch"] == 2 and int(arrays["optimizer"][0]) == 2 * 8  # iterations: 2 epochs of 8 batches
    # A finished run is not trained again; other settings and fewer epochs are refused.
    _, again = reprogramming.train_reprogramming(fashion_target, source, 2, checkpoint_path=tmp_path / "b.h5", **settings)
    assert again["resumed_from_epoch"] == 2 and strip(again["history"]) == strip(record_a["history"])
    with pytest.raises(ConfigError, match=r"other settings \(seed: 7 there vs 8 now\)"):
        reprogramming.train_reprogramming(fashion_target, source, 3, seed=8, checkpoint_path=tmp_path / "b.h5")
    with pytest.raises(ConfigError, match="already holds 2 epochs, more than epochs=1"):
        reprogramming.train_reprogramming(fashion_target, source, 1, seed=7, checkpoint_path=tmp_path / "b.h5")
    other = mnist_slice(real_mnist, 999, 300)
    with pytest.raises(ConfigError, match="train_fingerprint"):
        reprogramming.train_reprogramming(fashion_target, other, 3, seed=7, checkpoint_path=tmp_path / "b.h5")


# --- defenses --------------------------------------------------------------------------------------


def test_the_tool_wraps_the_target_through_the_registry(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "base.h5"
    serialization.save_model(models.build_base_model("mnist"), path)
    assert not stochastic.stochastic_layers(cli.load_model(path, "none"))
    [layer] = stochastic.stochastic_layers(cli.load_model(path, "dropout:0.3", seed=1))
    assert type(layer).__name__ == "DefensiveDropout" and layer.test_rate == pytest.approx(0.3)
    sap = cli.load_model(path, "sap:hrs", seed=1)
    assert [type(layer).__name__ for layer in stochastic.stochastic_layers(sap)] == ["StochasticActivationPruning"]
    with pytest.raises(ConfigError, match="defense 'gaussian' is trained; train it"):
        cli.load_model(path, "gaussian")


# --- the tool --------------------------------------------------------------------------------------


def run_tool(*args):
    return run_script("reprogram.py", *args)


def test_tool_writes_record_transform_and_resumes(fashion_target, tiny_mnist_dir, real_mnist, tmp_path):
    target_path = tmp_path / "target.h5"
    serialization.save_model(fashion_target, target_path)
    out = tmp_path / "out" / "reprog.json"
    common = [f"--target_model={target_path}", "--source_dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--seed=1",
              f"--output={out}"]
    result = run_tool(*common, "--epochs=1")
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1: loss" in result.stdout
    record = json.loads(out.read_text())
    assert record["kind"] == "reprogramming" and record["source_dataset"] == "mnist" and record["num_train"] == 1000
    assert record["target_defense"] == "none" and record["target_model"] == str(target_path)
    assert len(record["history"]) == 1 and {"versions", "padding", "transform_params"} <= set(record)
    assert sorted(os.listdir(out.parent)) == ["reprog.json", "reprog_checkpoint.h5", "reprog_transform.h5"]
    transform = serialization.load_model(out.parent / "reprog_transform.h5")
    assert isinstance(transform.get_layer("locally_connected"), LocallyConnected2D)
    model = transforms.reprogram(fashion_target, transform)
    x, y = real_mnist.x_test[:300], real_mnist.y_test[:300]
    assert metrics.accuracy(model, x, y) == pytest.approx(record["test_accuracy"], abs=1e-9)

    result = run_tool(*common, "--epochs=2")  # continues the finished 1-epoch run
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout and "epoch 1/2: loss" not in result.stdout
    longer = json.loads(out.read_text())
    assert longer["resumed_from_epoch"] == 1 and longer["history"][0] == record["history"][0]
    assert len(longer["history"]) == 2

    # The report, a missing record, a folder given as a record, report-time names (one per record; a wrong count is a
    # one-line error and no file), in one process (see run_script_cases).
    report_path, labelled_path = tmp_path / "docs" / "reprogramming.md", tmp_path / "docs" / "labelled.md"
    result, missing, folder, labelled, miscounted = run_script_cases("report_reprogramming.py", [
        [f"--records={out}", f"--output={report_path}"],
        [f"--records={tmp_path / 'missing.json'}", f"--output={tmp_path / 'r2.md'}"],
        [f"--records={out.parent}", f"--output={tmp_path / 'r2.md'}"],
        [f"--records={out}", "--labels=HRS 5x5", f"--output={labelled_path}"],
        [f"--records={out}", "--labels=a,b", f"--output={tmp_path / 'r3.md'}"]])
    assert result.returncode == 0, result.stderr
    text = report_path.read_text()
    last = f"{100 * longer['test_accuracy']:.2f}% (2)"
    assert "| target |" in text and last in text and "![reprogramming to mnist](reprogramming.png)" in text
    assert (report_path.parent / "reprogramming.png").stat().st_size > 1000
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].endswith("missing.json' does not exist")
    assert folder.returncode == 2 and folder.stderr.strip().splitlines()[-1] == \
        f"error: result file {str(out.parent)!r} is a directory; give the .json file inside it"
    assert not (tmp_path / "r2.md").exists()
    assert labelled.returncode == 0 and "| HRS 5x5 |" in labelled_path.read_text(), labelled.stderr
    assert " '--labels=HRS 5x5' " in labelled_path.read_text()  # the Made-by command pastes into a shell
    assert miscounted.returncode == 2 and miscounted.stderr.strip().splitlines()[-1] == \
        "error: 2 labels for 1 records: give one non-empty label per record, in the order of the records"
    assert not (tmp_path / "r3.md").exists()
    other = dict(longer, source_dataset="fashion_mnist", target_defense="dropout:0.3", target_label="Dropout 0.3")
    text = report.report_markdown([longer, other], str(tmp_path / "two" / "r.png"), "cmd")
    assert "### Reprogrammed to classify mnist" in text and "### Reprogrammed to classify fashion_mnist" in text
    assert "| Dropout 0.3 |" in text and sorted(os.listdir(tmp_path / "two")) == ["r_fashion_mnist.png", "r_mnist.png"]


def test_tool_errors_exit_cleanly_without_output(tiny_mnist_dir, tmp_path):
    expected = {"five_logits": "needs 10 logits", "negative_padding": "padding would be -2 along height"}
    keras.utils.set_random_seed(0)
    serialization.save_model(small_cnn(outputs=5), tmp_path / "five_logits.h5")
    serialization.save_model(small_cnn(input_shape=(24, 24, 1)), tmp_path / "negative_padding.h5")
    out = tmp_path / "out" / "r.json"
    results = run_script_cases("reprogram.py", [[f"--target_model={tmp_path / f'{case}.h5'}", f"--data_dir={tiny_mnist_dir}",
                                                 "--epochs=1", f"--output={out}"] for case in expected])
    for (case, message), result in zip(expected.items(), results):
        assert result.returncode == 2, case
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (case, result.stderr)
        assert "Traceback" not in result.stderr
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_a_run_is_one_cell_trained_once(fashion_target, tiny_mnist_dir, tmp_path):
    """The run is one cell of any executor (its recipe rebuilds it in a worker); a finished run is not trained again
    (its record stays as it is), more epochs continue it."""
    from hrs_tf.experiments.execution import Cell
    from hrs_tf.experiments.reprogramming.run import Reprogramming

    serialization.save_model(fashion_target, tmp_path / "target.h5")
    lines = []

    def run(epochs):  # paths relative to cwd, as a user gives them
        return Reprogramming("target.h5", "out/r.json", "mnist", str(tiny_mnist_dir), epochs=epochs, seed=2,
                             cwd=str(tmp_path), log=lines.append)

    first = run(1)
    assert first.cell_plan() == [Cell("reprogramming", "r")] and first.label == "target"
    assert first.recipe().build().recipe().token == first.recipe().token
    record = first.run()
    assert record["target_model"] == "target.h5" and record["transform_model"] == "out/r_transform.h5"  # as given
    assert sorted(os.listdir(tmp_path / "out")) == ["r.json", "r_checkpoint.h5", "r_transform.h5"]
    assert lines[0].startswith("mnist: 1000 train / 300 test images from ") and lines[-1].startswith("cells: 1/1 done")
    before, lines[:] = (tmp_path / "out" / "r.json").read_text(), []
    assert run(1).run() == record and lines == [] and (tmp_path / "out" / "r.json").read_text() == before
    longer = run(2).run()
    assert longer["resumed_from_epoch"] == 1 and longer["history"][0] == record["history"][0]
