"""The loaded data set and the checks every reader applies (uint8 NHWC images, labels 0..9), raising one-line
:class:`hrs_tf.errors.DataError`\ s naming the file."""

import dataclasses
import gzip
import operator
import zlib

import numpy as np

from hrs_tf.errors import ConfigError, DataError

NUM_CLASSES = 10
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


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


def read_file(path):
    """The bytes of ``path``, gunzipped if its name ends in ``.gz``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise data_error(f"{path}: cannot read ({describe(e)})") from e
    if not path.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as e:
        raise data_error(f"{path}: corrupt gzip file ({describe(e)})") from e


def make_dataset(name, x_train, y_train, x_test, y_test, source):
    """Checks uint8 NHWC images and integer labels, and converts them once to float32 / int64."""
    x_train, y_train = _check_split(name, x_train, y_train, source, "train")
    x_test, y_test = _check_split(name, x_test, y_test, source, "test")
    return Dataset(name, _to_float(x_train), y_train, _to_float(x_test), y_test, source)


def _check_split(name, x, y, source, split):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3 and IMAGE_SHAPES[name][2] == 1:
        x = x[..., np.newaxis]
    if name == "cifar10" and x.ndim == 4 and x.shape[1:] == (3, 32, 32):  # Keras with channels_first
        x = x.transpose(0, 2, 3, 1)
    expected = IMAGE_SHAPES[name]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != expected:
        raise data_error(f"{source}: {split} images are {x.dtype} {x.shape}, expected uint8 (N, {', '.join(map(str, expected))})")
    if y.ndim == 2 and y.shape[1] == 1:  # Keras's CIFAR labels are (N, 1)
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise data_error(f"{source}: {split} labels are {y.dtype} {y.shape}, expected {len(x)} integers for {len(x)} images")
    if len(x) == 0:
        raise data_error(f"{source}: the {split} split holds no images")
    check_labels(y, f"{source} ({split} labels)")
    return x, y.astype(np.int64)


def check_labels(labels, where):
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise data_error(f"{where}: label {int(labels[i])} at index {i} is outside 0..{NUM_CLASSES - 1} ({bad.size} such labels)")


def _to_float(images):
    """uint8 images -> a new C-contiguous float32 array of images / 255."""
    x = images.astype(np.float32, order="C")
    x /= 255
    return x


def as_int(value, what):
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{what}={value!r} is not an integer") from None


def describe(error):
    """An exception as one line of text."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def data_error(message):
    """A DataError whose message is guaranteed to be one line."""
    return DataError(message.replace("\r", " ").replace("\n", " "))
