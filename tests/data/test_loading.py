"""Tests of hrs_tf.data: real MNIST / Fashion-MNIST from shared/data, synthetic files for everything else.

No test downloads: the Keras loader is replaced by a stub, and HOME, KERAS_HOME, HRS_TF_DATA_DIR, the
/tmp Keras cache and the Debian folder all point into tmp_path.
"""

import dataclasses
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from hrs_tf import data
from hrs_tf.data import loading
from hrs_tf.errors import ConfigError, DataError

CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --- environment isolation -----------------------------------------------------------------------


class DownloadStub:
    """Replaces the Keras download: records calls, then raises or returns what it was given."""

    def __init__(self, result=None):
        self.calls = []
        self.result = result

    def __call__(self, name):
        self.calls.append(name)
        if isinstance(self.result, BaseException):
            raise self.result
        if self.result is None:
            raise RuntimeError("a test tried to download")
        return self.result


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every place load_dataset looks at points into tmp_path; downloading is stubbed out."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(loading, "KERAS_FALLBACK_CACHE_DIR", str(tmp_path / "tmp_keras" / "datasets"))
    monkeypatch.setattr(loading, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "debian" / "fashion-mnist"))
    stub = DownloadStub()
    monkeypatch.setattr(loading, "_keras_load_data", stub)
    return stub


def error_message(excinfo, *fragments):
    """The message of a raised error, after checking it is one line and holds every fragment."""
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in {message!r}"
    return message


# --- synthetic MNIST-like files ------------------------------------------------------------------


def synthetic_arrays(n_train=12, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_train = (np.arange(n_train) * 3 % 10).astype(np.uint8)
    y_test = (np.arange(n_test) * 7 % 10).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def idx_images(images, magic=2051):
    n, rows, cols = images.shape
    return struct.pack(">IIII", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels, magic=2049):
    return struct.pack(">II", magic, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes()


def write_idx_set(folder, arrays=None, gz=True, **replace):
    """Writes the four IDX files of ``arrays`` to ``folder``; ``replace`` maps a file's key
    (train_images, train_labels, test_images, test_labels) to the raw bytes to write instead."""
    arrays = synthetic_arrays() if arrays is None else arrays
    x_train, y_train, x_test, y_test = arrays
    contents = {
        "train_images": idx_images(x_train),
        "train_labels": idx_labels(y_train),
        "test_images": idx_images(x_test),
        "test_labels": idx_labels(y_test),
    }
    contents.update(replace)
    folder.mkdir(parents=True, exist_ok=True)
    for base, payload in zip(IDX_NAMES, contents.values()):
        if gz:
            (folder / (base + ".gz")).write_bytes(gzip.compress(payload))
        else:
            (folder / base).write_bytes(payload)
    return arrays


def write_mnist_npz(path, arrays=None, **replace):
    x_train, y_train, x_test, y_test = synthetic_arrays() if arrays is None else arrays
    contents = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    contents.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in contents.items() if v is not None})
    return x_train, y_train, x_test, y_test


def assert_matches(dataset, arrays):
    """``dataset`` holds exactly the uint8 ``arrays``, as float32 NHWC / 255 and int64 labels."""
    x_train, y_train, x_test, y_test = arrays
    for got, want in ((dataset.x_train, x_train), (dataset.x_test, x_test)):
        assert got.dtype == np.float32 and got.shape == want.shape[:3] + (1,)
        np.testing.assert_array_equal(got[..., 0], want.astype(np.float32) / np.float32(255))
    for got, want in ((dataset.y_train, y_train), (dataset.y_test, y_test)):
        assert got.dtype == np.int64 and got.shape == (len(want),)
        np.testing.assert_array_equal(got, want)


# --- synthetic CIFAR-10 files --------------------------------------------------------------------


