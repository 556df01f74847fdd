"""The Random Spiking paper's data augmentation (Table 7; REFERENCE section 4): Keras 2 ImageDataGenerator semantics
(checked against Keras's own legacy copy of it), the draws' distributions, determinism by (seed, epoch, batch), the
tf.data training set, and the settings parser."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.preprocessing.image import ImageDataGenerator
from scipy.ndimage import gaussian_filter

import randspike.augmentation as aug
from hrs_tf.errors import ConfigError


def _images(n=8, size=28, channels=1, seed=0):
    """Smooth random images in [0, 1] (smooth, so that every resampling moves pixel values)."""
    x = np.random.default_rng(seed).random((n, size, size, channels))
    x = np.stack([gaussian_filter(im, (1.5, 1.5, 0)) for im in x])
    x = (x - x.min()) / (x.max() - x.min())
    return x.astype(np.float32)


def test_one_resampling_equals_keras2_image_data_generator():
    # Keras 3 keeps keras-preprocessing 1.1's ImageDataGenerator (the published code's): same parameters, same image
    x = _images(1)[0]
    generator = ImageDataGenerator(fill_mode="reflect")
    cases = [dict(theta=10), dict(tx=2, ty=-3), dict(shear=20), dict(zx=1.15, zy=0.85), dict(flip_horizontal=True),
             dict(theta=-7, tx=1.5, ty=3, shear=15, zx=0.9, zy=1.1, flip_horizontal=True)]
    for p in cases:
        reference = generator.apply_transform(x.copy(), dict(p))
        one = lambda key, default: tf.constant([float(p.get(key, default))])  # noqa: E731
        transforms = aug.affine_transforms(one("theta", 0) * np.pi / 180, one("shear", 0) * np.pi / 180,
                                           one("zx", 1), one("zy", 1), one("tx", 0), one("ty", 0),
                                           tf.constant([-1.0 if p.get("flip_horizontal") else 1.0]), 28.0, 28.0)
        out = aug.transform_images(tf.constant(x[None]), transforms, "reflect").numpy()[0]
        assert np.abs(out - reference).max() < 1e-5, p  # float32 round-off only (measured 5e-7)
        assert np.abs(out - x).mean() > 0.005, p  # and it did change the image


def test_draws_follow_the_keras2_ranges():
    n = 20000
    theta, shear, zx, zy, tx, ty, flip = [t.numpy() for t in aug.augmenter("mnist", 5).parameters(n, 0)]
    deg = np.rad2deg
    assert deg(np.abs(theta)).max() <= 10 and deg(np.abs(theta)).max() > 9.9  # U(-10, 10) degrees
    assert deg(np.abs(shear)).max() <= 0.2 + 1e-6  # shear_range 0.2 is in degrees
    assert zx.min() >= 0.8 and zx.max() <= 1.2 and abs(np.corrcoef(zx, zy)[0, 1]) < 0.05  # independent zooms
    # whole shifts: Keras 2's choice(4) * choice(+-1): -3..3, P(0) = 1/4, P(+-k) = 1/8. Binomial std of a frequency
    # over 20,000 draws <= 0.0031; tolerance 0.015 (~5 std)
    for shifts in (tx, ty):
        values, counts = np.unique(shifts, return_counts=True)
        assert list(values) == [-3, -2, -1, 0, 1, 2, 3]
        expected = np.array([1, 1, 1, 2, 1, 1, 1]) / 8
        assert np.abs(counts / n - expected).max() < 0.015
    assert (flip == 1).all()  # MNIST: no flip
    _, _, _, _, tx, _, flip = [t.numpy() for t in aug.augmenter("cifar10", 5).parameters(n, 0)]
    assert np.abs(tx).max() <= 8 and not np.allclose(tx, np.round(tx))  # continuous U(-8, 8) px
    assert abs(np.abs(tx).mean() - 4.0) < 0.15  # E|U(-8, 8)| = 4, std of the mean 0.016
    assert abs((flip == -1).mean() - 0.5) < 0.02  # flips half the images (std 0.0035)


@pytest.mark.parametrize("setting", ["rotation=10", "shear=10", "zoom=0.2", "shift=4", "shift=3,shift_draw=uniform",
                                     "flip=true", "mnist", "fashion_mnist"])
def test_each_transform_changes_images_and_keeps_shape_and_range(setting):
    x = _images(16)
    out = aug.augmenter(setting, 1)(x, 0).numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    changed = np.abs(out - x).reshape(len(x), -1).mean(axis=1) > 1e-3
    if setting == "flip=true":  # each image is itself or its mirror, and both happen
        mirrored = np.array([np.array_equal(o, im[:, ::-1]) for o, im in zip(out, x)])
        assert (mirrored | ~changed).all() and mirrored.any() and not mirrored.all()
    else:  # a whole shift may draw (0, 0): probability 1/16 per image
        assert changed.mean() > 0.6


def test_cifar_settings_keep_colour_images_in_range():
    x = _images(8, size=32, channels=3)
    out = aug.augmenter("cifar10", 2)(x, 0).numpy()
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0 and np.abs(out - x).mean() > 0.01


def test_none_is_the_identity():
    x = _images(8)
    for text in ("none", None, "", "rotation=0,shift=0"):
        assert aug.is_identity(text)
        np.testing.assert_array_equal(aug.augmenter(text, 3)(x, 5).numpy(), x)
    y = np.arange(8)
    batches = list(aug.training_dataset(x, y, 3, "none", seed=0, epoch=0).as_numpy_iterator())
    order = np.concatenate([b[1] for b in batches])
    assert sorted(order) == list(range(8)) and [len(b[1]) for b in batches] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[order])


def test_same_seed_and_epoch_give_identical_batches_another_epoch_differs():
    x, y = _images(40), np.arange(40)

    def epoch(seed, e):
        return list(aug.training_dataset(x, y, 16, "mnist", seed, e).as_numpy_iterator())

    first, again, other_epoch, other_seed = epoch(0, 3), epoch(0, 3), epoch(0, 4), epoch(1, 3)
    for (a, la), (b, lb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(first[0][1], other_epoch[0][1])  # another shuffle
    assert not np.array_equal(first[0][1], other_seed[0][1])
    # the same image in another epoch gets other draws
    i = first[0][1][0]
    pos = [(b, j) for b, (_, labels) in enumerate(other_epoch) for j in range(len(labels)) if labels[j] == i][0]
    assert np.abs(first[0][0][0] - other_epoch[pos[0]][0][pos[1]]).max() > 1e-3
    # the augmenter itself: a function of (seed, index)
    augment = aug.augmenter("mnist", 9)
    np.testing.assert_array_equal(augment(x[:4], 2).numpy(), aug.augmenter("mnist", 9)(x[:4], 2).numpy())
    assert np.abs(augment(x[:4], 2).numpy() - augment(x[:4], 3).numpy()).max() > 1e-3


def test_model_fit_accepts_the_dataset_with_integer_or_soft_labels():
    x, y = _images(96), np.arange(96) % 10
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(aug.training_dataset(x, y, 32, "mnist", 0, 0), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    soft = np.eye(10, dtype=np.float32)[y] * 0.9 + 0.01
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(aug.training_dataset(x, soft, 32, "fashion_mnist", 0, 1), epochs=1, verbose=0,
                        shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_parse_names_and_overrides():
    assert aug.augmentation_names() == ("none", "mnist", "fashion_mnist", "cifar10")
    assert aug.parse("none") == aug.NONE
    assert aug.parse("MNIST") == aug.AUGMENTATIONS["mnist"]
    assert aug.AUGMENTATIONS["mnist"] == dict(aug.NONE, rotation=10, shear=0.2, zoom=0.2, shift=4)
    assert aug.parse("mnist, rotation=15") == dict(aug.AUGMENTATIONS["mnist"], rotation=15.0)
    assert aug.parse("rotation=10,shift=4,flip=true") == dict(aug.NONE, rotation=10.0, shift=4.0, flip=True)
    assert aug.parse({"zoom": "0.1", "fill": "Nearest"}) == dict(aug.NONE, zoom=0.1, fill="nearest")
    assert aug.describe("fashion_mnist") == "shift 4 px (whole), horizontal flip, reflect fill"


@pytest.mark.parametrize("text, words", [
    ("bogus", "unknown augmentation 'bogus'"), ("colour=1", "unknown augmentation setting 'colour'"),
    ("rotation=abc", "rotation='abc'"), ("rotation=-1", "rotation='-1'"), ("zoom=1", "zoom='1'"),
    ("flip=maybe", "flip='maybe'"), ("shift=2.5", "shift='2.5'"), ("fill=mirror", "fill='mirror'"),
    ("rotation=10,mnist", "'mnist' must be key=value"), ("shift_draw=gauss", "shift_draw='gauss'"),
])
def test_parse_errors_are_one_line(text, words):
    with pytest.raises(ConfigError) as info:
        aug.parse(text)
    assert words in str(info.value) and "\n" not in str(info.value)
