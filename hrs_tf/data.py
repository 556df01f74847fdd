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

import codecs
import dataclasses
import gzip
import io
import operator
import os
import pickle
import posixpath
import tarfile
import tempfile
import zipfile
import zlib

import numpy as np

from hrs_tf.errors import ConfigError, DataError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATA_DIR_ENV = "HRS_TF_DATA_DIR"
NUM_CLASSES = 10

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
_IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}

_IDX_TRAIN_IMAGES = "train-images-idx3-ubyte"
_IDX_TRAIN_LABELS = "train-labels-idx1-ubyte"
_IDX_TEST_IMAGES = "t10k-images-idx3-ubyte"
_IDX_TEST_LABELS = "t10k-labels-idx1-ubyte"
_IDX_FILES = (_IDX_TRAIN_IMAGES, _IDX_TRAIN_LABELS, _IDX_TEST_IMAGES, _IDX_TEST_LABELS)
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_MNIST_NPZ = "mnist.npz"
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_BATCHES = _CIFAR_TRAIN_BATCHES + (_CIFAR_TEST_BATCH,)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_EXTRACTED_DIRS = ("", _CIFAR_FOLDER, os.path.join("cifar-10-batches-py-target", _CIFAR_FOLDER))
_CIFAR_ARCHIVES = ("cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz", "cifar-10-batches-py-target_archive")
_CIFAR_PIXELS = 32 * 32 * 3

_WHAT_TO_PROVIDE = {
    "mnist": "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte (each .gz or raw) or mnist.npz",
    "fashion_mnist": "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte (each .gz or raw)",
    "cifar10": "cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/ with data_batch_1..5 and test_batch",
}

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


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set: float32 NHWC images in [0, 1] and int64 labels of shape (N,)."""

    name: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    source: str

    @property
    def input_shape(self):
        """The shape of one image, ``(height, width, channels)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self):
        """The number of classes (10 for every supported data set)."""
        return NUM_CLASSES


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
        raise _data_error(f"{name} not found: data_dir {locations[0]} is not an existing folder")
    if data_dir is not None:
        raise _data_error(
            f"{name} not found in data_dir {locations[0]}; looked in: {', '.join(locations)}; "
            f"expected {_WHAT_TO_PROVIDE[name]}"
        )
    if not download:
        reason = "download disabled"
    else:
        try:
            arrays = _keras_load_data(name)
        except Exception as e:  # noqa: BLE001 -- any download failure means "data missing"; reported below
            reason = f"download failed ({_describe(e)})"
        else:
            return _make_dataset(name, *arrays, source="keras download")
    raise _data_error(
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
    num_validation = _as_int(num_validation, "num_validation")
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
    n = _as_int(n, "n")
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
        return _load_cifar_folder(folder)
    return _load_mnist_like_folder(name, folder)


def _keras_load_data(name):
    """``keras.datasets.<name>.load_data()`` as ``(x_train, y_train, x_test, y_test)``; needs the network."""
    import keras  # imports TensorFlow: only done when downloading

    module = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist, "cifar10": keras.datasets.cifar10}
    (x_train, y_train), (x_test, y_test) = module[name].load_data()
    return x_train, y_train, x_test, y_test


# --- MNIST and Fashion-MNIST ---------------------------------------------------------------------


def _load_mnist_like_folder(name, folder):
    paths = _find_idx_files(folder)
    if paths is not None:
        return _make_dataset(name, *_read_idx_set(paths), source=folder)
    npz = os.path.join(folder, _MNIST_NPZ)
    if name == "mnist" and os.path.isfile(npz):
        return _make_dataset(name, *_read_mnist_npz(npz), source=npz)
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
        raise _data_error(f"{folder}: incomplete IDX data set, missing {', '.join(missing)}")
    return [found[base] for base in _IDX_FILES]


def _read_idx_set(paths):
    train_images_path, train_labels_path, test_images_path, test_labels_path = paths
    x_train = _read_idx(train_images_path, images=True)
    y_train = _read_idx(train_labels_path, images=False)
    x_test = _read_idx(test_images_path, images=True)
    y_test = _read_idx(test_labels_path, images=False)
    for x, y, x_path, y_path in ((x_train, y_train, train_images_path, train_labels_path), (x_test, y_test, test_images_path, test_labels_path)):
        if len(x) != len(y):
            raise _data_error(f"{x_path} holds {len(x)} images but {y_path} holds {len(y)} labels")
        _check_labels(y, y_path)
    return x_train, y_train, x_test, y_test