def cifar_batches(n=20, seed=0):
    """The six canonical batch dicts with random pixels, plus two pixels set on purpose:
    data_batch_1 image 3 is black except green = 255 at row 5, column 7; test_batch image 0 has red = 51."""
    rng = np.random.default_rng(seed)
    batches = {}
    for b, name in enumerate(CIFAR_BATCHES):
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        batches[name] = {
            b"batch_label": f"batch {b + 1} of 6".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": pixels,
            b"filenames": [f"image_{b}_{i}.png".encode() for i in range(n)],
        }
    batches["data_batch_1"][b"data"][3] = 0
    batches["data_batch_1"][b"data"][3, 1 * 1024 + 5 * 32 + 7] = 255
    batches["test_batch"][b"data"][0, :1024] = 51
    return batches


CIFAR_META = {b"num_cases_per_batch": 20, b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072}


def cifar_members(batches):
    members = {name: pickle.dumps(batch, protocol=2) for name, batch in batches.items()}
    members["batches.meta"] = pickle.dumps(CIFAR_META, protocol=2)
    return members


def write_cifar_archive(path, members):
    """A tar.gz holding ``members`` (name -> bytes) under cifar-10-batches-py/, like the original."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def write_cifar_folder(folder, members):
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in members.items():
        (folder / name).write_bytes(payload)
    return folder


def expected_cifar(batches, names):
    """Images (N, 32, 32, 3) computed pixel by pixel from the flat rows: [n, r, c, ch] = row[ch*1024 + r*32 + c]."""
    rows = np.concatenate([batches[name][b"data"] for name in names])
    r = np.arange(32)[:, None, None]
    c = np.arange(32)[None, :, None]
    ch = np.arange(3)[None, None, :]
    images = rows[:, ch * 1024 + r * 32 + c]
    labels = np.concatenate([batches[name][b"labels"] for name in names])
    return images, labels


def assert_cifar_matches(dataset, batches):
    assert dataset.name == "cifar10" and dataset.input_shape == (32, 32, 3) and dataset.num_classes == 10
    x_train, y_train = expected_cifar(batches, CIFAR_BATCHES[:5])
    x_test, y_test = expected_cifar(batches, CIFAR_BATCHES[5:])
    assert dataset.x_train.shape == (100, 32, 32, 3) and dataset.x_test.shape == (20, 32, 32, 3)
    assert dataset.x_train.dtype == np.float32 and dataset.x_train.flags.c_contiguous
    np.testing.assert_array_equal(dataset.x_train, x_train.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(dataset.x_test, x_test.astype(np.float32) / np.float32(255))
    assert dataset.y_train.dtype == np.int64 and dataset.y_train.shape == (100,)
    np.testing.assert_array_equal(dataset.y_train, y_train)
    np.testing.assert_array_equal(dataset.y_test, y_test)
    # The two pixels set on purpose land where NHWC says.
    assert np.count_nonzero(dataset.x_train[3]) == 1 and dataset.x_train[3, 5, 7, 1] == 1.0
    assert np.all(dataset.x_test[0, :, :, 0] == np.float32(51) / np.float32(255))


@pytest.fixture
def cifar(tmp_path):
    batches = cifar_batches()
    return batches, cifar_members(batches)


# --- real MNIST and Fashion-MNIST ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(shared_data_dir):
    return data.load_dataset("mnist", data_dir=shared_data_dir, download=False)


@pytest.fixture(scope="module")
def fashion(shared_data_dir):
    return data.load_dataset("fashion_mnist", data_dir=shared_data_dir, download=False)


def check_real(dataset, name):
    assert dataset.name == name
    assert dataset.x_train.shape == (60000, 28, 28, 1) and dataset.x_test.shape == (10000, 28, 28, 1)
    assert dataset.input_shape == (28, 28, 1) and dataset.num_classes == 10
    for x in (dataset.x_train, dataset.x_test):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (dataset.y_train, dataset.y_test):
        assert y.dtype == np.int64 and y.ndim == 1 and set(np.unique(y)) == set(range(10))
    assert dataset.y_train.shape == (60000,) and dataset.y_test.shape == (10000,)
    # Values are exactly k / 255 for integer k (no mean subtraction).
    k = dataset.x_test[:50] * 255
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)


def test_real_mnist(mnist, shared_data_dir):
    check_real(mnist, "mnist")
    assert mnist.source == str(shared_data_dir / "mnist")
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(float(mnist.x_train.mean()) - 0.1307) < 1e-4  # the well-known MNIST mean
    assert round(float(mnist.x_train[0].sum()) * 255) == 27525  # the first "5", pixel sum in uint8 units


def test_real_fashion_mnist(fashion, shared_data_dir):
    check_real(fashion, "fashion_mnist")
    assert fashion.source == str(shared_data_dir / "fashion-mnist")
    assert fashion.y_train[:5].tolist() == [9, 0, 0, 3, 0]
    assert fashion.y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert abs(float(fashion.x_train.mean()) - 0.2860) < 1e-4


def test_real_mnist_from_its_own_folder(mnist, shared_data_dir):
    direct = data.load_dataset("MNIST", data_dir=shared_data_dir / "mnist", download=False)
    assert direct.source == mnist.source
    np.testing.assert_array_equal(direct.y_train, mnist.y_train)
    np.testing.assert_array_equal(direct.x_test, mnist.x_test)


def test_real_fashion_mnist_from_environment(fashion, shared_data_dir, monkeypatch, isolated):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(shared_data_dir))
    loaded = data.load_dataset("Fashion-MNIST")
    assert loaded.source == fashion.source and isolated.calls == []
    np.testing.assert_array_equal(loaded.y_test, fashion.y_test)
    np.testing.assert_array_equal(loaded.x_test[:100], fashion.x_test[:100])


def test_validation_split_on_real_mnist(mnist):
    x_train, y_train, x_val, y_val = data.train_validation_split(mnist.x_train, mnist.y_train, 5000, seed=0)
    assert x_train.shape == (55000, 28, 28, 1) and x_val.shape == (5000, 28, 28, 1)
    assert y_train.shape == (55000,) and y_val.shape == (5000,)
    again = data.train_validation_split(mnist.x_train, mnist.y_train, 5000, seed=0)
    np.testing.assert_array_equal(again[2], x_val)
    np.testing.assert_array_equal(again[3], y_val)
    # The split is the index split, applied to images and labels alike.
    index = np.arange(60000)
    idx_train, _, idx_val, _ = data.train_validation_split(index, index, 5000, seed=0)
    np.testing.assert_array_equal(x_val, mnist.x_train[idx_val])
    np.testing.assert_array_equal(y_train, mnist.y_train[idx_train])
    assert len(set(np.unique(y_val))) == 10


def test_validation_split_indices():
    index = np.arange(1000)
    idx_train, y_train, idx_val, y_val = data.train_validation_split(index, index * 10, 100, seed=3)
    assert len(idx_train) == 900 and len(idx_val) == 100
    assert set(idx_train.tolist()).isdisjoint(idx_val.tolist())
    assert sorted(idx_train.tolist() + idx_val.tolist()) == list(range(1000))
    np.testing.assert_array_equal(y_val, idx_val * 10)  # labels follow their images
    assert np.all(np.diff(idx_train) > 0) and np.all(np.diff(idx_val) > 0)  # original order kept
    other = data.train_validation_split(index, index, 100, seed=4)[2]
    assert not np.array_equal(other, idx_val)
    # Pinned: a change here changes every published validation split.
    assert data.train_validation_split(np.arange(100), np.arange(100), 5, seed=0)[2].tolist() == [5, 20, 36, 82, 93]


@pytest.mark.parametrize("num_validation", [0, -1, 10, 11])
def test_validation_split_bad_size(num_validation):
    with pytest.raises(ConfigError) as excinfo:
        data.train_validation_split(np.zeros(10), np.zeros(10), num_validation)
    error_message(excinfo, f"num_validation={num_validation}", "[1, 9]")


def test_validation_split_bad_arguments():
    with pytest.raises(ConfigError) as excinfo:
        data.train_validation_split(np.zeros(10), np.zeros(10), 2.5)
    error_message(excinfo, "num_validation=2.5", "not an integer")
    with pytest.raises(ConfigError) as excinfo:
        data.train_validation_split(np.zeros(10), np.zeros(9), 2)
    error_message(excinfo, "10", "9")


def test_first_test_images(mnist):
    x, y = data.first_test_images(mnist, 100)
    assert x.shape == (100, 28, 28, 1) and y.shape == (100,)
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    np.testing.assert_array_equal(x, mnist.x_test[:100])
    x_all, _ = data.first_test_images(mnist, 10000)
    assert len(x_all) == 10000


@pytest.mark.parametrize("n", [0, -5, 10001, "5", 1.0])
def test_first_test_images_bad_n(mnist, n):
    with pytest.raises(ConfigError) as excinfo:
        data.first_test_images(mnist, n)
    error_message(excinfo, f"n={n!r}" if isinstance(n, (str, float)) else f"n={n}")


# --- names and search order ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, name",
    [("mnist", "mnist"), ("MNIST", "mnist"), ("fashion-mnist", "fashion_mnist"), ("FashionMNIST", "fashion_mnist"),
     ("fashion_mnist", "fashion_mnist"), ("cifar-10", "cifar10"), ("CIFAR10", "cifar10"), (" Cifar10 ", "cifar10")],
)
def test_aliases(alias, name):
    assert data.canonical_name(alias) == name
    assert data.search_locations(alias, "/d")[0] == "/d"


@pytest.mark.parametrize("name", ["foo", "cifar100", "", None])
def test_unknown_name(name):
    with pytest.raises(DataError) as excinfo:
        data.load_dataset(name, download=False)
    assert error_message(excinfo) == f"unknown data set {name!r}; choose one of mnist, fashion_mnist, cifar10"


def test_search_locations_order(tmp_path, monkeypatch):
    keras_cache = str(tmp_path / "keras_home" / "datasets")
    fallback = str(tmp_path / "tmp_keras" / "datasets")
    assert data.search_locations("mnist") == [keras_cache, keras_cache + "/mnist", fallback, fallback + "/mnist"]
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    env = str(tmp_path / "env")
    assert data.search_locations("fashion-mnist") == [
        env, env + "/fashion-mnist", env + "/fashion_mnist",
        keras_cache, keras_cache + "/fashion-mnist", keras_cache + "/fashion_mnist",
        fallback, fallback + "/fashion-mnist", fallback + "/fashion_mnist",
        str(tmp_path / "debian" / "fashion-mnist"),
    ]
    explicit = str(tmp_path / "explicit")
    assert data.search_locations("cifar10", explicit) == [explicit, explicit + "/cifar10", explicit + "/cifar-10"]
    monkeypatch.delenv("KERAS_HOME")
    assert data.search_locations("mnist")[2] == str(tmp_path / "home" / ".keras" / "datasets")


def test_missing_everywhere(tmp_path, isolated):
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", download=False)
    locations = data.search_locations("mnist")
    message = error_message(excinfo, "mnist not found; looked in: " + ", ".join(locations) + "; download disabled.")
    assert "--data_dir=DIR" in message and "HRS_TF_DATA_DIR" in message and "mnist.npz" in message
    assert isolated.calls == []


def test_missing_everywhere_download_fails(monkeypatch):
    stub = DownloadStub(Exception("URL fetch failure on https://example.invalid/cifar.tar.gz: None --\n[Errno -3] no network"))
    monkeypatch.setattr(loading, "_keras_load_data", stub)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10")
    error_message(excinfo, "cifar10 not found; looked in: ", "download failed (URL fetch failure on", "None -- [Errno -3] no network)")
    assert stub.calls == ["cifar10"]


def test_explicit_data_dir_is_not_a_fallback(tmp_path):
    write_mnist_npz(tmp_path / "keras_home" / "datasets" / "mnist.npz")  # usable, but not where we asked
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", data_dir=empty)
    error_message(excinfo, f"mnist not found in data_dir {empty}", f"{empty}, {empty}/mnist", "train-images-idx3-ubyte", "mnist.npz")


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("fashion_mnist", data_dir=tmp_path / "nowhere", download=False)
    error_message(excinfo, f"fashion_mnist not found: data_dir {tmp_path / 'nowhere'} is not an existing folder")


def test_environment_before_keras_cache_and_fall_through(tmp_path, monkeypatch):
    env = tmp_path / "env"
    cache_arrays = write_mnist_npz(tmp_path / "keras_home" / "datasets" / "mnist.npz", synthetic_arrays(seed=1))
    env.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(env))
    from_cache = data.load_dataset("mnist", download=False)  # env dir lacks mnist: falls through
    assert from_cache.source == str(tmp_path / "keras_home" / "datasets" / "mnist.npz")
    assert_matches(from_cache, cache_arrays)
    env_arrays = write_idx_set(env / "mnist", synthetic_arrays(seed=2))
    from_env = data.load_dataset("mnist", download=False)
    assert from_env.source == str(env / "mnist")
    assert_matches(from_env, env_arrays)


# --- synthetic MNIST-like sources ----------------------------------------------------------------


def test_idx_gz_and_raw(tmp_path):
    arrays = write_idx_set(tmp_path / "gz" / "fashion-mnist")
    loaded = data.load_dataset("fashion-mnist", data_dir=tmp_path / "gz", download=False)
    assert loaded.source == str(tmp_path / "gz" / "fashion-mnist") and loaded.input_shape == (28, 28, 1)
    assert_matches(loaded, arrays)
    raw_arrays = write_idx_set(tmp_path / "raw", synthetic_arrays(seed=5), gz=False)
    assert_matches(data.load_dataset("mnist", data_dir=tmp_path / "raw", download=False), raw_arrays)


def test_mnist_npz_in_keras_cache(tmp_path, isolated):
    arrays = write_mnist_npz(tmp_path / "keras_home" / "datasets" / "mnist.npz")
    loaded = data.load_dataset("mnist")
    assert loaded.source == str(tmp_path / "keras_home" / "datasets" / "mnist.npz")
    assert_matches(loaded, arrays)
    assert isolated.calls == []
    # An mnist.npz is not Fashion-MNIST.
    with pytest.raises(DataError, match="fashion_mnist not found"):
        data.load_dataset("fashion_mnist", download=False)


def test_mnist_npz_in_home_and_tmp_caches(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME")
    home_arrays = write_mnist_npz(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz", synthetic_arrays(seed=3))
    assert_matches(data.load_dataset("mnist", download=False), home_arrays)
    (tmp_path / "home" / ".keras" / "datasets" / "mnist.npz").unlink()
    tmp_arrays = write_mnist_npz(tmp_path / "tmp_keras" / "datasets" / "mnist.npz", synthetic_arrays(seed=4))
    loaded = data.load_dataset("mnist", download=False)
    assert loaded.source == str(tmp_path / "tmp_keras" / "datasets" / "mnist.npz")
    assert_matches(loaded, tmp_arrays)


def test_fashion_mnist_keras_cache_layout(tmp_path):
    arrays = write_idx_set(tmp_path / "keras_home" / "datasets" / "fashion-mnist")
    loaded = data.load_dataset("fashion_mnist", download=False)
    assert loaded.source == str(tmp_path / "keras_home" / "datasets" / "fashion-mnist")
    assert_matches(loaded, arrays)


def test_fashion_mnist_debian_folder(tmp_path):
    arrays = write_idx_set(tmp_path / "debian" / "fashion-mnist")
    loaded = data.load_dataset("fashion_mnist", download=False)
    assert loaded.source == str(tmp_path / "debian" / "fashion-mnist")
    assert_matches(loaded, arrays)
    with pytest.raises(DataError, match="^mnist not found"):  # the Debian folder is for Fashion-MNIST only
        data.load_dataset("mnist", download=False)


def test_download_result_is_checked_and_converted(monkeypatch):
    x_train, y_train, x_test, y_test = synthetic_arrays()
    stub = DownloadStub((x_train, y_train, x_test, y_test))
    monkeypatch.setattr(loading, "_keras_load_data", stub)
    loaded = data.load_dataset("mnist")
    assert loaded.source == "keras download" and stub.calls == ["mnist"]
    assert_matches(loaded, (x_train, y_train, x_test, y_test))
    stub.result = (x_train.astype(np.float32), y_train, x_test, y_test)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist")
    error_message(excinfo, "keras download: train images are float32 (12, 28, 28, 1), expected uint8 (N, 28, 28, 1)")


def test_cifar_download_labels_are_flattened(monkeypatch, cifar):
    batches, _ = cifar
    x_train, y_train = expected_cifar(batches, CIFAR_BATCHES[:5])
    x_test, y_test = expected_cifar(batches, CIFAR_BATCHES[5:])
    stub = DownloadStub((x_train, y_train.astype(np.uint8)[:, None], x_test, y_test.astype(np.uint8)[:, None]))
    monkeypatch.setattr(loading, "_keras_load_data", stub)
    loaded = data.load_dataset("cifar-10")
    assert loaded.source == "keras download"
    assert_cifar_matches(loaded, batches)


def test_dataset_is_frozen(tmp_path):
    write_idx_set(tmp_path)
    loaded = data.load_dataset("mnist", data_dir=tmp_path, download=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.name = "other"
    assert "x_train" not in repr(loaded) and str(tmp_path) in repr(loaded)


# --- broken MNIST-like files ---------------------------------------------------------------------

X_TRAIN, Y_TRAIN, X_TEST, Y_TEST = synthetic_arrays()


@pytest.mark.parametrize(
    "key, payload, file, fragments",
    [
        ("train_images", idx_images(X_TRAIN, magic=2049), "train-images-idx3-ubyte.gz", ["not an IDX images file", "magic number 2049, expected 2051"]),
        ("test_labels", idx_labels(Y_TEST, magic=2051), "t10k-labels-idx1-ubyte.gz", ["not an IDX labels file", "magic number 2051, expected 2049"]),
        ("train_images", idx_images(X_TRAIN)[:-10], "train-images-idx3-ubyte.gz", ["truncated", "12 images", "9424 bytes", "holds 9414 bytes"]),
        ("train_images", idx_images(X_TRAIN)[:10], "train-images-idx3-ubyte.gz", ["too short", "10 bytes"]),
        ("test_images", idx_images(X_TEST) + b"\0" * 5, "t10k-images-idx3-ubyte.gz", ["extra bytes", "6 images", "4720 bytes", "holds 4725 bytes"]),
        ("train_labels", idx_labels(Y_TRAIN) + b"\1", "train-labels-idx1-ubyte.gz", ["extra bytes", "20 bytes", "holds 21 bytes"]),
        ("train_images", idx_images(np.zeros((12, 27, 28), np.uint8)), "train-images-idx3-ubyte.gz", ["27x28, expected 28x28"]),
        ("train_labels", idx_labels(Y_TRAIN[:11]), "train-labels-idx1-ubyte.gz", ["train-images-idx3-ubyte.gz holds 12 images but", "holds 11 labels"]),
        ("test_labels", idx_labels([1, 2, 10, 3, 4, 5]), "t10k-labels-idx1-ubyte.gz", ["label 10 at index 2 is outside 0..9"]),
    ],
)
def test_broken_idx(tmp_path, key, payload, file, fragments):
    write_idx_set(tmp_path, **{key: payload})
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    error_message(excinfo, tmp_path / file, *fragments)


@pytest.mark.parametrize("corrupt", [lambda gz: b"this is not gzip data", lambda gz: gz[: len(gz) // 2], lambda gz: gz[:12] + b"\xff" * 40 + gz[52:]])
def test_corrupt_gzip(tmp_path, corrupt):
    write_idx_set(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path}: corrupt gzip file (")


def test_incomplete_idx_set(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("fashion_mnist", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{tmp_path}: incomplete IDX data set, missing t10k-labels-idx1-ubyte[.gz]")


def test_broken_cache_is_an_error_not_skipped(tmp_path, monkeypatch):
    """A corrupt file in an earlier place stops the search rather than silently using a later one."""
    write_idx_set(tmp_path / "env", train_images=b"junk")
    write_mnist_npz(tmp_path / "keras_home" / "datasets" / "mnist.npz")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", download=False)
    error_message(excinfo, tmp_path / "env" / "train-images-idx3-ubyte.gz", "too short")


@pytest.mark.parametrize(
    "replace, fragments",
    [
        ({"y_test": None}, ["missing arrays y_test"]),
        ({"x_train": None, "y_train": None}, ["missing arrays x_train, y_train"]),
        ({"x_train": X_TRAIN.astype(np.float32)}, ["x_train is float32 (12, 28, 28), expected uint8 (N, 28, 28)"]),
        ({"x_test": np.zeros((6, 32, 32), np.uint8)}, ["x_test is uint8 (6, 32, 32)"]),
        ({"y_train": Y_TRAIN[:5]}, ["train labels are uint8 (5,), expected 12 integers for 12 images"]),
        ({"y_test": Y_TEST.astype(np.float64)}, ["test labels are float64 (6,)"]),
        ({"y_train": Y_TRAIN + 5}, ["(train labels): label 11 at index 2 is outside 0..9 (5 such labels)"]),
    ],
)
def test_broken_npz(tmp_path, replace, fragments):
    path = tmp_path / "mnist.npz"
    write_mnist_npz(path, **replace)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    error_message(excinfo, path, *fragments)


def test_npz_that_is_not_a_zip(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path}: not a readable .npz file")


# --- CIFAR-10 ------------------------------------------------------------------------------------


def test_cifar_archive_in_data_dir(tmp_path, cifar):
    batches, members = cifar
    path = write_cifar_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", members)
    loaded = data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert loaded.source == str(path)
    assert_cifar_matches(loaded, batches)
    assert not (tmp_path / "cifar10" / "cifar-10-batches-py").exists()  # read in place, not extracted


@pytest.mark.parametrize("archive", ["cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz"])
def test_cifar_archive_in_keras_cache(tmp_path, cifar, archive):
    batches, members = cifar
    path = write_cifar_archive(tmp_path / "keras_home" / "datasets" / archive, members)
    loaded = data.load_dataset("CIFAR-10", download=False)
    assert loaded.source == str(path)
    assert_cifar_matches(loaded, batches)


@pytest.mark.parametrize(
    "layout, data_dir",
    [
        ("data/cifar-10-batches-py", "data"),  # the extracted folder, given its parent
        ("data/cifar-10-batches-py", "data/cifar-10-batches-py"),  # given itself
        ("data/cifar10", "data"),  # batches directly in the data set's subfolder
    ],
)
def test_cifar_extracted_folder(tmp_path, cifar, layout, data_dir):
    batches, members = cifar
    folder = write_cifar_folder(tmp_path / layout, members)
    loaded = data.load_dataset("cifar10", data_dir=tmp_path / data_dir, download=False)
    assert loaded.source == str(folder)
    assert_cifar_matches(loaded, batches)


def test_cifar_extracted_keras_cache_preferred_to_archive(tmp_path, cifar):
    batches, members = cifar
    cache = tmp_path / "keras_home" / "datasets"
    write_cifar_archive(cache / "cifar-10-batches-py-target_archive", members)
    folder = write_cifar_folder(cache / "cifar-10-batches-py-target" / "cifar-10-batches-py", members)
    loaded = data.load_dataset("cifar10", download=False)
    assert loaded.source == str(folder)
    assert_cifar_matches(loaded, batches)


def test_cifar_truncated_archive(tmp_path, cifar):
    _, members = cifar
    path = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", members)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path}: corrupt or truncated archive (")


def test_cifar_archive_that_is_not_a_tar(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path}: corrupt or truncated archive (")


def test_cifar_missing_batch(tmp_path, cifar):
    _, members = cifar
    del members["data_batch_3"]
    path = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path}: the archive has no member cifar-10-batches-py/data_batch_3")


def test_cifar_folder_missing_batch(tmp_path, cifar):
    _, members = cifar
    del members["test_batch"]
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", members)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{folder}: incomplete CIFAR-10 folder, test_batch is missing")


class Exploit:
    """Pickles as a call of os.system: what a tampered batch file could hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_cifar_pickle_with_forbidden_global_is_refused(tmp_path, cifar):
    batches, members = cifar
    marker = tmp_path / "exploit_ran"
    evil = {**batches["test_batch"], b"data": Exploit(f"touch {marker}")}
    members["test_batch"] = pickle.dumps(evil, protocol=2)
    path = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path} member cifar-10-batches-py/test_batch: refusing to unpickle {os.system.__module__}.system")
    assert not marker.exists()


