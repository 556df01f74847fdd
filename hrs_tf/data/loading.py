"""The image data sets: MNIST, Fashion-MNIST and CIFAR-10, as float32 NHWC arrays in [0, 1].

:func:`load_dataset` looks for a data set in these places, in this order, and uses the first that
holds any of its files (a place that holds some but broken or incomplete files is an error, never
skipped):

1. the ``data_dir`` argument if given; otherwise the ``HRS_TF_DATA_DIR`` environment variable. A data
   dir may hold the files directly or in a subfolder named after the data set (``mnist/``,
   ``fashion-mnist/`` or ``fashion_mnist/``, ``cifar10/`` or ``cifar-10/``). An explicit ``data_dir``
   is the only place looked at: if it holds no data the load fails. ``HRS_TF_DATA_DIR`` is a general
   preference, so a data set it lacks is looked for in the places below.
2. the Keras cache: ``$KERAS_HOME/datasets`` (or ``~/.keras/datasets`` when ``KERAS_HOME`` is unset),
   then ``/tmp/.keras/datasets`` (where Keras goes when the home folder is not writable), each also with
   the data-set subfolder.
3. for Fashion-MNIST, Debian's ``dataset-fashion-mnist`` package: ``/usr/share/datasets/fashion-mnist``.
4. with ``download=True``, ``keras.datasets.<name>.load_data()`` (which needs the network).

Files read in a folder:

- MNIST and Fashion-MNIST: the four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzip-compressed (``.gz``) or raw; for
  MNIST also Keras's ``mnist.npz``.
- CIFAR-10: the pickled "python version" batches ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch``, extracted (``cifar-10-batches-py/``, Keras's ``cifar-10-batches-py-target/
  cifar-10-batches-py/``, or the folder itself) or inside the tar.gz archive (``cifar-10-python.tar.gz``,
  ``cifar-10-batches-py.tar.gz``, Keras's ``cifar-10-batches-py-target_archive``), read without
  extracting. The pickles are loaded by an unpickler that only admits numpy array reconstruction.

Every problem raises :class:`hrs_tf.errors.DataError` with a one-line message naming the file.
Importing this module does not import TensorFlow; only the download does.
"""

import os
import tempfile

import numpy as np

from hrs_tf.data import cifar, idx
from hrs_tf.data.dataset import as_int, data_error, describe, make_dataset
from hrs_tf.errors import ConfigError, DataError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATA_DIR_ENV = "HRS_TF_DATA_DIR"

# Where Keras puts its cache when the home folder is not writable (see keras.utils.get_file).
KERAS_FALLBACK_CACHE_DIR = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras", "datasets")
# Debian's dataset-fashion-mnist package.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_ALIASES = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}
_SUBDIRS = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion-mnist", "fashion_mnist"),
    "cifar10": ("cifar10", "cifar-10"),
}

_WHAT_TO_PROVIDE = {
    "mnist": "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte (each .gz or raw) or mnist.npz",
    "fashion_mnist": "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte (each .gz or raw)",
    "cifar10": "cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/ with data_batch_1..5 and test_batch",
}


def canonical_name(name):
    """Returns the canonical data-set name for ``name`` ("Fashion-MNIST" -> "fashion_mnist")."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in _ALIASES:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return _ALIASES[key]


def search_locations(name, data_dir=None):
    """The folders :func:`load_dataset` looks in for data set ``name``, in order (downloading aside)."""
    name = canonical_name(name)
    if data_dir is not None:
        return _with_subdirs(name, data_dir)
    roots = []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(os.environ[DATA_DIR_ENV])
    roots.append(_keras_cache_dir())
    roots.append(KERAS_FALLBACK_CACHE_DIR)
    locations = [location for root in roots for location in _with_subdirs(name, root)]
    if name == "fashion_mnist":
        locations.append(os.path.abspath(DEBIAN_FASHION_MNIST_DIR))
    return list(dict.fromkeys(locations))  # drops repeats, keeps the order


def load_dataset(name, data_dir=None, *, download=True):
    """Loads data set ``name`` (see the module docstring for where it is looked for).

    Returns a :class:`Dataset`; raises DataError if the name is unknown, the data is nowhere to be found,
    or its files are corrupt.
    """
    name = canonical_name(name)
    locations = search_locations(name, data_dir)
    for location in locations:
        dataset = _load_from_folder(name, location)
        if dataset is not None:
            return dataset
    if data_dir is not None and not os.path.isdir(locations[0]):
        raise data_error(f"{name} not found: data_dir {locations[0]} is not an existing folder")
    if data_dir is not None:
        raise data_error(
            f"{name} not found in data_dir {locations[0]}; looked in: {', '.join(locations)}; "
            f"expected {_WHAT_TO_PROVIDE[name]}"
        )
    if not download:
        reason = "download disabled"
    else:
        try:
            arrays = _keras_load_data(name)
        except Exception as e:  # noqa: BLE001 -- any download failure means "data missing"; reported below
            reason = f"download failed ({describe(e)})"
        else:
            return make_dataset(name, *arrays, source="keras download")
    raise data_error(
        f"{name} not found; looked in: {', '.join(locations)}; {reason}. Provide it with --data_dir=DIR "
        f"(a folder holding {_WHAT_TO_PROVIDE[name]}), {DATA_DIR_ENV}, or the Keras cache ~/.keras/datasets"
    )


def train_validation_split(x, y, num_validation, seed=0):
    """Splits ``(x, y)`` into ``(x_train, y_train, x_val, y_val)``.

    The validation part is the first ``num_validation`` indices of
    ``np.random.default_rng(seed).permutation(len(x))``, so the same seed gives the same split on every
    platform. Both parts keep the original order of the examples. Raises ConfigError unless
    ``1 <= num_validation <= len(x) - 1``.
    """
    n = len(x)
    if len(y) != n:
        raise ConfigError(f"train_validation_split: x has {n} examples but y has {len(y)}")
    num_validation = as_int(num_validation, "num_validation")
    if not 1 <= num_validation <= n - 1:
        raise ConfigError(f"num_validation={num_validation} is outside [1, {n - 1}] for {n} examples")
    permutation = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(permutation[:num_validation])
    train_idx = np.sort(permutation[num_validation:])
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def first_test_images(dataset, n):
    """The first ``n`` test images and labels in the canonical order (views, not copies).

    This is the "first N test images" protocol of the papers. Raises ConfigError unless
    ``1 <= n <= len(dataset.x_test)``.
    """
    total = len(dataset.x_test)
    n = as_int(n, "n")
    if not 1 <= n <= total:
        raise ConfigError(f"n={n} test images is outside [1, {total}] for {dataset.name}")
    return dataset.x_test[:n], dataset.y_test[:n]


# --- where to look -------------------------------------------------------------------------------


def _with_subdirs(name, root):
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    return [root] + [os.path.join(root, sub) for sub in _SUBDIRS[name]]


def _keras_cache_dir():
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "datasets")


def _load_from_folder(name, folder):
    """A Dataset read from ``folder``, or None if the folder holds none of the data set's files."""
    if not os.path.isdir(folder):
        return None
    if name == "cifar10":
        return cifar.load_folder(folder)
    return idx.load_folder(name, folder)


def _keras_load_data(name):
    """``keras.datasets.<name>.load_data()`` as ``(x_train, y_train, x_test, y_test)``; needs the network."""
    import keras  # imports TensorFlow: only done when downloading

    module = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist, "cifar10": keras.datasets.cifar10}
    (x_train, y_train), (x_test, y_test) = module[name].load_data()
    return x_train, y_train, x_test, y_test
