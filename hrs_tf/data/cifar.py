"""CIFAR-10 readers: the pickled "python version" batches, extracted or inside the tar.gz archive (read without
extracting), loaded by an unpickler that admits only numpy array reconstruction."""

import codecs
import io
import os
import pickle
import posixpath
import tarfile
import zlib

import numpy as np

from hrs_tf.data.dataset import check_labels, data_error, describe, make_dataset, read_file
from hrs_tf.errors import DataError

_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_BATCHES = _CIFAR_TRAIN_BATCHES + (_CIFAR_TEST_BATCH,)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_EXTRACTED_DIRS = ("", _CIFAR_FOLDER, os.path.join("cifar-10-batches-py-target", _CIFAR_FOLDER))
_CIFAR_ARCHIVES = ("cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz", "cifar-10-batches-py-target_archive")
_CIFAR_PIXELS = 32 * 32 * 3


try:
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct

# The only globals a CIFAR-10 batch pickle refers to: numpy array reconstruction (spelled the numpy 1 or
# the numpy 2 way), and _codecs.encode, which Python 3 protocol-2 pickles use to store bytes.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


def load_folder(folder):
    for sub in _CIFAR_EXTRACTED_DIRS:
        batch_dir = os.path.join(folder, sub) if sub else folder
        if any(os.path.isfile(os.path.join(batch_dir, batch)) for batch in _CIFAR_BATCHES):
            return _make_cifar_dataset(_read_cifar_batch_dir(batch_dir), source=batch_dir)
    for archive in _CIFAR_ARCHIVES:
        path = os.path.join(folder, archive)
        if os.path.isfile(path):
            return _make_cifar_dataset(_read_cifar_archive(path), source=path)
    return None


def _read_cifar_batch_dir(batch_dir):
    batches = {}
    for batch in _CIFAR_BATCHES:
        path = os.path.join(batch_dir, batch)
        if not os.path.isfile(path):
            raise data_error(f"{batch_dir}: incomplete CIFAR-10 folder, {batch} is missing")
        batches[batch] = _unpickle_batch(read_file(path), path)
    return batches


def _read_cifar_archive(path):
    """The batches inside a CIFAR-10 tar archive, read member by member (nothing is extracted)."""
    batches = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                batch = posixpath.basename(member.name)
                if member.isfile() and batch in _CIFAR_BATCHES and batch not in batches:
                    data = tar.extractfile(member).read()
                    batches[batch] = _unpickle_batch(data, f"{path} member {member.name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise data_error(f"{path}: corrupt or truncated archive ({describe(e)})") from e
    missing = [f"{_CIFAR_FOLDER}/{batch}" for batch in _CIFAR_BATCHES if batch not in batches]
    if missing:
        raise data_error(f"{path}: the archive has no member {', '.join(missing)}")
    return batches


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch; refuses every global but numpy array reconstruction."""

    def __init__(self, file, where):
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise data_error(f"{self.where}: refusing to unpickle {module}.{name} (a CIFAR-10 batch holds only numpy arrays, lists and bytes)")
        return _CIFAR_PICKLE_GLOBALS[module, name]


def _unpickle_batch(data, where):
    """A CIFAR-10 batch as ``(images uint8 (N, 3072), labels)``; ``where`` names the file in errors."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), where).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- a malformed pickle can raise almost anything
        raise data_error(f"{where}: not a readable pickle ({describe(e)})") from e
    if not isinstance(batch, dict):
        raise data_error(f"{where}: not a CIFAR-10 batch (holds a {type(batch).__name__}, expected a dict)")
    images, labels = _batch_entry(batch, "data", where), _batch_entry(batch, "labels", where)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != _CIFAR_PIXELS:
        shape = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise data_error(f"{where}: data is {shape}, expected a uint8 array (N, {_CIFAR_PIXELS})")
    labels = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    if labels is None or labels.ndim != 1 or len(labels) != len(images) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise data_error(f"{where}: labels must be a list of {len(images)} integers, one per image")
    check_labels(labels, where)
    return images, labels


def _batch_entry(batch, key, where):
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise data_error(f"{where}: not a CIFAR-10 batch (no {key!r} entry)")


def _make_cifar_dataset(batches, source):
    x_train = np.concatenate([batches[b][0] for b in _CIFAR_TRAIN_BATCHES])
    y_train = np.concatenate([batches[b][1] for b in _CIFAR_TRAIN_BATCHES])
    x_test, y_test = batches[_CIFAR_TEST_BATCH]
    return make_dataset("cifar10", _cifar_to_nhwc(x_train), y_train, _cifar_to_nhwc(x_test), y_test, source=source)


def _cifar_to_nhwc(rows):
    """(N, 3072) rows of R, G, B 32x32 planes -> a (N, 32, 32, 3) view."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
