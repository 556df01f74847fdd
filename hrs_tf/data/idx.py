"""MNIST and Fashion-MNIST readers: the four canonical IDX files (``.gz`` or raw) or Keras's ``mnist.npz``."""

import os
import zipfile
import zlib

import numpy as np

from hrs_tf.data.dataset import check_labels, data_error, describe, make_dataset, read_file

_IDX_TRAIN_IMAGES = "train-images-idx3-ubyte"
_IDX_TRAIN_LABELS = "train-labels-idx1-ubyte"
_IDX_TEST_IMAGES = "t10k-images-idx3-ubyte"
_IDX_TEST_LABELS = "t10k-labels-idx1-ubyte"
_IDX_FILES = (_IDX_TRAIN_IMAGES, _IDX_TRAIN_LABELS, _IDX_TEST_IMAGES, _IDX_TEST_LABELS)
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_MNIST_NPZ = "mnist.npz"
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_folder(name, folder):
    paths = _find_idx_files(folder)
    if paths is not None:
        return make_dataset(name, *_read_idx_set(paths), source=folder)
    npz = os.path.join(folder, _MNIST_NPZ)
    if name == "mnist" and os.path.isfile(npz):
        return make_dataset(name, *_read_mnist_npz(npz), source=npz)
    return None


def _find_idx_files(folder):
    """The paths of the four IDX files in ``folder`` (``.gz`` preferred), None if there are none."""
    found = {}
    for base in _IDX_FILES:
        for candidate in (base + ".gz", base):
            if os.path.isfile(os.path.join(folder, candidate)):
                found[base] = os.path.join(folder, candidate)
                break
    if not found:
        return None
    missing = [base + "[.gz]" for base in _IDX_FILES if base not in found]
    if missing:
        raise data_error(f"{folder}: incomplete IDX data set, missing {', '.join(missing)}")
    return [found[base] for base in _IDX_FILES]


def _read_idx_set(paths):
    train_images_path, train_labels_path, test_images_path, test_labels_path = paths
    x_train = _read_idx(train_images_path, images=True)
    y_train = _read_idx(train_labels_path, images=False)
    x_test = _read_idx(test_images_path, images=True)
    y_test = _read_idx(test_labels_path, images=False)
    for x, y, x_path, y_path in ((x_train, y_train, train_images_path, train_labels_path), (x_test, y_test, test_images_path, test_labels_path)):
        if len(x) != len(y):
            raise data_error(f"{x_path} holds {len(x)} images but {y_path} holds {len(y)} labels")
        check_labels(y, y_path)
    return x_train, y_train, x_test, y_test


def _read_idx(path, images):
    """An IDX file as a uint8 array: images (N, 28, 28, 1) or labels (N,)."""
    data = read_file(path)
    kind = "images" if images else "labels"
    header_size = 16 if images else 8
    expected_magic = _IDX_IMAGES_MAGIC if images else _IDX_LABELS_MAGIC
    if len(data) < header_size:
        raise data_error(f"{path}: too short for an IDX {kind} file ({len(data)} bytes, the header alone is {header_size})")
    header = [int(v) for v in np.frombuffer(data, dtype=">u4", count=header_size // 4)]
    if header[0] != expected_magic:
        raise data_error(f"{path}: not an IDX {kind} file (magic number {header[0]}, expected {expected_magic})")
    count, dims = header[1], tuple(header[2:])
    if images and dims != (28, 28):
        raise data_error(f"{path}: images are {dims[0]}x{dims[1]}, expected 28x28")
    expected_size = header_size + count * int(np.prod(dims, dtype=np.int64))
    if len(data) != expected_size:
        problem = "truncated" if len(data) < expected_size else "extra bytes at the end"
        unpacked = " after decompression" if path.endswith(".gz") else ""
        raise data_error(
            f"{path}: {problem}: the header announces {count} {kind}, i.e. {expected_size} bytes, "
            f"but the file holds {len(data)} bytes{unpacked}"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    return array.reshape((count,) + dims + (1,)) if images else array


def _read_mnist_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in _NPZ_KEYS if key not in npz.files]
            if missing:
                raise data_error(f"{path}: missing arrays {', '.join(missing)} (an mnist.npz holds {', '.join(_NPZ_KEYS)})")
            arrays = [npz[key] for key in _NPZ_KEYS]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise data_error(f"{path}: not a readable .npz file ({describe(e)})") from e
    x_train, y_train, x_test, y_test = arrays
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[1:3] != (28, 28) or x.shape[3:] not in ((), (1,)):
            raise data_error(f"{path}: {key} is {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
    return x_train.reshape(-1, 28, 28, 1), y_train, x_test.reshape(-1, 28, 28, 1), y_test