def test_cifar_pickle_of_builtins_eval_is_refused(tmp_path, cifar):
    _, members = cifar
    members["data_batch_2"] = b"cbuiltins\neval\n(Vprint('pwned')\ntR."  # protocol 0: eval("print('pwned')")
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", members)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, folder / "data_batch_2", "refusing to unpickle builtins.eval")


@pytest.mark.parametrize(
    "batch, fragments",
    [
        ([1, 2, 3], ["not a CIFAR-10 batch (holds a list, expected a dict)"]),
        ({b"labels": [1]}, ["not a CIFAR-10 batch (no 'data' entry)"]),
        ({b"data": np.zeros((20, 3072), np.uint8)}, ["not a CIFAR-10 batch (no 'labels' entry)"]),
        ({b"data": np.zeros((20, 1024), np.uint8), b"labels": [0] * 20}, ["data is uint8 (20, 1024), expected a uint8 array (N, 3072)"]),
        ({b"data": np.zeros((20, 3072), np.float32), b"labels": [0] * 20}, ["data is float32 (20, 3072)"]),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19}, ["labels must be a list of 20 integers"]),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19 + [12]}, ["label 12 at index 19 is outside 0..9"]),
    ],
)
def test_cifar_batch_with_wrong_content(tmp_path, cifar, batch, fragments):
    _, members = cifar
    members["data_batch_4"] = pickle.dumps(batch, protocol=2)
    path = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{path} member cifar-10-batches-py/data_batch_4: ", *fragments)


