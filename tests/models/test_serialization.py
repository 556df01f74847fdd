import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest

from hrs_tf import models
from hrs_tf.models import serialization
from hrs_tf.errors import ModelError
from tests.keras2_files import write_keras2_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mnist_model():
    keras.utils.set_random_seed(11)
    return models.build_base_model("mnist")


@pytest.fixture(scope="module")
def probe():
    return np.random.default_rng(5).random((16, 28, 28, 1), dtype=np.float32)


def test_h5_round_trip_in_a_fresh_process_is_bit_identical(tmp_path, mnist_model, probe):
    path = tmp_path / "m.h5"
    serialization.save_model(mnist_model, path)
    np.save(tmp_path / "x.npy", probe)
    script = textwrap.dedent(f"""
        import numpy as np, keras, hrs_tf
        m = keras.models.load_model({str(path)!r}, safe_mode=True)
        np.save({str(tmp_path / 'out.npy')!r}, np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}), training=False)))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, capture_output=True)
    reloaded = np.load(tmp_path / "out.npy")
    expected = np.asarray(mnist_model(probe, training=False))
    assert reloaded.dtype == np.float32
    np.testing.assert_array_equal(reloaded, expected)
    with h5py.File(path) as f:
        assert "optimizer_weights" not in f  # no optimizer state in saved models


def test_save_is_atomic_and_checks_extension(tmp_path, mnist_model):
    with pytest.raises(ModelError, match="must end in .h5"):
        serialization.save_model(mnist_model, tmp_path / "m.txt")
    target = tmp_path / "m.h5"

    class Boom(RuntimeError):
        pass

    class Exploding(keras.Model):
        def save(self, *a, **k):
            with open(a[0], "wb") as f:
                f.write(b"half")
            raise Boom()

    with pytest.raises(Boom):
        serialization.save_model(Exploding(), target)
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary file is left


def test_load_model_errors_name_the_file(tmp_path, mnist_model):
    with pytest.raises(ModelError, match="does not exist"):
        serialization.load_model(tmp_path / "nope.h5")
    with pytest.raises(ModelError, match="is a directory; give the .h5 / .keras file inside it"):
        serialization.load_model(tmp_path)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelError, match="bad.h5.*not an HDF5 file"):
        serialization.load_model(bad)
    weights_only = tmp_path / "w.h5"
    serialization.save_legacy_weights(mnist_model, weights_only)
    with pytest.raises(ModelError, match="weights only"):
        serialization.load_model(weights_only)
    good = tmp_path / "good.h5"
    serialization.save_model(mnist_model, good)
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(ModelError, match="trunc.h5"):
        serialization.load_model(truncated)


def test_legacy_keras2_weights_load_by_layer_order(tmp_path, mnist_model, probe):
    path = tmp_path / "keras2.h5"
    write_keras2_weights(path, mnist_model)
    keras.utils.set_random_seed(99)
    fresh = models.build_base_model("mnist")
    assert not np.array_equal(np.asarray(fresh(probe)), np.asarray(mnist_model(probe)))
    serialization.load_legacy_weights(fresh, path)
    np.testing.assert_array_equal(np.asarray(fresh(probe)), np.asarray(mnist_model(probe)))


def test_legacy_weights_of_a_full_keras2_model_file(tmp_path, mnist_model, probe):
    """Keras 2 ``model.save`` nests the same layout under ``model_weights``."""
    inner = tmp_path / "inner.h5"
    write_keras2_weights(inner, mnist_model)
    full = tmp_path / "full.h5"
    with h5py.File(inner) as src, h5py.File(full, "w") as dst:
        src.copy(src["/"], dst, "model_weights")
        for k, v in src.attrs.items():
            dst["model_weights"].attrs[k] = v
    fresh = models.build_base_model("mnist")
    serialization.load_legacy_weights(fresh, full)
    np.testing.assert_array_equal(np.asarray(fresh(probe)), np.asarray(mnist_model(probe)))


def test_legacy_weights_into_nested_blocks_and_back(tmp_path, mnist_model, probe):
    b1, b2 = models.block_ranges("mnist", 2)
    composed = keras.Sequential([keras.Input((28, 28, 1)), models.build_block("mnist", b1, name="block1"),
                                 models.build_block("mnist", b2, name="block2")])
    path = tmp_path / "w.h5"
    serialization.save_legacy_weights(mnist_model, path)
    serialization.load_legacy_weights(composed, path)
    np.testing.assert_array_equal(np.asarray(composed(probe)), np.asarray(mnist_model(probe)))


def test_legacy_weights_mismatch_names_first_bad_layer(tmp_path, mnist_model):
    path = tmp_path / "cifar.h5"
    write_keras2_weights(path, models.build_base_model("cifar10"))
    target = models.build_base_model("mnist")
    before = [w.numpy().copy() for w in target.weights]
    with pytest.raises(ModelError) as err:
        serialization.load_legacy_weights(target, path)
    message = str(err.value)
    assert "weighted layer #0" in message and "'conv2d_1'" in message and "'conv1'" in message
    assert "(3, 3, 3, 64)" in message and "(3, 3, 1, 32)" in message and "\n" not in message
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, target.weights))  # nothing assigned

    short = tmp_path / "short.h5"
    write_keras2_weights(short, models.build_block("mnist", models.block_ranges("mnist", 2)[0]))
    with pytest.raises(ModelError, match="it has 5 layers with weights, the model has 7"):
        serialization.load_legacy_weights(models.build_base_model("mnist"), short)


def test_legacy_weights_bad_files(tmp_path):
    model = models.build_base_model("mnist")
    with pytest.raises(ModelError, match="does not exist"):
        serialization.load_legacy_weights(model, tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="junk.h5.*not an HDF5"):
        serialization.load_legacy_weights(model, junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w"):
        pass
    with pytest.raises(ModelError, match="not a Keras-2 weights file"):
        serialization.load_legacy_weights(model, empty)
