"""The Random Spiking paper's training-time data augmentation (Table 7; REFERENCE section 4), with the semantics of
the Keras 2 ``ImageDataGenerator`` the published code (``gehuangyi20/random_spiking``, Keras 2.3.1 /
keras-preprocessing 1.1) trained with, drawn statelessly so that a resumed epoch draws as an uninterrupted one.

Settings (a dict; :func:`parse` reads text such as ``"mnist"``, ``"none"``, ``"mnist,rotation=15"`` or
``"shift=4,flip=true"``):

``rotation``    degrees; angle ~ U(-rotation, rotation)                    (Keras 2 ``rotation_range``)
``shear``       degrees; shear angle ~ U(-shear, shear)                    (Keras 2 ``shear_range``, "Shear angle in
                counter-clockwise direction in degrees" in the keras-preprocessing the code ran with: its 0.2 is a
                0.2-degree shear, under 0.1 pixel of change on 28x28 images; 0.2 radians would be ``shear=11.46``)
``zoom``        scale factors zx, zy ~ U(1 - zoom, 1 + zoom), independently   (Keras 2 ``zoom_range`` z = [1-z, 1+z];
                a factor > 1 zooms out; Keras 3's ``RandomZoom(height_factor=(-z, z), width_factor=(-z, z))``)
``shift``       pixels, rows and columns independently:
``shift_draw``  ``"whole"``: k * sign, k ~ U{0, .., shift - 1}, sign = +-1 (Keras 2's integer ``width_shift_range``:
                "integer number of pixels from interval (-shift, +shift)", so 4 gives -3 .. 3 with 0 twice as likely
                as each other value); ``"uniform"``: U(-shift, shift) (Keras 2's float range, a fraction of the size)
``flip``        horizontal flip with probability 1/2 (after the affine map, as Keras 2)
``fill``        ``reflect`` (d c b a | a b c d | d c b a, scipy's and Keras 3's "reflect"), ``nearest``, ``constant``
                (zeros) or ``wrap``

The affine parts are composed into one map, rotation . shift . shear . zoom about the image centre, output
coordinates to input coordinates (keras-preprocessing 1.1 ``apply_affine_transform``), and applied in one bilinear
resampling (Keras 2: ``interpolation_order=1``), so an image is interpolated once, not once per transform as a stack
of Keras 3 preprocessing layers would. Keras 3 equivalents of each part: ``RandomRotation(rotation / 360)``,
``RandomTranslation`` (continuous draws only), ``RandomShear`` (a shear *factor*, not an angle),
``RandomZoom`` as above, ``RandomFlip("horizontal")``.

Where each data set's values come from:

- ``mnist``: ``RsNet/train_models.py`` with ``--is_data_gen=yes --rotation=10`` (``run_script/mnist/*``):
  rotation 10, shear 0.2, zoom 0.2, shift 4 (integer), reflect, no flip. Table 7 lists no augmentation for MNIST.
- ``fashion_mnist``: Table 7, "Shifting + Horizontal Flip": shift 4 (integer, as the code's ``width_shift_range=4``),
  flip, reflect. The published ``RsNet/train_fashion_models.py`` also applies rotation 10, shear 0.2 and zoom 0.2:
  ``"fashion_mnist,rotation=10,shear=0.2,zoom=0.2"`` gives the code's.
- ``cifar10``: Table 7, "Shifting + Rotation + Horizontal Flip + Zooming + Shear", values from
  ``RsNet/train_cifar_models.py``: rotation 10, shear 0.2, zoom 0.2, shift 8/32 of the size (uniform, +-8 px), flip,
  reflect.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError

SHIFT_DRAWS = ("whole", "uniform")
FILLS = ("reflect", "nearest", "constant", "wrap")
NONE = {"rotation": 0.0, "shear": 0.0, "zoom": 0.0, "shift": 0.0, "shift_draw": "whole", "flip": False,
        "fill": "reflect"}
AUGMENTATIONS = {
    "mnist": dict(NONE, rotation=10.0, shear=0.2, zoom=0.2, shift=4.0),
    "fashion_mnist": dict(NONE, shift=4.0, flip=True),
    "cifar10": dict(NONE, rotation=10.0, shear=0.2, zoom=0.2, shift=8.0, shift_draw="uniform", flip=True),
}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def augmentation_names():
    """The named augmentations: ``none`` and one per data set."""
    return ("none",) + tuple(AUGMENTATIONS)


def _flag(value, name):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"augmentation {name}={value!r} must be true or false")


def check(settings):
    """A complete, checked copy of ``settings`` (a dict with any of :data:`NONE`'s keys; the others default to no
    augmentation); ConfigError naming the first bad key or value."""
    if not isinstance(settings, dict):
        raise ConfigError(f"augmentation settings must be a dict, not {type(settings).__name__}")
    unknown = sorted(set(settings) - set(NONE))
    if unknown:
        raise ConfigError(f"unknown augmentation setting {unknown[0]!r}; the settings are {', '.join(NONE)}")
    s = dict(NONE, **settings)

    def within(key, high, closed):
        v = checks.nonnegative(s[key], f"augmentation {key}")
        if v > high or (v == high and not closed):
            raise ConfigError(f"augmentation {key}={s[key]!r} must be in [0, {high:g}{']' if closed else ')'}")
        return v

    out = {"rotation": within("rotation", 180.0, True), "shear": within("shear", 90.0, False),
           "zoom": within("zoom", 1.0, False), "shift": checks.nonnegative(s["shift"], "augmentation shift"),
           "shift_draw": checks.choice(str(s["shift_draw"]).strip().lower(), "augmentation shift_draw", SHIFT_DRAWS),
           "flip": _flag(s["flip"], "flip"),
           "fill": checks.choice(str(s["fill"]).strip().lower(), "augmentation fill", FILLS)}
    if out["shift_draw"] == "whole" and not float(out["shift"]).is_integer():
        raise ConfigError(f"augmentation shift={s['shift']!r} must be a whole number of pixels with shift_draw=whole")
    return out


def parse(text):
    """Settings from ``text``: ``none`` (or None / empty), a name of :func:`augmentation_names`, ``key=value`` pairs,
    or a name followed by pairs (``"mnist,rotation=15"``); a dict is checked as it is."""
    if isinstance(text, dict):
        return check(text)
    parts = [p.strip() for p in ("" if text is None else str(text)).split(",") if p.strip()]
    settings = dict(NONE)
    if parts and "=" not in parts[0]:
        name = parts.pop(0).lower()
        if name != "none" and name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}; the named ones are {', '.join(augmentation_names())} "
                              "(or key=value settings)")
        settings.update(AUGMENTATIONS.get(name, {}))
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ConfigError(f"augmentation {text!r}: {part!r} must be key=value (a name may only come first)")
        if key not in NONE:
            raise ConfigError(f"unknown augmentation setting {key!r}; the settings are {', '.join(NONE)}")
        settings[key] = value.strip()
    return check(settings)


def describe(settings):
    """One line naming the augmentation (a dict or text), e.g. ``rotation 10, shear 0.2, zoom 0.2, shift 4 px (whole),
    reflect fill``."""
    s = parse(settings)
    parts = [f"{k} {s[k]:g}" for k in ("rotation", "shear", "zoom") if s[k]]
    if s["shift"]:
        parts.append(f"shift {s['shift']:g} px ({s['shift_draw']})")
    if s["flip"]:
        parts.append("horizontal flip")
    return ", ".join(parts) + f", {s['fill']} fill" if parts else "none"


def is_identity(settings):
    """Does ``settings`` (a dict or text) leave every image as it is?"""
    s = parse(settings)
    return not (s["rotation"] or s["shear"] or s["zoom"] or s["shift"] or s["flip"])


def affine_transforms(theta, shear, zx, zy, tx, ty, flip, height, width):
    """The (n, 8) projective transforms, output pixel (x = column, y = row) -> input pixel, of per-image parameters
    (each of shape (n,)): rotation . shift . shear . zoom about the image centre (keras-preprocessing 1.1
    ``apply_affine_transform``, angles in radians, its matrices in (x, y) order), then a horizontal flip where
    ``flip`` is -1 (Keras 2 flips the transformed image)."""
    c, s = tf.cos(theta), tf.sin(theta)
    ss, cs = tf.sin(shear), tf.cos(shear)
    # Linear part R . Sh . Z; the flip negates the output x (column 0).
    a00, a01 = c * zx * flip, -(c * ss + s * cs) * zy
    a10, a11 = s * zx * flip, (c * cs - s * ss) * zy
    # Translation R . (tx, ty), all about the centre (cx, cy).
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a02 = cx - a00 * cx - a01 * cy + c * tx - s * ty
    a12 = cy - a10 * cx - a11 * cy + s * tx + c * ty
    zeros = tf.zeros_like(a00)
    return tf.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)


def transform_images(images, transforms, fill="reflect"):
    """``images`` (NHWC float32) resampled bilinearly through ``transforms`` (:func:`affine_transforms`), the
    outside filled by ``fill`` (:data:`FILLS`; ``constant`` fills zeros)."""
    fill = checks.choice(str(fill).lower(), "augmentation fill", FILLS)
    static = tuple(images.shape[1:3])
    size = tf.constant(static, tf.int32) if None not in static else tf.shape(images)[1:3]  # static: keeps the shape
    return tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms, output_shape=size,
                                                 fill_value=0.0, interpolation="BILINEAR", fill_mode=fill.upper())


class Augmenter:
    """Augments NHWC float batches in [0, 1]: ``augmenter(images, index)``; the draws depend only on the seed and
    ``index`` (a Python int or an integer tensor, e.g. the batch's position in an epoch), never on a hidden state."""

    def __init__(self, settings, seed):
        self.settings = check(settings)
        self.seed = int(seed)
        self.identity = is_identity(self.settings)

    def parameters(self, count, index):
        """Per-image (theta, shear) in radians, (zx, zy), (tx, ty) in pixels and flip (+-1), each of shape (count,)."""
        s = self.settings
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(index, tf.int64)])
        u = tf.random.stateless_uniform(tf.stack([count, 7]), seed=seed, dtype=tf.float32)
        signed = 2.0 * u - 1.0
        theta = np.deg2rad(s["rotation"]) * signed[:, 0]
        shear = np.deg2rad(s["shear"]) * signed[:, 1]
        zx, zy = 1.0 + s["zoom"] * signed[:, 2], 1.0 + s["zoom"] * signed[:, 3]
        if s["shift_draw"] == "whole":
            # m ~ U{0 .. 2 shift - 1}: k = m // 2 ~ U{0 .. shift - 1}, sign = parity (Keras 2: choice(shift) * choice(+-1))
            m = tf.floor(u[:, 4:6] * (2.0 * s["shift"]))
            shifts = tf.floor(m / 2.0) * (1.0 - 2.0 * tf.math.floormod(m, 2.0))
        else:
            shifts = s["shift"] * signed[:, 4:6]
        flip = tf.where(u[:, 6] < 0.5, -1.0, 1.0) if s["flip"] else tf.ones_like(theta)
        return theta, shear, zx, zy, shifts[:, 0], shifts[:, 1], flip

    def __call__(self, images, index=0):
        images = tf.convert_to_tensor(images, tf.float32)
        if self.identity:
            return images
        shape = tf.shape(images)
        transforms = affine_transforms(*self.parameters(shape[0], index), height=tf.cast(shape[1], tf.float32),
                                       width=tf.cast(shape[2], tf.float32))
        return tf.clip_by_value(transform_images(images, transforms, self.settings["fill"]), 0.0, 1.0)