def test_cifar_garbage_pickle(tmp_path, cifar):
    _, members = cifar
    members["data_batch_1"] = pickle.dumps(cifar[0]["data_batch_1"], protocol=2)[:-100]
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", members)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    error_message(excinfo, f"{folder / 'data_batch_1'}: not a readable pickle (")


def test_cifar_batches_written_by_python2_numpy1(tmp_path, cifar):
    """The original files name numpy.core.multiarray._reconstruct and hold the pixels as a py2 str."""
    batches, members = cifar
    for name in CIFAR_BATCHES:
        members[name] = py2_style_pickle(batches[name])
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", members)
    assert_cifar_matches(data.load_dataset("cifar10", data_dir=tmp_path, download=False), batches)


def py2_style_pickle(batch):
    """A protocol-2 pickle as Python 2 with numpy 1 wrote it: GLOBAL numpy.core.multiarray._reconstruct,
    and the array's bytes as a BINSTRING (which encoding="bytes" turns into bytes)."""
    out = io.BytesIO()
    out.write(b"\x80\x02}q\x00(")  # PROTO 2, EMPTY_DICT, MARK
    for key, value in batch.items():
        out.write(b"U" + bytes([len(key)]) + key)  # SHORT_BINSTRING key
        if isinstance(value, np.ndarray):
            raw = value.tobytes()
            out.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            out.write(b"K\x00\x85U\x01b\x87R")  # (0,), b"b" -> _reconstruct(ndarray, (0,), b"b")
            out.write(b"(K\x01")  # state: (1, shape, dtype, is_fortran, raw)
            out.write(b"J" + struct.pack("<i", value.shape[0]) + b"J" + struct.pack("<i", value.shape[1]) + b"\x86")
            out.write(b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
            out.write(b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb")
        elif isinstance(value, bytes):
            out.write(b"U" + bytes([len(value)]) + value)
        else:  # a list of ints or of bytes
            out.write(b"](")
            for item in value:
                out.write(b"U" + bytes([len(item)]) + item if isinstance(item, bytes) else b"K" + bytes([item]))
            out.write(b"e")
    out.write(b"u.")  # SETITEMS, STOP
    return out.getvalue()
