"""Adversarial-training examples (Random Spiking paper 5.1.1-5.1.2, Table 3, appendix A.1): plan, filtering,
sorting, true labels, resume, and bad settings. A tiny linear MNIST model and a few C&W iterations keep it fast."""

import glob
import os

import numpy as np
import pytest

import randspike.adversarial_examples as ae
from hrs_tf.errors import ConfigError
from tests.randspike.helpers import linear_mnist_model

CW = {"max_iterations": 30, "binary_search_steps": 3, "initial_const": 1.0, "learning_rate": 0.1}
SETTINGS = {"confidences": (0, 2), "per_confidence": 12, "l2_cutoff": 4.0, "keep": 8, "batch_size": 6}


@pytest.fixture(scope="module")
def setup(real_mnist):
    model = linear_mnist_model(real_mnist, epochs=3)
    return model, real_mnist.x_train[:3000], real_mnist.y_train[:3000].astype(np.int64)


@pytest.fixture(scope="module")
def generated(setup, tmp_path_factory):
    model, x, y = setup
    work = str(tmp_path_factory.mktemp("adv"))
    lines = []
    result = ae.generate(model, x, y, work, seed=3, log=lines.append, **SETTINGS, **CW)
    return work, result, lines


def _chunks(work):
    return sorted(glob.glob(os.path.join(work, ae.CHUNK_DIR, "*.npz")))


def test_plan_targets_never_labels_and_distinct_images(setup):
    _, _, y = setup
    indices, targets = ae.draw_plan(y, (0, 5, 10), 500, 10, seed=1)
    assert indices.shape == targets.shape == (3, 500)
    assert len(np.unique(indices)) == 1500  # distinct training images over all K
    assert not np.any(targets == y[indices])
    assert set(np.unique(targets)) == set(range(10))  # every class is a target somewhere
    again = ae.draw_plan(y, (0, 5, 10), 500, 10, seed=1)
    assert np.array_equal(again[0], indices) and np.array_equal(again[1], targets)


def test_kept_examples_filtered_sorted_true_labels(setup, generated):
    model, x, y = setup
    work, result, lines = generated
    summary = result["summary"]
    parts = [dict(np.load(p)) for p in _chunks(work)]
    assert len(parts) == 4  # 2 K x 12 images / 6 per chunk
    succeeded = np.concatenate([p["succeeded"] for p in parts])
    l2 = np.concatenate([p["l2"] for p in parts])
    # the test is not vacuous: some attacks failed, some successes exceed the cut-off, and `keep` binds
    assert summary["generated"] == 24 and 0 < summary["succeeded"] < 24
    assert summary["under_cutoff"] == int(np.sum(succeeded & (l2 <= 4.0))) < summary["succeeded"]
    assert summary["under_cutoff"] > 8 and summary["kept"] == 8 == len(result["x_adv"])
    # the smallest 8 valid L2s, ascending
    assert np.allclose(result["l2"], np.sort(l2[succeeded & (l2 <= 4.0)])[:8])
    assert np.all(np.diff(result["l2"]) >= 0) and result["l2"].max() <= 4.0
    # true labels, targets different from them, and the L2 is that of the stored image
    assert np.array_equal(result["y"], y[result["index"]])
    assert not np.any(result["targets"] == result["y"])
    measured = np.sqrt(((result["x_adv"] - x[result["index"]]) ** 2).reshape(8, -1).sum(1))
    assert np.allclose(measured, result["l2"], atol=1e-4)
    # success = the image differs from the original, and cw_l2 only returns an image that reached the target with
    # margin >= K: a deterministic model predicts the target on every kept example
    logits = np.asarray(model(result["x_adv"]))
    assert np.array_equal(np.argmax(logits, 1), result["targets"])
    margin = logits[np.arange(8), result["targets"]] - np.sort(logits, 1)[:, -2]
    assert np.all(margin >= result["confidence"] - 1e-4)
    # failures are the originals
    failed = [(p["x_adv"][~p["succeeded"]], x[p["index"][~p["succeeded"]]]) for p in parts]
    assert all(np.array_equal(a, b) for a, b in failed)
    assert sum(s["kept"] for s in summary["per_confidence"].values()) == 8
    assert any(line.startswith("chunk 4/4 (K=2") for line in lines)
    loaded = ae.load(work)
    assert np.array_equal(loaded["x_adv"], result["x_adv"]) and loaded["summary"]["kept"] == 8


def test_resume_redoes_only_the_missing_chunk(setup, generated, monkeypatch):
    model, x, y = setup
    work, result, _ = generated
    calls = []
    real = ae.cw_l2

    def counting(*args, **kwargs):
        calls.append(kwargs["confidence"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ae, "cw_l2", counting)
    os.unlink(_chunks(work)[2])  # the first chunk of K=2
    again = ae.generate(model, x, y, work, seed=3, log=lambda s: None, **SETTINGS, **CW)
    assert calls == [2.0]
    assert np.array_equal(again["x_adv"], result["x_adv"]) and np.array_equal(again["index"], result["index"])
    ae.generate(model, x, y, work, seed=3, log=lambda s: None, **SETTINGS, **CW)
    assert calls == [2.0]  # nothing missing: no attack
    with pytest.raises(ConfigError, match="other settings.*keep"):
        ae.generate(model, x, y, work, seed=3, **dict(SETTINGS, keep=9), **CW)


@pytest.mark.parametrize("change, message", [
    ({"confidences": ()}, "confidences"), ({"confidences": (0, -1)}, "confidence=-1"),
    ({"confidences": (5, 5)}, "repeats"), ({"confidences": "0"}, "confidences"),
    ({"l2_cutoff": 0}, "l2_cutoff"), ({"l2_cutoff": "x"}, "l2_cutoff"), ({"keep": 25}, "keep=25"),
    ({"per_confidence": 2000}, "exceeds the 3000"), ({"per_confidence": 0}, "per_confidence")])
def test_bad_settings_one_line_no_file(setup, tmp_path, change, message):
    model, x, y = setup
    work = tmp_path / "w"
    with pytest.raises(ConfigError, match=message) as error:
        ae.generate(model, x, y, str(work), **dict(SETTINGS, **change), **CW)
    assert "\n" not in str(error.value)
    assert not work.exists()


def test_paper_settings_and_augmented_set(generated):
    assert ae.paper_settings("mnist") == {"confidences": (0, 5, 10, 15), "per_confidence": 3000, "l2_cutoff": 3.0,
                                          "keep": 10_000}
    assert ae.paper_settings("cifar10")["keep"] == 10_000  # 6 x 2000 generated
    assert ae.paper_settings("fashion_mnist", scale=0.1) == {"confidences": (0, 20, 40, 60), "per_confidence": 300,
                                                             "l2_cutoff": 1.0, "keep": 1000}
    with pytest.raises(ConfigError, match="dataset"):
        ae.paper_settings("svhn")
    _, result, _ = generated
    x = np.zeros((5, 28, 28, 1), np.float32)
    y = np.arange(5)
    xa, ya = ae.augmented_training_set(x, y, result)
    assert xa.shape == (13, 28, 28, 1) and np.array_equal(ya[5:], result["y"]) and np.array_equal(xa[5:], result["x_adv"])
    with pytest.raises(ConfigError, match="do not fit"):
        ae.augmented_training_set(np.zeros((5, 32, 32, 3)), y, result)