def _read_idx(path, images):
    """An IDX file as a uint8 array: images (N, 28, 28, 1) or labels (N,)."""
    data = _read_file(path)
    kind = "images" if images else "labels"
    header_size = 16 if images else 8
    expected_magic = _IDX_IMAGES_MAGIC if images else _IDX_LABELS_MAGIC
    if len(data) < header_size:
        raise _data_error(f"{path}: too short for an IDX {kind} file ({len(data)} bytes, the header alone is {header_size})")
    header = [int(v) for v in np.frombuffer(data, dtype=">u4", count=header_size // 4)]
    if header[0] != expected_magic:
        raise _data_error(f"{path}: not an IDX {kind} file (magic number {header[0]}, expected {expected_magic})")
    count, dims = header[1], tuple(header[2:])
    if images and dims != (28, 28):
        raise _data_error(f"{path}: images are {dims[0]}x{dims[1]}, expected 28x28")
    expected_size = header_size + count * int(np.prod(dims, dtype=np.int64))
    if len(data) != expected_size:
        problem = "truncated" if len(data) < expected_size else "extra bytes at the end"
        unpacked = " after decompression" if path.endswith(".gz") else ""
        raise _data_error(
            f"{path}: {problem}: the header announces {count} {kind}, i.e. {expected_size} bytes, "
            f"but the file holds {len(data)} bytes{unpacked}"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    return array.reshape((count,) + dims + (1,)) if images else array


def _read_file(path):
    """The bytes of ``path``, gunzipped if its name ends in ``.gz``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise _data_error(f"{path}: cannot read ({_describe(e)})") from e
    if not path.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as e:
        raise _data_error(f"{path}: corrupt gzip file ({_describe(e)})") from e


def _read_mnist_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in _NPZ_KEYS if key not in npz.files]
            if missing:
                raise _data_error(f"{path}: missing arrays {', '.join(missing)} (an mnist.npz holds {', '.join(_NPZ_KEYS)})")
            arrays = [npz[key] for key in _NPZ_KEYS]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _data_error(f"{path}: not a readable .npz file ({_describe(e)})") from e
    x_train, y_train, x_test, y_test = arrays
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[1:3] != (28, 28) or x.shape[3:] not in ((), (1,)):
            raise _data_error(f"{path}: {key} is {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
    return x_train.reshape(-1, 28, 28, 1), y_train, x_test.reshape(-1, 28, 28, 1), y_test


# --- CIFAR-10 ------------------------------------------------------------------------------------


def _load_cifar_folder(folder):
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
            raise _data_error(f"{batch_dir}: incomplete CIFAR-10 folder, {batch} is missing")
        batches[batch] = _unpickle_batch(_read_file(path), path)
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
        raise _data_error(f"{path}: corrupt or truncated archive ({_describe(e)})") from e
    missing = [f"{_CIFAR_FOLDER}/{batch}" for batch in _CIFAR_BATCHES if batch not in batches]
    if missing:
        raise _data_error(f"{path}: the archive has no member {', '.join(missing)}")
    return batches


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch; refuses every global but numpy array reconstruction."""

    def __init__(self, file, where):
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise _data_error(f"{self.where}: refusing to unpickle {module}.{name} (a CIFAR-10 batch holds only numpy arrays, lists and bytes)")
        return _CIFAR_PICKLE_GLOBALS[module, name]


def _unpickle_batch(data, where):
    """A CIFAR-10 batch as ``(images uint8 (N, 3072), labels)``; ``where`` names the file in errors."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), where).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- a malformed pickle can raise almost anything
        raise _data_error(f"{where}: not a readable pickle ({_describe(e)})") from e
    if not isinstance(batch, dict):
        raise _data_error(f"{where}: not a CIFAR-10 batch (holds a {type(batch).__name__}, expected a dict)")
    images, labels = _batch_entry(batch, "data", where), _batch_entry(batch, "labels", where)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != _CIFAR_PIXELS:
        shape = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise _data_error(f"{where}: data is {shape}, expected a uint8 array (N, {_CIFAR_PIXELS})")
    labels = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    if labels is None or labels.ndim != 1 or len(labels) != len(images) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise _data_error(f"{where}: labels must be a list of {len(images)} integers, one per image")
    _check_labels(labels, where)
    return images, labels


def _batch_entry(batch, key, where):
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise _data_error(f"{where}: not a CIFAR-10 batch (no {key!r} entry)")


def _make_cifar_dataset(batches, source):
    x_train = np.concatenate([batches[b][0] for b in _CIFAR_TRAIN_BATCHES])
    y_train = np.concatenate([batches[b][1] for b in _CIFAR_TRAIN_BATCHES])
    x_test, y_test = batches[_CIFAR_TEST_BATCH]
    return _make_dataset("cifar10", _cifar_to_nhwc(x_train), y_train, _cifar_to_nhwc(x_test), y_test, source=source)


def _cifar_to_nhwc(rows):
    """(N, 3072) rows of R, G, B 32x32 planes -> a (N, 32, 32, 3) view."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# --- common --------------------------------------------------------------------------------------


def _make_dataset(name, x_train, y_train, x_test, y_test, source):
    """Checks uint8 NHWC images and integer labels, and converts them once to float32 / int64."""
    x_train, y_train = _check_split(name, x_train, y_train, source, "train")
    x_test, y_test = _check_split(name, x_test, y_test, source, "test")
    return Dataset(name, _to_float(x_train), y_train, _to_float(x_test), y_test, source)


def _check_split(name, x, y, source, split):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3 and _IMAGE_SHAPES[name][2] == 1:
        x = x[..., np.newaxis]
    if name == "cifar10" and x.ndim == 4 and x.shape[1:] == (3, 32, 32):  # Keras with channels_first
        x = x.transpose(0, 2, 3, 1)
    expected = _IMAGE_SHAPES[name]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != expected:
        raise _data_error(f"{source}: {split} images are {x.dtype} {x.shape}, expected uint8 (N, {', '.join(map(str, expected))})")
    if y.ndim == 2 and y.shape[1] == 1:  # Keras's CIFAR labels are (N, 1)
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise _data_error(f"{source}: {split} labels are {y.dtype} {y.shape}, expected {len(x)} integers for {len(x)} images")
    if len(x) == 0:
        raise _data_error(f"{source}: the {split} split holds no images")
    _check_labels(y, f"{source} ({split} labels)")
    return x, y.astype(np.int64)


def _check_labels(labels, where):
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise _data_error(f"{where}: label {int(labels[i])} at index {i} is outside 0..{NUM_CLASSES - 1} ({bad.size} such labels)")


def _to_float(images):
    """uint8 images -> a new C-contiguous float32 array of images / 255."""
    x = images.astype(np.float32, order="C")
    x /= 255
    return x


def _as_int(value, what):
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{what}={value!r} is not an integer") from None


def _describe(error):
    """An exception as one line of text."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def _data_error(message):
    """A DataError whose message is guaranteed to be one line."""
    return DataError(message.replace("\r", " ").replace("\n", " "))