def augmenter(settings, seed):
    """An :class:`Augmenter` for ``settings`` (a dict or text, :func:`parse`) seeded with ``seed``."""
    return Augmenter(parse(settings), seed)


def epoch_seeds(seed, epoch):
    """(shuffling seed, augmentation seed) of ``epoch`` of a run seeded with ``seed``: functions of (seed, epoch) only."""
    shuffle, augment = np.random.SeedSequence([int(seed), int(epoch), 0x5A5A]).generate_state(2)
    return int(shuffle), int(augment)


def training_dataset(x, y, batch_size, settings, seed, epoch):
    """One epoch of training batches for ``model.fit``: ``(x, y)`` shuffled by (seed, epoch), cut in batches of
    ``batch_size`` (the last one smaller), each augmented with the draws of (seed, epoch, batch index), prefetched.

    ``y`` may be integer labels or soft labels (one row per image). A resumed epoch gives the same batches."""
    batch_size = checks.count(batch_size, "batch_size", minimum=1)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4:
        raise ConfigError(f"augmentation needs NHWC images, got an array of shape {x.shape}")
    if len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"augmentation needs as many labels as images (and at least one), got {len(x)} images and "
                          f"{len(y)} labels")
    shuffle_seed, augment_seed = epoch_seeds(seed, epoch)
    augment = augmenter(settings, augment_seed)
    order = np.random.default_rng(shuffle_seed).permutation(len(x))
    images = tf.convert_to_tensor(x, tf.float32)
    labels = tf.convert_to_tensor(y)

    def batch(index, positions):
        return augment(tf.gather(images, positions), index), tf.gather(labels, positions)

    batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
    return batches.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
